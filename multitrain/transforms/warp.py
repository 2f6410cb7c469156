"""Affine warps of uint8 clips that resample like PIL's ``Image.transform(AFFINE)``.

RandAugment's geometric ops (Rotate, ShearX/Y, TranslateX/YRel) are PIL affine transforms
in the original. PIL's convention (facts from Pillow's Geometry.c):

- the matrix ``(a, b, c, d, e, f)`` maps an output pixel centre ``(x + .5, y + .5)`` to
  the input point ``(a X + b Y + c, d X + e Y + f)``;
- a point outside ``[0, W) x [0, H)`` gets the fill colour; inside, neighbours beyond the
  edge are clamped to it;
- bicubic is cubic convolution with a = -1 (not torch's -0.75), bilinear and bicubic
  truncate the result to uint8, nearest takes ``floor`` of the point.

torch's ``grid_sample`` has neither a = -1 nor PIL's fill rule, and torchvision's tensor
``affine`` has no bicubic, so the resampling is written here. Shear and translate move
pixels along one axis only (the other coordinate lands on pixel centres), so they are
exact 1-D resamplings: 4 taps instead of 16, which is what makes them cheap; Rotate is
the general 2-D case.

Regions: the warp reads ``x``, a region ``in_box`` of the full frame, and writes only the
region ``out_box``; :func:`source_box` gives the smallest ``in_box`` an ``out_box``
needs. Boxes are ``(top, left, height, width)`` in full-frame pixels.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Tuple

import torch

from .workspace import scratch

__all__ = ["warp_affine", "source_box", "KERNELS", "Box"]

Box = Tuple[int, int, int, int]  # top, left, height, width
KERNELS = ("bicubic", "bilinear", "nearest")
# Tap offsets relative to floor(position) per kernel (nearest uses floor(position + .5)).
_TAPS = {"bicubic": (-1, 0, 1, 2), "bilinear": (0, 1), "nearest": (0,)}
# PIL truncates float results; our float32 sums of float64 weights can land up to ~7e-5
# below an integer PIL computes exactly (flat areas), so a tiny bias is added before
# truncating (1e-4 gave the fewest off-by-one values against PIL among 1e-3..1e-5).
_TRUNC_BIAS = 1e-4


def _weights(frac: torch.Tensor, kernel: str) -> torch.Tensor:
    """Tap weights [..., K] (float64) of fractional positions frac [...] in [0, 1)."""
    if kernel == "bicubic":  # cubic convolution, a = -1 (PIL Geometry.c)
        d, d2, d3 = frac, frac * frac, frac * frac * frac
        return torch.stack([-d + 2 * d2 - d3, 1 - 2 * d2 + d3, d + d2 - d3, d3 - d2], -1)
    if kernel == "bilinear":
        return torch.stack([1 - frac, frac], -1)
    return torch.ones_like(frac).unsqueeze(-1)


def _base(pos: torch.Tensor, kernel: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Integer base index and fraction of positions (pixel-index units, float64)."""
    if kernel == "nearest":
        base = torch.floor(pos + 0.5)
        return base.long(), torch.zeros_like(pos)
    base = torch.floor(pos)
    return base.long(), pos - base


def _check(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"interpolation {kernel!r} is not one of {KERNELS}")


def source_box(matrix: Sequence[float], out_box: Box, frame_hw: Tuple[int, int],
               kernel: str = "bicubic") -> Box:
    """The input region a warp needs to produce ``out_box`` (clamped to the frame)."""
    _check(kernel)
    a, b, c, d, e, f = matrix
    top, left, h, w = out_box
    H, W = frame_hw
    xs = (left + 0.5, left + w - 0.5)
    ys = (top + 0.5, top + h - 0.5)
    us = [a * X + b * Y + c - 0.5 for X in xs for Y in ys]
    vs = [d * X + e * Y + f - 0.5 for X in xs for Y in ys]
    lo_off, hi_off = _TAPS[kernel][0], _TAPS[kernel][-1]
    shift = 0.5 if kernel == "nearest" else 0.0

    def span(vals, size):
        lo = min(max(math.floor(min(vals) + shift) + lo_off, 0), size - 1)
        hi = min(max(math.floor(max(vals) + shift) + hi_off, 0), size - 1)
        return lo, max(hi, lo)

    y0, y1 = span(vs, H)
    x0, x1 = span(us, W)
    return (y0, x0, y1 - y0 + 1, x1 - x0 + 1)


