"""Spatial sampling of clips: random resized crop, short-side jitter + crop, flip, test views.

Facts carried over from PySlowFast's ``transform.py`` (the behaviour the original trained
and tested with):

- random resized crop (Inception style): up to 10 tries of area ``U(scale) * H * W`` and
  aspect ``exp(U(log ratio))``, ``w = round(sqrt(area * aspect))``,
  ``h = round(sqrt(area / aspect))``, accepted when ``0 < w <= W`` and ``0 < h <= H``,
  then a uniform top-left corner; otherwise a centre crop clipped to the ratio range.
  The crop is resized with bilinear interpolation, ``align_corners=False``, no antialias.
- short-side jitter: size ``round(U(min, max))`` (or the inverse-uniform variant); the
  long side becomes ``floor(long / short * size)``; no resize when the short side
  already has that size. Then a random ``crop x crop`` window.
- test crops: centre offsets ``ceil((L - crop) / 2)``; spatial index 0 / 2 moves the
  crop to the start / end of the long side.

Resizing runs on float values in [0, 255] and the result is normalised afterwards: the
original normalises first, which is the same map (bilinear weights sum to one; the two
differ by float rounding only) but costs a float pass over the whole decoded frame.
Clips are uint8 ``[T, H, W, 3]``; resized outputs are float ``[3, T, S, S]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .workspace import scratch

__all__ = ["Box", "JitterCrop", "draw_resized_crop_box", "draw_jitter_crop", "short_side_hw",
           "resize_region", "scale_and_crop", "uniform_crop_offsets", "eval_view", "normalize_",
           "uniform", "randint"]

Box = Tuple[int, int, int, int]  # top, left, height, width (pixels of the decoded frame)


# ------------------------------------------------------------------------ random draws
def uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """One float64 draw of U(low, high) from a CPU generator."""
    u = float(torch.rand((), dtype=torch.float64, generator=generator))
    return low + (high - low) * u


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer draw in [low, high] (both included) from a CPU generator."""
    if high <= low:
        return int(low)
    return int(torch.randint(low, high + 1, (), generator=generator))


