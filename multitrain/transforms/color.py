"""Point and colour ops of RandAugment on uint8 clips, computed the way PIL computes them.

A clip is a uint8 tensor ``x: [T, H, W, 3]`` (channels last, what the decoders return) on
any device. Every op treats each frame as PIL treats one image (statistics such as
histograms and means are per frame), so applying an op to a clip equals applying it to
each frame. The arithmetic follows PIL's C code (facts, not code, taken from Pillow):

- ``Image.blend(a, b, f)`` computes ``a + f * (b - a)`` in float32 and truncates;
  ImageEnhance's Brightness/Contrast/Color/Sharpness blend the image with a "degenerate"
  image (black / grey mean / luma / 3x3 smooth).
- RGB -> L is ``(19595 R + 38470 G + 7471 B + 32768) >> 16``.
- The SMOOTH filter is ``[[1,1,1],[1,5,1],[1,1,1]] / 13``, rounded, frame border kept.

Implementation: every op is a look-up table (per clip or per frame and channel) or a
short chain of whole-clip tensor ops; they run on any device. On the CPU three inner
loops are handed to PIL's C kernels, frame by frame, because torch/numpy have no fast
uint8 equivalent on one thread (timings in docs/BENCHMARKS.md, "Loader"): applying a
table (``Image.point``, faster than ``np.take`` or torch int64 indexing), histograms
(``Image.histogram``, faster than ``torch.bincount``), luma (``convert("L")``) and the
Color blend (``ImageEnhance.Color``, faster than luma + a blend table). They compute the same integers as the tensor code (the tests check
both paths); :func:`use_cpu_kernels` switches them off.

Why not torchvision.transforms.v2.functional: its ``adjust_contrast/saturation/sharpness``
and ``autocontrast`` use float luma weights and rounding that differ from PIL by a level
here and there, and they are slower on one thread.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import numpy as np
import torch

from .workspace import scratch

__all__ = ["apply_lut", "blend", "blend_lut", "grayscale", "luma", "invert", "posterize",
           "solarize", "solarize_add", "brightness", "autocontrast", "equalize", "contrast",
           "color", "sharpness", "histograms", "use_cpu_kernels"]

_L_WEIGHTS = (19595, 38470, 7471)  # PIL's ITU-R 601-2 luma in 16-bit fixed point
_CPU_KERNELS = [True]


@contextlib.contextmanager
def use_cpu_kernels(enabled: bool) -> Iterator[None]:
    """Temporarily enable/disable the PIL C kernels for CPU tensors (tests use False to
    run the device code path on the CPU)."""
    old = _CPU_KERNELS[0]
    _CPU_KERNELS[0] = bool(enabled)
    try:
        yield
    finally:
        _CPU_KERNELS[0] = old


def _cpu(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and _CPU_KERNELS[0]


def _pil_frames(x: torch.Tensor):
    """PIL RGB images of the frames of a CPU uint8 [T, H, W, 3] tensor (any strides)."""
    from PIL import Image

    xn = x.numpy()
    if xn.strides[1:] == (xn.shape[2] * 3, 3, 1):  # frames are contiguous: no copy
        size = (xn.shape[2], xn.shape[1])
        return [Image.frombuffer("RGB", size, f, "raw", "RGB", 0, 1) for f in xn]
    return [Image.fromarray(np.ascontiguousarray(f)) for f in xn]


# ------------------------------------------------------------------------ look-up tables
def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map uint8 values through a look-up table.

    x: uint8 [T, H, W, 3]; lut: uint8 [256] (one table) or [T, 3, 256] (per frame and
    channel, as PIL's per-image ops need). Returns uint8 [T, H, W, 3] (contiguous).
    """
    if _cpu(x):
        out = np.empty(tuple(x.shape), dtype=np.uint8)
        tables = lut.reshape(-1, 256).tolist()
        if lut.dim() == 1:  # one table: the clip as one tall image, one call
            tall = x.contiguous().view(1, -1, x.shape[2], 3)
            img = _pil_frames(tall)[0]
            out.reshape(tall.shape[1:])[:] = np.asarray(img.point(tables[0] * 3))
            return torch.from_numpy(out)
        for t, img in enumerate(_pil_frames(x)):
            table = tables[0] * 3 if lut.dim() == 1 else sum(tables[3 * t:3 * t + 3], [])
            out[t] = np.asarray(img.point(table))
        return torch.from_numpy(out)
    lut = lut.to(x.device)
    if lut.dim() == 1:
        return lut[x.long()]
    T = x.shape[0]
    offsets = (torch.arange(T * 3, device=x.device) * 256).view(T, 1, 1, 3)
    return lut.reshape(-1)[x.long() + offsets]


def invert(x: torch.Tensor) -> torch.Tensor:
    """ImageOps.invert. x: uint8 [T, H, W, 3]."""
    return 255 - x


def posterize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """ImageOps.posterize: keep the `bits` high bits. bits 0 gives black (old Pillow;
    Pillow >= 10 refuses 0, which timm's PosterizeIncreasing reaches at magnitude 10)."""
    if bits >= 8:
        return x
    return x & ((0xFF << (8 - bits)) & 0xFF)


