"""Top-k metrics as pure functions (no state, no communication).

Labels may be class indices ``[N]`` or label matrices ``[N, C]`` (one-hot, multi-hot or
soft). With a matrix, the positive classes of a sample are those with a label above
``pos_threshold`` (0 by default: any non-zero entry), and a sample is correct at k when
ANY positive class is among its k highest scores (validation).
"""

from typing import Dict, Mapping, Optional, Sequence, Union

import torch

__all__ = ["topk_correct", "topk_accuracy", "per_dataset_topk_correct", "accuracy_from_counts",
           "mean_average_precision"]


def _positives(labels: torch.Tensor, num_classes: int, pos_threshold: float) -> torch.Tensor:
    """Boolean ``[N, C]`` mask of the positive classes of each sample."""
    if labels.ndim == 1:
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"label out of range [0, {num_classes}): "
                             f"min {int(labels.min())}, max {int(labels.max())}")
        pos = torch.zeros(labels.shape[0], num_classes, dtype=torch.bool, device=labels.device)
        pos[torch.arange(labels.shape[0], device=labels.device), labels.long()] = True
        return pos
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        return labels > pos_threshold
    raise ValueError(f"labels must be [N] indices or [N, {num_classes}] matrices, "
                     f"got shape {tuple(labels.shape)}")


def topk_correct(scores: torch.Tensor, labels: torch.Tensor,
                 ks: Union[int, Sequence[int]] = (1, 5), pos_threshold: float = 0.0):
    """Number of samples correct at each k (an int when ``ks`` is one int).

    Args:
        scores: ``[N, C]`` logits or probabilities (any monotone transform gives the same).
        labels: ``[N]`` class indices or ``[N, C]`` label matrix.
        ks: the k values; a k above C counts as C (every sample with a positive is correct).
        pos_threshold: a matrix entry above this is a positive class.
    Returns:
        list of ints, one per k (or one int for an int ``ks``).
    """
    if isinstance(ks, int):
        return topk_correct(scores, labels, (ks,), pos_threshold)[0]
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {tuple(scores.shape)}")
    n, c = scores.shape
    if labels.shape[0] != n:
        raise ValueError(f"{n} score rows but {labels.shape[0]} labels")
    if n == 0:
        return [0 for _ in ks]
    pos = _positives(labels, c, pos_threshold)
    kmax = min(max(ks), c)
    top = scores.detach().float().topk(kmax, dim=1).indices  # [N, kmax], best first
    hit = pos.gather(1, top)  # [N, kmax]: is the j-th best class a positive?
    return [int(hit[:, :min(k, c)].any(dim=1).sum()) for k in ks]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5),
                  pos_threshold: float = 0.0) -> list:
    """Top-k accuracies in percent (``100 * correct / N``), one float per k; 0 for N = 0."""
    n = scores.shape[0]
    return [100.0 * c / n if n else 0.0 for c in topk_correct(scores, labels, ks, pos_threshold)]


def per_dataset_topk_correct(scores: Mapping[str, torch.Tensor],
                             labels: Mapping[str, torch.Tensor],
                             masks: Optional[Mapping[str, torch.Tensor]] = None,
                             ks: Sequence[int] = (1, 5),
                             pos_threshold: float = 0.0) -> Dict[str, dict]:
    """Top-k correct counts of every head on the samples of its own dataset.

    Args:
        scores: ``{dataset: [B, C_d]}`` head outputs for the whole batch.
        labels: ``{dataset: [B, C_d]}`` label matrices (or ``[B]`` indices).
        masks: ``{dataset: [B]}``, non-zero where the sample belongs to the dataset;
            ``None``: every sample counts for every head.
        ks: the k values.
    Returns:
        ``{dataset: {"num": n_d, "correct": [c_k for k in ks]}}``.
    """
    out = {}
    for name, s in scores.items():
        if name not in labels:
            raise KeyError(f"no labels for dataset '{name}' (have {sorted(labels)})")
        y = labels[name]
        if masks is not None:
            keep = masks[name].bool()
            s, y = s[keep], y[keep]
        out[name] = {"num": int(s.shape[0]), "correct": topk_correct(s, y, ks, pos_threshold)}
    return out


def accuracy_from_counts(counts: Mapping[str, dict], ks: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """Flat accuracy dict from (possibly summed) counts of :func:`per_dataset_topk_correct`.

    Returns:
        ``{"<dataset>_top<k>_acc": %, ..., "mean_top<k0>_acc": %}``, the mean over the
        datasets with samples of the first k's accuracy; a dataset without samples is left
        out of its keys and of the mean.
    """
    flat: Dict[str, float] = {}
    first = []
    for name, c in counts.items():
        if c["num"] == 0:
            continue
        for k, correct in zip(ks, c["correct"]):
            flat[f"{name}_top{k}_acc"] = 100.0 * correct / c["num"]
        first.append(flat[f"{name}_top{ks[0]}_acc"])
    if first:
        flat[f"mean_top{ks[0]}_acc"] = sum(first) / len(first)
    return flat


def mean_average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the average precision of ranking the samples by score, in
    percent; classes without a positive sample are left out (as the original code did).

    AP = sum over score thresholds of (recall step) x (precision there); tied scores form
    one threshold. Args: ``scores [N, C]``, ``labels [N, C]`` (positive: > 0) or ``[N]``.
    """
    pos = _positives(labels, scores.shape[1], 0.0)
    aps = []
    for c in range(scores.shape[1]):
        n_pos = int(pos[:, c].sum())
        if n_pos == 0:
            continue
        s, order = scores[:, c].double().sort(descending=True)
        tp = pos[order, c].double().cumsum(0)
        last = torch.ones_like(s, dtype=torch.bool)  # the last sample of each tie group
        last[:-1] = s[1:] != s[:-1]
        tp, rank = tp[last], torch.arange(1, s.numel() + 1, dtype=torch.float64)[last]
        recall_step = torch.diff(tp, prepend=tp.new_zeros(1)) / n_pos
        aps.append(float((recall_step * tp / rank).sum()))
    return 100.0 * sum(aps) / len(aps) if aps else 0.0