def warp_affine(x: torch.Tensor, matrix: Sequence[float], frame_hw: Tuple[int, int],
                in_box: Optional[Box] = None, out_box: Optional[Box] = None,
                kernel: str = "bicubic", fill: int = 128,
                vectorized: Optional[bool] = None) -> torch.Tensor:
    """Warp a region of uint8 frames as PIL's ``transform(size, AFFINE, matrix)`` would.

    x: uint8 [T, h, w, 3], the region ``in_box`` of frames of size ``frame_hw`` (default:
    the full frame). Returns uint8 [T, out_h, out_w, 3], the region ``out_box`` (default:
    full frame) of the warped frames. ``vectorized`` picks the gather implementation
    (default on accelerators) or the CPU one (row groups of views); they agree within
    float rounding.
    """
    _check(kernel)
    H, W = frame_hw
    in_box = in_box or (0, 0, H, W)
    out_box = out_box or (0, 0, H, W)
    if tuple(x.shape[1:3]) != tuple(in_box[2:]):
        raise ValueError(f"warp_affine: x is {tuple(x.shape)} but in_box is {in_box}")
    if vectorized is None:
        vectorized = x.device.type != "cpu"
    a, b, c, d, e, f = (float(v) for v in matrix)
    if a == 1.0 and d == 0.0 and e == 1.0 and f == 0.0:  # ShearX / TranslateX
        return _warp_1d(x, 2, b, c, frame_hw, in_box, out_box, kernel, fill, vectorized)
    if a == 1.0 and b == 0.0 and c == 0.0 and e == 1.0:  # ShearY / TranslateY
        return _warp_1d(x, 1, d, f, frame_hw, in_box, out_box, kernel, fill, vectorized)
    return _warp_2d(x, (a, b, c, d, e, f), frame_hw, in_box, out_box, kernel, fill)


def _to_uint8(acc: torch.Tensor) -> torch.Tensor:
    """float values (truncation bias already added) -> uint8 as PIL: clip, truncate."""
    return acc.clamp_(0.0, 255.0).to(torch.uint8)


def _warp_1d(x, axis, slope, offset, frame_hw, in_box, out_box, kernel, fill, vectorized):
    """Resample along one axis: the output at position ``a`` along ``axis`` (2: width,
    ShearX/TranslateX; 1: height, ShearY/TranslateY) of line ``b`` (the other axis)
    samples ``u = a + slope * (b + .5) + offset``. Lines keep their input line; only the
    per-line shift (integer part + fraction) varies.

    x: uint8 [T, h, w, 3] (the region in_box). Returns uint8 [T, out_h, out_w, 3].
    A per-line shift along the height (ShearY) runs on a transposed uint8 copy, so that
    the shifted axis is the contiguous one of the float buffers.
    """
    T = x.shape[0]
    out = torch.empty((T, out_box[2], out_box[3], 3), dtype=torch.uint8, device=x.device)
    if axis == 2 or (slope == 0.0 and not vectorized):
        _shift_lines(x, out, axis, slope, offset, frame_hw, in_box, out_box, kernel, fill,
                     vectorized)
        return out
    swap = lambda box: (box[1], box[0], box[3], box[2])  # noqa: E731
    xt = scratch("u8_a", (T, x.shape[2], x.shape[1], 3), torch.uint8, x.device)
    xt.copy_(x.transpose(1, 2))
    ot = scratch("u8_b", (T, out_box[3], out_box[2], 3), torch.uint8, x.device)
    _shift_lines(xt, ot, 2, slope, offset, frame_hw[::-1], swap(in_box), swap(out_box),
                 kernel, fill, vectorized)
    out.copy_(ot.transpose(1, 2))
    return out


