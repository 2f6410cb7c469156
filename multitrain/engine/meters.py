"""Meters: validation top-k counts and multi-view test ensembling.

Stateful accumulators built on the pure functions of :mod:`multitrain.engine.metrics`.
The only communication is ``ValMeter.synchronize`` (a collective: call it on every rank);
``TestMeter`` expects views already gathered from all ranks.
"""

import logging
import math
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from . import distributed as du
from .metrics import (accuracy_from_counts, mean_average_precision, per_dataset_topk_correct,
                      topk_correct)

__all__ = ["ValMeter", "TestMeter"]

logger = logging.getLogger(__name__)


class ValMeter:
    """Per-dataset top-k counts over a validation pass.

    ``names``: datasets counted from the start (zero samples until seen), so every rank
    holds the same counts for :meth:`synchronize` whichever datasets its batches held.
    """

    def __init__(self, ks: Sequence[int] = (1, 5), names: Sequence[str] = ()):
        self.ks = tuple(ks)
        self.names = tuple(names)
        self.reset()

    def update(self, scores: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
               masks: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        """Args: ``scores {d: [B, C_d]}``, ``labels {d: [B, C_d] or [B]}``, ``masks {d: [B]}``."""
        for name, c in per_dataset_topk_correct(scores, labels, masks, self.ks).items():
            acc = self.counts.setdefault(name, {"num": 0, "correct": [0] * len(self.ks)})
            acc["num"] += c["num"]
            acc["correct"] = [a + b for a, b in zip(acc["correct"], c["correct"])]

    def synchronize(self) -> None:
        """Sum the counts over ranks (collective; every rank must have seen the same heads)."""
        flat = {f"{d}|num": c["num"] for d, c in self.counts.items()}
        flat.update({f"{d}|{i}": v for d, c in self.counts.items() for i, v in enumerate(c["correct"])})
        total = du.all_reduce_sum(flat)
        for d, c in self.counts.items():
            c["num"] = int(round(total[f"{d}|num"]))
            c["correct"] = [int(round(total[f"{d}|{i}"])) for i in range(len(self.ks))]

    def summary(self) -> Dict[str, float]:
        """``{"<d>_top<k>_acc": %, "mean_top<k0>_acc": %}`` (see :func:`accuracy_from_counts`)."""
        return accuracy_from_counts(self.counts, self.ks)

    def top1(self) -> float:
        """Top-1 accuracy (%) over every sample counted so far (first k), for progress bars."""
        num = sum(c["num"] for c in self.counts.values())
        return 100.0 * sum(c["correct"][0] for c in self.counts.values()) / max(num, 1)

    def reset(self) -> None:
        self.counts = {n: {"num": 0, "correct": [0] * len(self.ks)} for n in self.names}


class TestMeter:
    """Multi-view test: ensemble each video's view probabilities.

    Every (video, view) pair counts exactly once: repeats (a sampler padding its last
    batch) are ignored and counted. With several ranks, gather each batch's views from
    all ranks before :meth:`update` (``distributed.all_gather`` on probs, video and view
    indices): every rank then holds the complete, de-duplicated result.

    Args:
        num_videos: rows of ``test.csv``; video indices are row numbers, and the rows of
            :meth:`scores` follow that order.
        num_classes: classes of the tested head.
        num_views: ``NUM_ENSEMBLE_VIEWS * NUM_SPATIAL_CROPS``.
        ensemble_method: ``"sum"`` or ``"max"`` (``DATA.ENSEMBLE_METHOD``).
        ks: the k of the reported top-k accuracies.
        multi_label: also report the mAP over videos.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, num_videos: int, num_classes: int, num_views: int,
                 ensemble_method: str = "sum", ks: Sequence[int] = (1, 5),
                 multi_label: bool = False):
        if ensemble_method not in ("sum", "max"):
            raise ValueError(f"DATA.ENSEMBLE_METHOD must be sum or max, got '{ensemble_method}'")
        self.num_videos, self.num_classes, self.num_views = num_videos, num_classes, num_views
        self.method, self.ks, self.multi_label = ensemble_method, tuple(ks), multi_label
        init = 0.0 if ensemble_method == "sum" else -math.inf
        self._scores = torch.full((num_videos, num_classes), init, dtype=torch.float64)
        self.labels: Optional[torch.Tensor] = None  # [V] indices or [V, C] label matrix
        self.seen = torch.zeros(num_videos, num_views, dtype=torch.bool)
        self.duplicates = 0

    def set_labels(self, labels: torch.Tensor, video_idx: Optional[torch.Tensor] = None) -> None:
        """Labels of all videos (``[V]`` or ``[V, C]``), or of the videos ``video_idx``."""
        labels = torch.as_tensor(labels).detach().cpu()
        if video_idx is None:
            if labels.shape[0] != self.num_videos:
                raise ValueError(f"{labels.shape[0]} labels for {self.num_videos} videos")
            self.labels = labels.clone()
            return
        if self.labels is None:
            shape = (self.num_videos,) + tuple(labels.shape[1:])
            self.labels = torch.full(shape, -1 if labels.ndim == 1 else 0, dtype=labels.dtype)
        self.labels[video_idx.cpu().long()] = labels

    def update(self, probs: torch.Tensor, video_idx: torch.Tensor, view_idx: torch.Tensor,
               labels: Optional[torch.Tensor] = None) -> None:
        """Add a batch of views.

        Args:
            probs: ``[N, C]`` probabilities (after the head's activation).
            video_idx: ``[N]`` row of the video in ``test.csv``.
            view_idx: ``[N]`` view number in ``[0, num_views)``.
            labels: optional ``[N]`` or ``[N, C]`` labels of each view's video (else call
                :meth:`set_labels` before :meth:`finalize`).
        """
        probs = probs.detach().to("cpu", torch.float64)
        video_idx, view_idx = video_idx.cpu().long(), view_idx.cpu().long()
        if probs.shape != (video_idx.shape[0], self.num_classes):
            raise ValueError(f"probs {tuple(probs.shape)} for {video_idx.shape[0]} views of "
                             f"{self.num_classes} classes")
        if (video_idx < 0).any() or (video_idx >= self.num_videos).any() or \
                (view_idx < 0).any() or (view_idx >= self.num_views).any():
            raise ValueError(f"video index outside [0, {self.num_videos}) or view index outside "
                             f"[0, {self.num_views})")
        if labels is not None:
            self.set_labels(labels, video_idx)
        for i, (v, j) in enumerate(zip(video_idx.tolist(), view_idx.tolist())):
            if self.seen[v, j]:
                self.duplicates += 1
                continue
            self.seen[v, j] = True
            if self.method == "sum":
                self._scores[v] += probs[i]
            else:
                self._scores[v] = torch.maximum(self._scores[v], probs[i])

    def scores(self) -> torch.Tensor:
        """``[num_videos, num_classes]`` ensembled scores (float32, rows in CSV order; 0 for
        a video without any view)."""
        out = self._scores.clone()
        out[torch.isinf(out)] = 0.0  # "max" rows never updated
        return out.float()

    def finalize(self, with_accuracy: bool = True) -> Dict[str, float]:
        """Video-level metrics over the videos that received at least one view.

        Returns:
            ``{"top1": %, "top5": %, ["mAP": %,] "num_videos": n, "missing_views": m,
            "duplicate_views": d}``; only the last three without accuracy.
        """
        if with_accuracy and self.labels is None:
            raise RuntimeError("TestMeter.finalize: no labels (pass them to update() or "
                               "call set_labels())")
        has_view = self.seen.any(dim=1)
        missing = int((~self.seen).sum())
        if missing:
            logger.warning("multi-view test: %d views missing (%d videos without any view)",
                           missing, int((~has_view).sum()))
        if self.duplicates:
            logger.info("multi-view test: %d repeated views ignored", self.duplicates)
        n = int(has_view.sum())
        out = {"num_videos": n, "missing_views": missing, "duplicate_views": self.duplicates}
        if not with_accuracy:
            return out
        if n == 0:
            return {**{f"top{k}": 0.0 for k in self.ks}, **out}
        scores, labels = self.scores()[has_view], self.labels[has_view]
        correct = topk_correct(scores, labels, self.ks)
        acc = {f"top{k}": 100.0 * c / n for k, c in zip(self.ks, correct)}
        if self.multi_label:
            acc["mAP"] = mean_average_precision(scores, labels)
        return {**acc, **out}

    def save(self, path: str, **extra) -> str:
        """``np.save`` the ``[V, C]`` float32 scores at ``path`` (".npy" appended when
        missing, as numpy does), as the original code did; and ``{"labels", "seen":
        [V, views], "ensemble_method", **extra}`` (e.g. ``paths=[...]``) next to it in
        ``<path without .npy>.details.pt`` (``torch.load(weights_only=True)``).
        Returns the .npy path."""
        if not path.endswith(".npy"):
            path += ".npy"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.save(path, self.scores().numpy())
        torch.save({"labels": self.labels, "seen": self.seen, "ensemble_method": self.method,
                    **extra}, path[:-len(".npy")] + ".details.pt")
        logger.info("saved test scores %s to %s", tuple(self._scores.shape), path)
        return path
