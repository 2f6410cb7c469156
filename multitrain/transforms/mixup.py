"""Mixup / CutMix on a local batch, with per-head label smoothing.

Facts from timm's ``Mixup`` as PySlowFast/MultiTrain used it (Zhang et al. 2018; Yun et
al. 2019): sample i is mixed with sample B-1-i (the batch flipped); one lambda per batch:
with probability ``prob`` mix, CutMix with probability ``switch_prob`` (lambda ~
Beta(cutmix_alpha)) else Mixup (lambda ~ Beta(alpha)); CutMix cuts a box of sides
``int(L * sqrt(1 - lambda))`` centred at a uniform pixel, clipped to the frame, and
lambda is corrected to the box actually pasted. Targets are ``lambda * y_i + (1 - lambda)
* y_{B-1-i}`` of smoothed one-hots ``y * (1 - s) + s / K``.

Multi-dataset batches: labels are ``{dataset: [B, K_d]}`` (rows of other datasets' samples
are zero) with masks ``{dataset: [B]}``. Every head's labels are mixed the same way and
the masks are NOT mixed: a sample whose partner comes from another dataset trains only
its own head. Smoothing applies to every row of every head's matrix, as in the original
(rows of other datasets' samples become ``s / K_d``), so a sample whose partner comes from
another dataset gets ``lambda * smooth(y_own) + (1 - lambda) * s / K_d``: smoothing mass s.
It uses each head's own class count K_d (the original used ``MODEL.NUM_CLASSES`` for every
head).

All draws come from a CPU ``torch.Generator`` (Beta draws through a numpy generator seeded
from it), so a resumed run or a GPU run mixes identically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["MixParams", "draw_mix_params", "mix_inputs", "smooth_labels", "mix_labels",
           "one_hot", "MixUp", "mixup_from_cfg"]

Labels = Union[torch.Tensor, Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class MixParams:
    """lam = 1: no mixing. ``box`` = (y0, y1, x0, x1) for CutMix, None for Mixup."""

    lam: float
    box: Optional[Tuple[int, int, int, int]] = None


def _beta(generator: torch.Generator, alpha: float) -> float:
    seed = int(torch.randint(2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _rand(generator: torch.Generator) -> float:
    return float(torch.rand((), dtype=torch.float64, generator=generator))


def draw_mix_params(generator: torch.Generator, size_hw: Tuple[int, int], alpha: float = 0.8,
                    cutmix_alpha: float = 1.0, prob: float = 1.0,
                    switch_prob: float = 0.5) -> MixParams:
    """Draw lambda (and the CutMix box) of one batch of frames of size ``size_hw``."""
    if _rand(generator) >= prob or (alpha <= 0 and cutmix_alpha <= 0):
        return MixParams(1.0)
    if alpha > 0 and cutmix_alpha > 0:
        use_cutmix = _rand(generator) < switch_prob
    else:
        use_cutmix = cutmix_alpha > 0
    lam = _beta(generator, cutmix_alpha if use_cutmix else alpha)
    if not use_cutmix:
        return MixParams(lam)
    H, W = size_hw
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(H * ratio), int(W * ratio)
    cy = int(torch.randint(H, (), generator=generator))
    cx = int(torch.randint(W, (), generator=generator))
    y0, y1 = min(max(cy - cut_h // 2, 0), H), min(max(cy + cut_h // 2, 0), H)
    x0, x1 = min(max(cx - cut_w // 2, 0), W), min(max(cx + cut_w // 2, 0), W)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)  # corrected to the clipped box
    return MixParams(lam, (y0, y1, x0, x1))


def mix_inputs(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """x: [B, C, T, H, W] (or any [B, ..., H, W]) -> mixed copy (x is not modified)."""
    if params.lam == 1.0:
        return x
    partner = x.flip(0)
    if params.box is None:
        return x * params.lam + partner * (1.0 - params.lam)
    y0, y1, x0, x1 = params.box
    out = x.clone()
    out[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
    return out


def one_hot(labels: torch.Tensor, num_classes: int, on_value: float = 1.0,
            off_value: float = 0.0) -> torch.Tensor:
    """Integer labels [B] -> float [B, num_classes]."""
    labels = labels.long().view(-1, 1)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    out = torch.full((labels.shape[0], num_classes), off_value, device=labels.device)
    return out.scatter_(1, labels, on_value)


def smooth_labels(y: torch.Tensor, smoothing: float,
                  labelled: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y * (1 - s) + s / K`` on the labelled rows (K = y.shape[1]); other rows stay 0.

    y: float [B, K]; labelled: bool/0-1 [B] (default: rows with a positive label)."""
    if smoothing <= 0:
        return y.float()
    if labelled is None:
        labelled = y.sum(1) > 0
    y = y.float()
    add = (smoothing / y.shape[1]) * labelled.to(y.dtype)
    return y * (1.0 - smoothing) + add[:, None]


def mix_labels(labels: Labels, lam: float, smoothing: float = 0.0) -> Labels:
    """Smooth every row (per head, own class count) and mix the label matrices like the
    inputs."""
    def one(y: torch.Tensor) -> torch.Tensor:
        y = smooth_labels(y, smoothing, torch.ones(y.shape[0], dtype=torch.bool, device=y.device))
        return y if lam == 1.0 else y * lam + y.flip(0) * (1.0 - lam)

    if torch.is_tensor(labels):
        return one(labels)
    return {k: one(v) for k, v in labels.items()}


class MixUp:
    """Mixup/CutMix with per-head smoothing; ``mix(x, labels, generator, masks=None)``."""

    def __init__(self, alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1):
        self.alpha, self.cutmix_alpha = float(alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def from_cfg(cls, cfg) -> "MixUp":
        m = cfg.MIXUP
        return cls(m.ALPHA, m.CUTMIX_ALPHA, m.PROB, m.SWITCH_PROB, m.LABEL_SMOOTH_VALUE)

    def draw(self, generator: torch.Generator, size_hw: Tuple[int, int]) -> MixParams:
        return draw_mix_params(generator, size_hw, self.alpha, self.cutmix_alpha, self.prob,
                               self.switch_prob)

    def apply(self, x: torch.Tensor, labels: Labels, params: MixParams,
              masks: Optional[Mapping[str, torch.Tensor]] = None) -> Tuple[torch.Tensor, Labels]:
        return mix_inputs(x, params), mix_labels(labels, params.lam, self.label_smoothing)

    def __call__(self, x: torch.Tensor, labels: Labels, generator: torch.Generator,
                 masks: Optional[Mapping[str, torch.Tensor]] = None) -> Tuple[torch.Tensor, Labels]:
        """x: [B, 3, T, H, W]; labels: {dataset: [B, K_d]} or [B, K]. `masks` is accepted
        for the callers' convenience and not used: masks are not mixed."""
        return self.apply(x, labels, self.draw(generator, tuple(x.shape[-2:])), masks)


def mixup_from_cfg(x: torch.Tensor, labels: Labels, cfg, generator: torch.Generator,
                   masks: Optional[Mapping[str, torch.Tensor]] = None
                   ) -> Tuple[torch.Tensor, Labels]:
    """``MixUp.from_cfg(cfg)(x, labels, generator, masks)``."""
    return MixUp.from_cfg(cfg)(x, labels, generator, masks)