def draw_resized_crop_box(generator: torch.Generator, frame_hw: Tuple[int, int],
                          scale: Sequence[float], ratio: Sequence[float],
                          tries: int = 10) -> Box:
    """Inception-style crop box of a frame of size ``frame_hw`` (area- and log-aspect-
    uniform, ``tries`` attempts, then the centre crop clipped to the ratio range)."""
    H, W = frame_hw
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        area = H * W * uniform(generator, scale[0], scale[1])
        aspect = math.exp(uniform(generator, *log_ratio))
        w = int(round(math.sqrt(area * aspect)))
        h = int(round(math.sqrt(area / aspect)))
        if 0 < w <= W and 0 < h <= H:
            return (randint(generator, 0, H - h), randint(generator, 0, W - w), h, w)
    in_ratio = W / H
    if in_ratio < min(ratio):
        w, h = W, int(round(W / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = H, int(round(H * max(ratio)))
    else:
        h, w = H, W
    return ((H - h) // 2, (W - w) // 2, h, w)


@dataclass(frozen=True)
class JitterCrop:
    """Short side resized to ``size``, then the window at (top, left) of ``crop`` pixels
    (offsets in the resized frame)."""

    size: int
    top: int
    left: int
    crop: int


def short_side_hw(frame_hw: Tuple[int, int], size: int) -> Tuple[int, int]:
    """Frame size after scaling the short side to ``size`` (long side floored)."""
    H, W = frame_hw
    if W <= H:
        return (H if W == size else int(math.floor(H / W * size)), size)
    return (size, W if H == size else int(math.floor(W / H * size)))


def draw_jitter_crop(generator: torch.Generator, frame_hw: Tuple[int, int], min_size: int,
                     max_size: int, crop: int, inverse_uniform: bool = False) -> JitterCrop:
    """Short-side scale jitter then a uniformly placed ``crop`` window.

    The original drew the offset with ``randint(0, L - crop)`` excluding the last
    position; here every position that fits is possible (all offsets in [0, L - crop]).
    """
    if inverse_uniform:
        size = int(round(1.0 / uniform(generator, 1.0 / max_size, 1.0 / min_size)))
    else:
        size = int(round(uniform(generator, min_size, max_size)))
    h, w = short_side_hw(frame_hw, size)
    if h < crop or w < crop:
        raise ValueError(f"short-side jitter: frame {frame_hw} scaled to {h}x{w} is smaller "
                         f"than the crop {crop} (DATA.TRAIN_JITTER_SCALES / TRAIN_CROP_SIZE)")
    return JitterCrop(size, randint(generator, 0, h - crop), randint(generator, 0, w - crop), crop)


# ----------------------------------------------------------------------- deterministic
def _resized_planes(x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """uint8 [T, h, w, 3] -> float32 [3, T, H', W'] (the model's channel-first layout),
    bilinearly resized to ``hw``; the result never aliases a scratch buffer."""
    shape = (3,) + tuple(x.shape[:3])
    if tuple(x.shape[1:3]) == tuple(hw):
        return torch.empty(shape, dtype=torch.float32, device=x.device).copy_(x.permute(3, 0, 1, 2))
    planes = scratch("f32_a", shape, torch.float32, x.device)
    planes.copy_(x.permute(3, 0, 1, 2))
    return F.interpolate(planes, size=tuple(hw), mode="bilinear", align_corners=False)


def resize_region(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a cropped region to ``size x size``.

    x: uint8 [T, h, w, 3] (the crop box of the frames). Returns float32 [3, T, S, S] with
    values in [0, 255] (not normalised).
    """
    return _resized_planes(x, (size, size))


def scale_and_crop(x: torch.Tensor, short_side: int, top: int, left: int,
                   crop: int) -> torch.Tensor:
    """Scale the short side to ``short_side`` and take the ``crop`` window at (top, left).

    x: uint8 [T, H, W, 3]. Returns float32 [3, T, crop, crop] in [0, 255].
    """
    h, w = short_side_hw(tuple(x.shape[1:3]), short_side)
    if top < 0 or left < 0 or top + crop > h or left + crop > w:
        raise ValueError(f"crop {crop} at ({top}, {left}) does not fit the frame "
                         f"{tuple(x.shape[1:3])} scaled to {h}x{w}")
    return _resized_planes(x, (h, w))[:, :, top:top + crop, left:left + crop]


def uniform_crop_offsets(hw: Tuple[int, int], crop: int, spatial_idx: int) -> Tuple[int, int]:
    """(top, left) of test crop ``spatial_idx`` (0: start, 1: centre, 2: end of the long
    side) in a frame of size ``hw``."""
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    h, w = hw
    top, left = int(math.ceil((h - crop) / 2)), int(math.ceil((w - crop) / 2))
    if h > w:
        top = {0: 0, 1: top, 2: h - crop}[spatial_idx]
    else:
        left = {0: 0, 1: left, 2: w - crop}[spatial_idx]
    return top, left


def normalize_(x: torch.Tensor, mean: Sequence[float], std: Sequence[float],
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel, in place or into ``out`` (same shape).
    x: float [3, ...] in [0, 255]. Returns the result."""
    shape = (3,) + (1,) * (x.dim() - 1)
    scale = [1.0 / (255.0 * s) for s in std]
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=x.dtype, device=x.device)
    scale = torch.tensor(scale, dtype=x.dtype, device=x.device)
    # one pass: x * 1 / (255 std) - mean / std (the original: (x / 255 - mean) / std)
    return torch.addcmul(shift.view(shape), x, scale.view(shape), out=x if out is None else out)


def eval_view(clip: torch.Tensor, spatial_idx: int, num_crops: int, *, crop_size: int,
              short_side: int, mean: Sequence[float] = (0.45, 0.45, 0.45),
              std: Sequence[float] = (0.225, 0.225, 0.225)) -> torch.Tensor:
    """One spatial test view of a clip.

    clip: uint8 [T, H, W, 3]. The short side is scaled to ``short_side`` (the original:
    ``TRAIN_JITTER_SCALES[0]`` for one crop, ``TEST_CROP_SIZE`` for three crops and for
    SSv2), then crop ``spatial_idx`` of ``crop_size`` is taken: the centre when
    ``num_crops`` is 1, else start / centre / end of the long side. Returns the normalised
    float32 [3, T, crop_size, crop_size].
    """
    if num_crops not in (1, 3):
        raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be 1 or 3, got {num_crops}")
    idx = 1 if num_crops == 1 else spatial_idx
    hw = short_side_hw(tuple(clip.shape[1:3]), short_side)
    if min(hw) < crop_size:
        raise ValueError(f"test view: frame {tuple(clip.shape[1:3])} scaled to {hw} is "
                         f"smaller than DATA.TEST_CROP_SIZE {crop_size}")
    top, left = uniform_crop_offsets(hw, crop_size, idx)
    out = scale_and_crop(clip, short_side, top, left, crop_size).contiguous()
    return normalize_(out, mean, std)
