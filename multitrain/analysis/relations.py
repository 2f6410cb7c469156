"""Cross-dataset class relations learned by the projection layers.

The projection `a_b` is a bias-free Linear from dataset a's logits to dataset b's classes:
its weight `W_ab` is `[K_b, K_a]`, and `W_ab[j, i]` is how much a's class i votes for b's
class j. We read `relation[a_b][i, j] = W_ab[j, i]` (rows: classes of a).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import torch

PROJ_PREFIX = "head.cross_dataset_heads."


def learned_relations(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """`{"a_b": [K_a, K_b]}` from a model state_dict (original key names)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(PROJ_PREFIX) and key.endswith(".weight"):
            pair = key[len(PROJ_PREFIX):-len(".weight")]
            out[pair] = value.detach().float().cpu().t().contiguous()
    if not out:
        raise ValueError("the checkpoint has no cross-dataset projection weights "
                         f"({PROJ_PREFIX}*): was it trained with MODEL.MULTI_ADD_CROSS_PROJ True?")
    return out


def split_pair(pair: str, datasets: Sequence[str]) -> tuple:
    """`"kinetics_mit"` -> ("kinetics", "mit"), robust to underscores inside names."""
    for a in datasets:
        for b in datasets:
            if a != b and pair == f"{a}_{b}":
                return a, b
    raise ValueError(f"projection {pair!r} does not match two of the datasets {list(datasets)}")


def top_related(rel: torch.Tensor, k: int) -> List[List[tuple]]:
    """For each row class, its k most related column classes as (index, weight)."""
    k = min(k, rel.shape[1])
    vals, idx = rel.topk(k, dim=1)
    return [[(int(i), float(v)) for i, v in zip(ri, rv)] for ri, rv in zip(idx, vals)]


def score_against_truth(learned: Mapping[str, torch.Tensor],
                        truth: Mapping[str, Sequence[Sequence[float]]]) -> Dict[str, Dict[str, float]]:
    """How well learned relations rank the truly related classes first.

    For every pair and every class of a that has at least one truly related class of b:
    - `top1`: the best-weighted b class is truly related;
    - `all_first`: all truly related b classes outrank every unrelated one.
    Returns per pair {"top1", "all_first", "classes"} and an "overall" entry.
    """
    scores: Dict[str, Dict[str, float]] = {}
    hit1 = hitall = total = 0
    for pair, rel in learned.items():
        if pair not in truth:
            continue
        t = torch.tensor(truth[pair], dtype=torch.float32) > 0
        h1 = ha = n = 0
        for i in range(rel.shape[0]):
            if not t[i].any():
                continue
            n += 1
            order = rel[i].argsort(descending=True)
            h1 += int(t[i, order[0]])
            npos = int(t[i].sum())
            ha += int(bool(t[i, order[:npos]].all()))
        scores[pair] = {"top1": h1 / max(n, 1), "all_first": ha / max(n, 1), "classes": n}
        hit1, hitall, total = hit1 + h1, hitall + ha, total + n
    scores["overall"] = {"top1": hit1 / max(total, 1), "all_first": hitall / max(total, 1), "classes": total}
    return scores


def format_relations(learned: Mapping[str, torch.Tensor], datasets: Sequence[str],
                     classnames: Optional[Mapping[str, Sequence[str]]] = None, k: int = 3,
                     truth: Optional[Mapping[str, Sequence[Sequence[float]]]] = None) -> str:
    """A text table: for each class of each dataset, its top-k classes in every other dataset.

    With `truth`, truly related classes are marked with `*`.
    """
    names = classnames or {}
    lines = []
    for pair, rel in learned.items():
        a, b = split_pair(pair, datasets)
        lines.append(f"{a} -> {b}")
        na = names.get(a) or [str(i) for i in range(rel.shape[0])]
        nb = names.get(b) or [str(j) for j in range(rel.shape[1])]
        t = truth.get(pair) if truth else None
        for i, row in enumerate(top_related(rel, k)):
            cells = []
            for j, w in row:
                mark = "*" if t is not None and t[i][j] else ""
                cells.append(f"{nb[j]}{mark} ({w:+.2f})")
            lines.append(f"  {na[i]:<40s} {', '.join(cells)}")
    return "\n".join(lines)
