"""Random erasing of a clip: the same boxes on every frame (the original's "cube" mode).

Facts from timm / PySlowFast ``RandomErasing`` as the original called it (after the crop,
on normalised values): with probability ``prob`` erase ``count`` boxes, ``count`` uniform
in ``[1, max_count]`` (``AUG.RE_COUNT`` is the maximum); each box gets up to 10 tries of
area ``U(0.02, 1/3) * S * S / count`` and aspect ``exp(U(log 0.3, log 1/0.3))``, sides
``round(sqrt(area * aspect))`` x ``round(sqrt(area / aspect))``, accepted when both are
smaller than the image, at a uniform position. Fill: ``pixel`` = a standard normal value
per pixel, channel and frame; ``rand`` = one normal colour per frame; ``const`` = 0.

Every frame is erased. (The original also passed ``num_splits = RE_COUNT``, which with
``RE_COUNT > 1`` left the first ``T // RE_COUNT`` frames unerased: a batch-split option
applied to frames by accident; with the original code's ``RE_COUNT 1`` nothing differs.)

All draws come from the generator passed to :func:`draw_erasing_params`; the noise is a
function of a seed drawn there and is generated on the CPU, then moved to the clip's
device, so CPU and GPU runs erase identically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .geometry import randint, uniform

__all__ = ["ErasingParams", "draw_erasing_params", "apply_erasing", "ERASE_MODES"]

ERASE_MODES = ("pixel", "rand", "const")


@dataclass(frozen=True)
class ErasingParams:
    """Boxes (top, left, height, width) erased on every frame, and the noise seed."""

    boxes: Tuple[Tuple[int, int, int, int], ...]
    mode: str
    noise_seed: int


def draw_erasing_params(generator: torch.Generator, size_hw: Tuple[int, int], prob: float,
                        mode: str = "pixel", max_count: int = 1, min_area: float = 0.02,
                        max_area: float = 1 / 3,
                        min_aspect: float = 0.3) -> Optional[ErasingParams]:
    """Draw the erasing of one clip of spatial size ``size_hw``; None = no erasing."""
    if mode not in ERASE_MODES:
        raise ValueError(f"AUG.RE_MODE must be one of {ERASE_MODES}, got {mode!r}")
    if prob <= 0 or uniform(generator) >= prob:
        return None
    H, W = size_hw
    count = randint(generator, 1, max_count) if max_count > 1 else 1
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    boxes = []
    for _ in range(count):
        for _ in range(10):
            area = uniform(generator, min_area, max_area) * H * W / count
            aspect = math.exp(uniform(generator, *log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < W and h < H:
                boxes.append((randint(generator, 0, H - h), randint(generator, 0, W - w), h, w))
                break
    seed = int(torch.randint(2**62, (), generator=generator))
    return ErasingParams(tuple(boxes), mode, seed)


def apply_erasing(x: torch.Tensor, params: Optional[ErasingParams]) -> torch.Tensor:
    """Erase in place. x: float [3, T, H, W] (normalised); returns x."""
    if params is None or not params.boxes:
        return x
    T = x.shape[1]
    g = torch.Generator().manual_seed(params.noise_seed)
    for top, left, h, w in params.boxes:
        if params.mode == "pixel":
            noise = torch.randn((T, 3, h, w), generator=g)
        elif params.mode == "rand":
            noise = torch.randn((T, 3, 1, 1), generator=g).expand(T, 3, h, w)
        else:
            noise = torch.zeros((T, 3, 1, 1)).expand(T, 3, h, w)
        x[:, :, top:top + h, left:left + w] = noise.to(x.device, x.dtype).permute(1, 0, 2, 3)
    return x