def _shift_lines(x, out, axis, slope, offset, frame_hw, in_box, out_box, kernel, fill,
                 vectorized):
    """The 1-D resampling of :func:`_warp_1d` into ``out`` [T, oh, ow, 3] (any strides).

    Axis 1 is only used with slope 0 (one shift for every column: TranslateY).
    """
    H, W = frame_hw
    top, left, oh, ow = out_box
    L = W if axis == 2 else H
    a0, na, b0, nb = (left, ow, top, oh) if axis == 2 else (top, oh, left, ow)
    ia0, ina = (in_box[1], in_box[3]) if axis == 2 else (in_box[0], in_box[2])
    dev = x.device
    bs = torch.arange(b0, b0 + nb, dtype=torch.float64, device=dev) + 0.5
    as_ = torch.arange(a0, a0 + na, dtype=torch.float64, device=dev) + 0.5
    pos = slope * bs + offset  # [nb]; sample = a + pos (pixel-index units)
    valid = (as_[None, :] + slope * bs[:, None]) + offset  # PIL's point, PIL's order
    valid = (valid >= 0) & (valid < L)  # [nb, na]
    base, frac = _base(pos, kernel)  # a is an integer: the fraction is per line
    w = _weights(frac, kernel).to(torch.float32)  # [nb, K]
    taps = _TAPS[kernel]
    if axis == 2:  # the output's lines of x, all of x's positions along the axis
        lines = x[:, top - in_box[0]: top - in_box[0] + oh]
    else:
        lines = x[:, :, left - in_box[1]: left - in_box[1] + ow]
    if vectorized:
        span = (ia0, ina)
        out.copy_(_shift_rows_gather(lines, left, ow, base, w, taps, span, W, valid, fill))
        return
    # One float copy of the needed span (edge-replicated), then each run of lines with
    # the same integer shift is a weighted sum of K shifted views: no gathers.
    c_min = a0 + int(base.min()) + taps[0]
    c_max = a0 + na - 1 + int(base.max()) + taps[-1]
    if c_max < 0 or c_min > L - 1:  # every tap is off the frame, so is every point
        out.fill_(fill)
        return
    src = _padded_span(lines, axis, c_min, c_max, ia0, ina, L)
    acc = scratch("f32_b", tuple(out.shape), torch.float32, dev)
    w_shape = (1, -1, 1, 1) if axis == 2 else (1, 1, -1, 1)
    for s, e, shift in _runs(base.tolist()):
        dst = acc[:, s:e] if axis == 2 else acc[:, :, s:e]
        for k, tap in enumerate(taps):
            c0 = a0 + shift + tap - c_min
            view = _along(src, axis, slice(c0, c0 + na), slice(s, e))
            if slope == 0.0:  # one weight per tap for the whole frame
                wk = float(w[0, k])
                torch.mul(view, wk, out=dst) if k == 0 else dst.add_(view, alpha=wk)
            else:
                wk = w[s:e, k].view(w_shape)
                torch.mul(view, wk, out=dst) if k == 0 else dst.addcmul_(view, wk)
    acc.add_(_TRUNC_BIAS)
    _fill_outside(acc if axis == 2 else acc.transpose(1, 2), valid, float(fill))
    out.copy_(acc.clamp_(0.0, 255.0))  # float -> uint8 truncates, as PIL


def _along(t: torch.Tensor, axis: int, along: slice, lines: slice = slice(None)) -> torch.Tensor:
    """Index [T, H, W, C] with ``along`` on dim ``axis`` and ``lines`` on the other."""
    return t[:, lines, along] if axis == 2 else t[:, along, lines]


