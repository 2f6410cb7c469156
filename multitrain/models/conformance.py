"""Numerical conformance against fixtures written by the original code.

A fixture (`../shared/conformance/*.pt`) holds `config_file` (a YAML file NAME), its
`config_overrides`, the original `model_state`, an `input` and the original outputs. We
rebuild the model from that config, load the state, recompute every stored output and
report the relative error ||ours - ref|| / ||ref|| of each. See docs/MODEL.md.
"""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..checkpoint.weights import adapt_keys
from ..config import get_cfg, merge
from . import build_model
from .losses import InformativeLoss, MultiHeadLoss

TOLERANCE = 1e-4
NON_OUTPUT_KEYS = ("model_state", "input", "config_file", "config_overrides", "outputs")
LABEL_KEYS = ("labels", "masks")
# When a name exists in several folders, the fixture README says which one is meant.
PREFERRED_FOLDERS = ("pyslowfast", "kinetics")


@dataclass
class Check:
    """One compared output: its name, relative error (None if not computed) and a note."""
    name: str
    rel_error: Optional[float]
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.rel_error is None or self.rel_error <= TOLERANCE


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config_search_roots(root: Optional[str] = None) -> List[str]:
    """The repo's configs/ first, then the shared reference configs (fallback)."""
    root = root or repo_root()
    return [os.path.join(root, "configs"),
            os.path.normpath(os.path.join(root, "..", "shared", "reference", "configs"))]


def find_config(name: str, roots: Optional[Sequence[str]] = None) -> str:
    """Path of the YAML called `name`, searched recursively under each root in turn."""
    roots = list(roots or config_search_roots())
    for root in roots:
        matches = sorted(glob.glob(os.path.join(root, "**", name), recursive=True))
        if not matches:
            continue
        if len(matches) > 1:
            preferred = [m for m in matches
                         if any(f in os.path.relpath(m, root).lower() for f in PREFERRED_FOLDERS)]
            chosen = (preferred or matches)[0]
            print(f"note: {name} found {len(matches)} times under {root}; using {chosen}",
                  file=sys.stderr)
            return chosen
        return matches[0]
    raise FileNotFoundError(f"config {name!r} not found under {', '.join(roots)}")


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """||ours - ref|| / ||ref|| (absolute norm when ref is all zeros)."""
    ours, ref = ours.detach().double(), ref.detach().double()
    if ours.shape != ref.shape:
        return float("inf")
    diff = torch.linalg.vector_norm(ours - ref).item()
    scale = torch.linalg.vector_norm(ref).item()
    return diff / scale if scale > 0 else diff


def build_fixture_model(fixture: Dict, roots: Optional[Sequence[str]] = None,
                        attention_impl: str = "sdpa"):
    """(cfg, model) rebuilt from the fixture's config file + overrides, its state loaded."""
    cfg = get_cfg()
    merge(cfg, [find_config(fixture["config_file"], roots)],
          list(fixture.get("config_overrides", [])))
    cfg.MVIT.ATTENTION_IMPL = attention_impl
    model = build_model(cfg)
    result = model.load_state_dict(adapt_keys(fixture["model_state"]), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(f"fixture state does not match the model built from "
                       f"{fixture['config_file']}: missing {result.missing_keys}, "
                       f"unexpected {result.unexpected_keys}")
    return cfg, model


def _compare(name: str, ours, ref, checks: List[Check]) -> None:
    """Append checks for a tensor or a {key: tensor} dict."""
    if isinstance(ref, dict):
        for key, value in ref.items():
            if not isinstance(ours, dict) or key not in ours:
                checks.append(Check(f"{name}.{key}", float("inf"), "missing in our output"))
            else:
                _compare(f"{name}.{key}", ours[key], value, checks)
    elif isinstance(ours, dict):
        checks.append(Check(name, float("inf"), "ours is a dict, reference a tensor"))
    else:
        checks.append(Check(name, relative_error(ours, ref)))


def _ours_for(name: str, cfg, model, x, refs: Dict, train_out: Dict):
    """Our value for reference output `name`, or a string saying why it is not computed."""
    m = cfg.MODEL
    if name == "train_preds":
        return {**train_out["logits"], **train_out["proj"]}
    if name == "train_inf_feature":
        return train_out.get("inf_feature", "the model has no informative-loss feature")
    if name == "eval_probs":
        model.eval()
        ref = refs[name]
        if isinstance(ref, dict):
            return {d: model(x, dataset_name=d, output="probs") for d in ref}
        return model(x, output="probs")
    if name == "multihead_loss":
        if m.MULTI_USE_MTL_WEIGHT:
            return "learned (random in the original) uncertainty weights cannot be compared"
        loss = MultiHeadLoss(list(m.MULTI_DATASETS), list(m.MULTI_LOSS_FUNCS),
                             list(m.MULTI_LOSS_WEIGHTS), m.MULTI_PROJ_LOSS_WEIGHT,
                             m.MULTI_PROJ_LOSS_FUNC)
        terms = loss(train_out["logits"], refs["labels"], refs["masks"], train_out["proj"])
        return sum(terms.values())
    if name == "inf_loss":
        if "inf_feature" not in train_out:
            return "the model has no informative-loss feature"
        return InformativeLoss(m.INF_STD_WEIGHT, m.INF_COVAR_WEIGHT)(train_out["inf_feature"])
    return f"no rule to compute output {name!r}"


@torch.no_grad()
def check_fixture(path: str, roots: Optional[Sequence[str]] = None,
                  attention_impl: str = "sdpa") -> List[Check]:
    """Rebuild, load and run the fixture at `path`; one Check per stored output tensor."""
    fixture = torch.load(path, map_location="cpu", weights_only=True)
    cfg, model = build_fixture_model(fixture, roots, attention_impl)
    x = fixture["input"].float()
    refs = dict(fixture.get("outputs", {}))
    refs.update({k: v for k, v in fixture.items() if k not in NON_OUTPUT_KEYS})
    model.train()
    train_out = model(x)
    checks: List[Check] = []
    for name, ref in refs.items():
        if name in LABEL_KEYS:
            continue
        ours = _ours_for(name, cfg, model, x, refs, train_out)
        if isinstance(ours, str):
            checks.append(Check(name, None, f"not checked: {ours}"))
        else:
            _compare(name, ours, ref, checks)
    return checks


def format_checks(path: str, checks: Sequence[Check]) -> str:
    lines = [f"{path}:"]
    for c in checks:
        err = "      n/a" if c.rel_error is None else f"{c.rel_error:.3e}"
        status = "ok" if c.ok else "FAIL"
        lines.append(f"  {c.name:<40s} {err}  {status}{'  (' + c.note + ')' if c.note else ''}")
    return "\n".join(lines)