def solarize(x: torch.Tensor, threshold: int) -> torch.Tensor:
    """ImageOps.solarize: invert values >= threshold (0 inverts all, 256 none)."""
    if threshold >= 256:
        return x
    # x ^ 255 == 255 - x; xor with a 0/255 mask avoids a float or int16 detour.
    return x ^ ((x >= threshold).to(torch.uint8) * 255)


def solarize_add(x: torch.Tensor, add: int, threshold: int = 128) -> torch.Tensor:
    """timm's SolarizeAdd: values below `threshold` get ``min(255, v + add)``."""
    if add <= 0:
        return x
    if threshold + add <= 256:  # the original code's case (128 + at most 110): nothing saturates
        return x + (x < threshold).to(torch.uint8) * add
    lut = torch.arange(256)
    lut = torch.where(lut < threshold, (lut + add).clamp(max=255), lut)
    return apply_lut(x, lut.to(torch.uint8))


def _blend_float(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    # PIL Blend.c: float32 ``a + alpha * (b - a)``, clipped, truncated toward zero.
    alpha = torch.tensor(factor, dtype=torch.float32, device=a.device)
    out = a + alpha * (b - a)
    return out.clamp_(0.0, 255.0).to(torch.uint8)


def blend_lut(factor: float, degenerate: torch.Tensor) -> torch.Tensor:
    """The uint8 table ``v -> blend(degenerate, v, factor)`` for constant degenerates.

    degenerate: integer tensor of any shape [...]; returns uint8 [..., 256].
    """
    v = torch.arange(256, dtype=torch.float32, device=degenerate.device)
    return _blend_float(degenerate.to(torch.float32).unsqueeze(-1), v, factor)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """Image.blend(degenerate, x, factor) for uint8 tensors (broadcastable shapes)."""
    if _cpu(x):
        # A 256 x 256 table of PIL's float32 result indexed by (degenerate, value):
        # three uint16 passes and a numpy take instead of five float passes.
        table = _blend_float(torch.arange(256.0)[:, None], torch.arange(256.0)[None, :], factor)
        idx = np.left_shift(degenerate.numpy().astype(np.uint16), 8)
        idx = np.bitwise_or(idx, x.numpy())
        return torch.from_numpy(np.take(table.numpy().reshape(-1), idx))
    return _blend_float(degenerate.to(torch.float32), x.to(torch.float32), factor)


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return apply_lut(x, blend_lut(factor, torch.zeros((), dtype=torch.int64)))


# ----------------------------------------------------------------- per-frame statistics
def histograms(x: torch.Tensor) -> torch.Tensor:
    """Per frame and channel histograms. x: uint8 [T, H, W, 3] -> int64 [T, 3, 256]."""
    T = x.shape[0]
    if _cpu(x):
        hist = [img.histogram() for img in _pil_frames(x)]
        return torch.tensor(hist, dtype=torch.int64).view(T, 3, 256)
    offsets = (torch.arange(T * 3, dtype=torch.int32, device=x.device) * 256).view(T, 1, 1, 3)
    idx = x.to(torch.int32) + offsets
    return torch.bincount(idx.reshape(-1), minlength=T * 768).view(T, 3, 256)


def luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L as exact float values. x: uint8 [T, H, W, 3] -> float32 [T, H, W].

    ``(19595 R + 38470 G + 7471 B + 32768) >> 16`` in float32 is exact: the weights over
    65536 are dyadic and every partial sum stays below 2**24.
    """
    xf = scratch("f32_a", tuple(x.shape), torch.float32, x.device)
    xf.copy_(x)
    w = torch.tensor(_L_WEIGHTS, dtype=torch.float32, device=x.device) / 65536.0
    return (xf @ w).add_(0.5).floor_()


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L. x: uint8 [T, H, W, 3] -> uint8 [T, H, W]."""
    if _cpu(x):
        return torch.from_numpy(np.stack([np.asarray(im.convert("L")) for im in _pil_frames(x)]))
    return luma(x).to(torch.uint8)


def _mean_luma(x: torch.Tensor) -> torch.Tensor:
    """``int(mean(L) + 0.5)`` per frame (ImageEnhance.Contrast's grey). -> float64 [T]."""
    T, n = x.shape[0], x.shape[1] * x.shape[2]
    if _cpu(x):
        levels = np.arange(256)
        sums = [float(np.dot(im.convert("L").histogram(), levels)) for im in _pil_frames(x)]
        total = torch.tensor(sums, dtype=torch.float64)
    else:
        total = luma(x).reshape(T, -1).sum(-1, dtype=torch.float64)  # exact integers
    return (total / n + 0.5).floor()


def autocontrast_lut(x: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast (no cutoff) tables. x: uint8 [T, H, W, 3] -> uint8 [T, 3, 256].

    PIL stretches [lo, hi] (first/last non-empty histogram bin, i.e. min/max) to [0, 255]
    with ``int(v * scale + offset)`` in double precision; hi <= lo keeps the channel.
    """
    T = x.shape[0]
    lo, hi = torch.aminmax(x.reshape(T, -1, 3), dim=1)
    lo, hi = lo.to(torch.float64), hi.to(torch.float64)  # [T, 3]
    span = hi - lo
    # tensor / tensor: torch evaluates ``255.0 / t`` as 255 * (1 / t), one ulp off Python.
    scale = torch.full_like(span, 255.0) / span.clamp(min=1.0)
    offset = -lo * scale
    v = torch.arange(256, dtype=torch.float64, device=x.device)
    lut = (v * scale.unsqueeze(-1) + offset.unsqueeze(-1)).trunc().clamp(0, 255)
    lut = torch.where((span > 0).unsqueeze(-1), lut, v)
    return lut.to(torch.uint8)


def autocontrast(x: torch.Tensor, out: Optional[tuple] = None) -> torch.Tensor:
    """ImageOps.autocontrast per frame. ``out`` (row, col slices) restricts the output."""
    return apply_lut(_region(x, out), autocontrast_lut(x))


def equalize_lut(x: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize tables. x: uint8 [T, H, W, 3] -> uint8 [T, 3, 256].

    PIL: step = (pixels - count of the last non-empty bin) // 255; entry i is
    (step // 2 + pixels below i) // step (clipped to 255); identity when at most one bin
    is used or step is 0.
    """
    h = histograms(x).to(x.device)  # [T, 3, 256]
    used = h > 0
    last = 255 - torch.flip(used, dims=[-1]).to(torch.uint8).argmax(-1, keepdim=True)
    h_last = torch.gather(h, -1, last).squeeze(-1)
    step = (h.sum(-1) - h_last) // 255  # [T, 3]
    below = torch.cumsum(h, -1) - h  # pixels with a smaller value
    lut = (step.unsqueeze(-1) // 2 + below) // step.clamp(min=1).unsqueeze(-1)
    keep = (used.sum(-1) <= 1) | (step == 0)
    v = torch.arange(256, device=x.device).expand_as(lut)
    return torch.where(keep.unsqueeze(-1), v, lut.clamp(max=255)).to(torch.uint8)


def equalize(x: torch.Tensor, out: Optional[tuple] = None) -> torch.Tensor:
    """ImageOps.equalize per frame. ``out`` (row, col slices) restricts the output."""
    return apply_lut(_region(x, out), equalize_lut(x))


def contrast(x: torch.Tensor, factor: float, out: Optional[tuple] = None) -> torch.Tensor:
    """ImageEnhance.Contrast per frame: blend with the frame's rounded mean luma."""
    mean = _mean_luma(x).to(x.device)
    lut = blend_lut(factor, mean.view(-1, 1).expand(-1, 3))  # [T, 3, 256]
    return apply_lut(_region(x, out), lut)


def color(x: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageEnhance.Color: blend with the luma image (per pixel)."""
    if _cpu(x):  # PIL's fused C loop (luma + blend) beats luma + table
        from PIL import ImageEnhance

        out = np.empty(tuple(x.shape), dtype=np.uint8)
        for t, img in enumerate(_pil_frames(x)):
            out[t] = np.asarray(ImageEnhance.Color(img).enhance(factor))
        return torch.from_numpy(out)
    return blend(grayscale(x).unsqueeze(-1), x, factor)


def sharpness(x: torch.Tensor, factor: float, out: Optional[tuple] = None) -> torch.Tensor:
    """ImageEnhance.Sharpness on a region of the frames.

    x: uint8 [T, h, w, 3], a region of the full frames. PIL keeps the frame's outer ring
    unfiltered; here the outer ring of ``x`` is kept, so ``out`` = (rows, cols) slices of
    ``x`` must stay one pixel inside every side of ``x`` that is not a side of the frame
    (default: all of x, which must then be the full frame).
    Returns uint8 [T, rows, cols, 3].
    """
    xi = x.to(torch.int16)
    rows = xi[:, :-2] + xi[:, 1:-1] + xi[:, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    total = box.add_(xi[:, 1:-1, 1:-1], alpha=4)  # kernel 1,1,1 / 1,5,1 / 1,1,1
    # round(total / 13): PIL's float32 filter never sits on a .5 tie (13 is odd).
    if _cpu(x):  # a 3316-entry table beats int16 division 3x
        table = ((np.arange(3316) * 2 + 13) // 26).astype(np.uint8)
        smooth = torch.from_numpy(np.take(table, total.numpy()))
    else:
        smooth = torch.div(2 * total + 13, 26, rounding_mode="floor").to(torch.uint8)
    degenerate = x.clone()
    degenerate[:, 1:-1, 1:-1] = smooth
    return blend(_region(degenerate, out), _region(x, out), factor)


def _region(x: torch.Tensor, out: Optional[tuple]) -> torch.Tensor:
    return x if out is None else x[(slice(None),) + tuple(out)]