def _padded_span(lines, axis, c_min, c_max, ia0, ina, L):
    """float32 copy of positions [c_min, c_max] along ``axis`` of ``lines`` (which hold
    positions [ia0, ia0 + ina)), positions off the frame [0, L) clamped to its edge."""
    lo, hi = max(c_min, 0), min(c_max, L - 1)
    if lo < ia0 or hi >= ia0 + ina:
        raise ValueError(f"warp: positions [{ia0}, {ia0 + ina}) miss [{lo}, {hi}] along axis {axis}")
    shape = list(lines.shape)
    shape[axis] = c_max - c_min + 1
    src = scratch("f32_a", shape, torch.float32, lines.device)
    _along(src, axis, slice(lo - c_min, hi - c_min + 1)).copy_(
        _along(lines, axis, slice(lo - ia0, hi - ia0 + 1)))
    for pad, edge in ((slice(0, lo - c_min), lo - c_min),
                      (slice(hi - c_min + 1, None), hi - c_min)):
        dst = _along(src, axis, pad)  # frame edge: clamp (PIL's XCLIP / YCLIP)
        if dst.numel():
            dst.copy_(_along(src, axis, slice(edge, edge + 1)).expand_as(dst))
    return src


def _runs(values: list):
    """(start, stop, value) of the runs of equal consecutive values."""
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            yield start, i, values[start]
            start = i


def _fill_outside(acc: torch.Tensor, valid: torch.Tensor, fill: float) -> None:
    """Set the fill colour where ``valid`` [rows, cols] is False (acc: [T, rows, cols, 3]);
    the valid part of a row is one interval."""
    n = valid.shape[1]
    none = torch.full(valid.shape[:1], n, dtype=torch.long, device=valid.device)
    any_valid = valid.any(1)
    first = torch.where(any_valid, valid.to(torch.uint8).argmax(1), none)
    last = torch.where(any_valid, n - valid.flip(1).to(torch.uint8).argmax(1), none)
    for s, e, (j0, j1) in _runs(list(zip(first.tolist(), last.tolist()))):
        if j0 > 0:
            acc[:, s:e, :j0] = fill
        if j1 < n:
            acc[:, s:e, max(j1, j0):] = fill


def _shift_rows_gather(rows, left, ow, base, w, taps, in_span, W, valid, fill):
    """The same resampling as one gather of K taps per output value (accelerators)."""
    dev = rows.device
    x0, nx = in_span
    idx = torch.arange(left, left + ow, device=dev)[None, :, None] + base[:, None, None]
    idx = (idx + torch.tensor(taps, device=dev)).clamp(0, W - 1).clamp(x0, x0 + nx - 1) - x0
    line = torch.arange(base.shape[0], device=dev)[:, None, None]
    g = rows[:, line, idx].to(torch.float32)  # [T, oh, ow, K, 3]
    acc = (g * w[None, :, None, :, None]).sum(-2).add_(_TRUNC_BIAS)
    fill_t = torch.tensor(fill, dtype=torch.uint8, device=dev)
    return torch.where(valid[None, :, :, None], _to_uint8(acc), fill_t)


def _warp_2d(x, matrix, frame_hw, in_box, out_box, kernel, fill):
    """General affine (Rotate) as one sparse-matrix product on pixel-major values.

    Every output pixel is a CSR row of K*K tap weights plus a truncation-bias entry;
    pixels whose point falls outside the frame read K*K constant "fill" rows instead.
    The source is padded by 2 replicated pixels, so edge clamping needs no index
    clamping and CSR rows stay sorted and free of duplicates. CSR x dense runs on CPU and
    CUDA. Layout: [pixels, T * 3] so that one sparse row serves all frames and channels.
    """
    H, W = frame_hw
    a, b, c, d, e, f = matrix
    top, left, oh, ow = out_box
    dev = x.device
    T, h, w = x.shape[0], x.shape[1], x.shape[2]
    P = 2
    ih, iw = h + 2 * P, w + 2 * P
    K = len(_TAPS[kernel])
    M = ih * iw
    # Source: pixel-major float [padded pixels + K*K fill rows + 1 bias row, T * 3].
    xp = scratch("u8_a", (h, w, T, 3), torch.uint8, dev)
    xp.copy_(x.permute(1, 2, 0, 3))  # uint8 transpose: 4x cheaper than a float one
    src = scratch("f32_a", (M + K * K + 1, T * 3), torch.float32, dev)
    grid = src[:M].view(ih, iw, T * 3)
    grid[P:P + h, P:P + w].copy_(xp.view(h, w, T * 3))
    grid[:P, P:P + w].copy_(grid[P:P + 1, P:P + w].expand(P, w, T * 3))
    grid[P + h:, P:P + w].copy_(grid[P + h - 1:P + h, P:P + w].expand(P, w, T * 3))
    grid[:, :P].copy_(grid[:, P:P + 1].expand(ih, P, T * 3))
    grid[:, P + w:].copy_(grid[:, P + w - 1:P + w].expand(ih, P, T * 3))
    src[M:M + K * K] = float(fill)
    src[M + K * K] = 1.0
    # Sparse rows: taps of PIL's point for each output pixel.
    Y = torch.arange(top, top + oh, dtype=torch.float64, device=dev)[:, None] + 0.5
    X = torch.arange(left, left + ow, dtype=torch.float64, device=dev)[None, :] + 0.5
    xin, yin = a * X + b * Y + c, d * X + e * Y + f  # [oh, ow]
    valid = ((xin >= 0) & (xin < W) & (yin >= 0) & (yin < H)).reshape(-1, 1)
    bx, fx = _base(xin - 0.5, kernel)
    by, fy = _base(yin - 0.5, kernel)
    taps = torch.tensor(_TAPS[kernel], device=dev)
    rows = (by[..., None] + taps - in_box[0] + P).clamp(0, ih - 1)  # [oh, ow, K]
    cols = (bx[..., None] + taps - in_box[1] + P).clamp(0, iw - 1)
    col_idx = (rows[..., :, None] * iw + cols[..., None, :]).reshape(-1, K * K)
    wts = _weights(fy, kernel)[..., :, None] * _weights(fx, kernel)[..., None, :]
    wts = wts.reshape(-1, K * K)
    fill_w = torch.zeros(K * K, dtype=wts.dtype, device=dev)
    fill_w[0] = 1.0
    col_idx = torch.where(valid, col_idx, torch.arange(M, M + K * K, device=dev))
    wts = torch.where(valid, wts, fill_w)
    n_out = oh * ow
    col_idx = torch.cat([col_idx, torch.full((n_out, 1), M + K * K, device=dev)], 1)
    wts = torch.cat([wts, valid.to(wts.dtype) * _TRUNC_BIAS], 1).to(torch.float32)
    crow = torch.arange(0, n_out * (K * K + 1) + 1, K * K + 1, device=dev)
    with warnings.catch_warnings():  # "beta" / "invariant checks disabled" notices
        warnings.simplefilter("ignore", UserWarning)
        A = torch.sparse_csr_tensor(crow, col_idx.reshape(-1), wts.reshape(-1),
                                    (n_out, M + K * K + 1), check_invariants=False)
    res = (A @ src).clamp_(0.0, 255.0)  # [oh * ow, T * 3]
    res_u8 = scratch("u8_b", (oh, ow, T, 3), torch.uint8, dev)
    res_u8.view(n_out, T * 3).copy_(res)  # float -> uint8 truncates, as PIL
    out = torch.empty((T, oh, ow, 3), dtype=torch.uint8, device=dev)
    out.copy_(res_u8.permute(2, 0, 1, 3))
    return out
