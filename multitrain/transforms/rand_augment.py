"""RandAugment for video clips: one draw per op per clip, applied to every frame.

Policy strings follow timm's ``rand-m{M}-n{N}-mstd{S}-inc{0|1}[-mmax{X}][-p{P}]``
(Cubuk et al., "RandAugment", 2020; timm's video variant as PySlowFast used it). For
the original code's ``rand-m7-n4-mstd0.5-inc1``: N = 4 ops drawn uniformly with
replacement from the 15 "increasing" ops below, each applied with probability 0.5, at
magnitude ``clip(M + S * N(0, 1), 0, 10)`` drawn per op, with a random sign for the
signed ops; geometric ops fill with grey 128 and use ``AUG.INTERPOLATION``. A clip gets
one draw per op: every frame sees the same op, magnitude and sign.

Each op reproduces the PIL function the original applied per frame (see ``color.py`` and
``warp.py`` for the arithmetic); the tests compare every op with PIL on decoded frames.

Speed: the recipe applies RandAugment to the full decoded frames, then crops. Most ops
are local (a value depends on at most a small neighbourhood), so only the part of each
frame the crop will read is computed: the needed region is propagated backwards through
the ops (a warp needs the bounding box of its inverse image, Sharpness one more pixel,
AutoContrast / Equalize / Contrast the whole frame because their statistics do). The
output equals cropping the full-frame result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from . import color as C
from .warp import KERNELS, source_box, warp_affine

__all__ = ["RAND_INCREASING_OPS", "RAND_OPS", "RandAugmentPolicy", "RandAugmentParams",
           "parse_rand_augment", "draw_rand_augment_params", "apply_rand_augment",
           "apply_op", "op_arguments", "MAX_LEVEL"]

MAX_LEVEL = 10.0
RAND_INCREASING_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
    "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
    "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel")
RAND_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel")
_SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
           "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"}
_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
_WHOLE_FRAME = {"AutoContrast", "Equalize", "Contrast", "ContrastIncreasing"}  # frame statistics
Box = Tuple[int, int, int, int]


@dataclass(frozen=True)
class RandAugmentPolicy:
    """A parsed policy string (timm semantics)."""

    magnitude: float = 9.0
    num_ops: int = 2
    magnitude_std: float = 0.5
    magnitude_max: float = MAX_LEVEL
    increasing: bool = False
    prob: float = 0.5

    @property
    def ops(self) -> Tuple[str, ...]:
        return RAND_INCREASING_OPS if self.increasing else RAND_OPS


def parse_rand_augment(spec: str) -> RandAugmentPolicy:
    """Parse e.g. ``"rand-m7-n4-mstd0.5-inc1"`` (AUG.AA_TYPE); errors name the bad part."""
    parts = str(spec).split("-")
    if not parts or parts[0] != "rand":
        raise ValueError(f"AUG.AA_TYPE {spec!r}: only RandAugment policies ('rand-...') are "
                         f"supported")
    fields = {}
    keys = (("mstd", "magnitude_std", float), ("mmax", "magnitude_max", float),
            ("inc", "increasing", lambda v: bool(int(v))), ("m", "magnitude", float),
            ("n", "num_ops", int), ("p", "prob", float))
    for part in parts[1:]:
        for prefix, name, conv in keys:
            if part.startswith(prefix):
                try:
                    fields[name] = conv(part[len(prefix):])
                except ValueError:
                    raise ValueError(f"AUG.AA_TYPE {spec!r}: bad value in {part!r}") from None
                break
        else:
            raise ValueError(f"AUG.AA_TYPE {spec!r}: unknown section {part!r} (supported: "
                             f"m, n, mstd, mmax, inc, p)")
    return RandAugmentPolicy(**fields)


@dataclass(frozen=True)
class RandAugmentParams:
    """The draws of one clip: ``ops[i]`` applied iff ``applied[i]``, at ``magnitudes[i]``
    with ``signs[i]`` (+1/-1, used by the signed ops) and ``kernels[i]`` (geometric ops)."""

    ops: Tuple[str, ...]
    applied: Tuple[bool, ...]
    magnitudes: Tuple[float, ...]
    signs: Tuple[int, ...]
    kernels: Tuple[str, ...]

    def active(self) -> List[Tuple[str, float, int, str]]:
        """(op, magnitude, sign, kernel) of the ops that are applied, in order."""
        return [(o, m, s, k) for o, a, m, s, k in
                zip(self.ops, self.applied, self.magnitudes, self.signs, self.kernels) if a]


def draw_rand_augment_params(generator: torch.Generator, policy: RandAugmentPolicy,
                             interpolation: str = "bicubic") -> RandAugmentParams:
    """Draw ops, apply flags, magnitudes, signs (and kernels for "random") of one clip."""
    if interpolation not in KERNELS + ("random",):
        raise ValueError(f"AUG.INTERPOLATION {interpolation!r} not in {KERNELS + ('random',)}")
    n, names = policy.num_ops, policy.ops
    idx = torch.randint(len(names), (n,), generator=generator).tolist()
    applied = (torch.rand(n, dtype=torch.float64, generator=generator) < policy.prob).tolist()
    if math.isinf(policy.magnitude_std):  # timm: "mstd inf" = uniform in [0, M]
        mags = torch.rand(n, dtype=torch.float64, generator=generator) * policy.magnitude
    else:
        noise = torch.randn(n, dtype=torch.float64, generator=generator)
        mags = policy.magnitude + policy.magnitude_std * noise
    mags = mags.clamp(0.0, policy.magnitude_max).tolist()
    signs = [-1 if u < 0.5 else 1
             for u in torch.rand(n, dtype=torch.float64, generator=generator).tolist()]
    if interpolation == "random":  # timm's default: bilinear or bicubic per op call
        pick = torch.rand(n, dtype=torch.float64, generator=generator).tolist()
        kernels = ["bilinear" if u < 0.5 else "bicubic" for u in pick]
    else:
        kernels = [interpolation] * n
    return RandAugmentParams(tuple(names[i] for i in idx), tuple(applied), tuple(mags),
                             tuple(signs), tuple(kernels))


def op_arguments(name: str, magnitude: float, sign: int, frame_hw: Tuple[int, int]):
    """timm's level -> argument map for one op at the frame size ``frame_hw``.

    Returns the PIL-level argument: degrees, bits, threshold, added value, enhance factor,
    shear factor, translation in pixels; None for the argument-free ops.
    """
    lvl = magnitude / MAX_LEVEL
    s = -1.0 if sign < 0 else 1.0
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    table = {
        "Rotate": lambda: s * lvl * 30.0,
        "PosterizeIncreasing": lambda: 4 - int(lvl * 4),
        "Posterize": lambda: int(lvl * 4),
        "SolarizeIncreasing": lambda: 256 - int(lvl * 256),
        "Solarize": lambda: int(lvl * 256),
        "SolarizeAdd": lambda: int(lvl * 110),
        "ShearX": lambda: s * lvl * 0.3,
        "ShearY": lambda: s * lvl * 0.3,
        "TranslateXRel": lambda: s * lvl * 0.45 * frame_hw[1],
        "TranslateYRel": lambda: s * lvl * 0.45 * frame_hw[0],
    }
    if name in table:
        return table[name]()
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/Sharpness
        return 1.0 + s * lvl * 0.9
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return lvl * 1.8 + 0.1
    raise ValueError(f"unknown RandAugment op {name!r}")


def rotation_matrix(degrees: float, frame_hw: Tuple[int, int]) -> Tuple[float, ...]:
    """PIL ``Image.rotate`` (about the centre, counter-clockwise) as an affine matrix."""
    H, W = frame_hw
    angle = -math.radians(degrees % 360.0)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    cx, cy = W / 2.0, H / 2.0
    return (cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)


def _matrix(name: str, arg: float, frame_hw) -> Tuple[float, ...]:
    if name == "Rotate":
        return rotation_matrix(arg, frame_hw)
    return {"ShearX": (1.0, arg, 0.0, 0.0, 1.0, 0.0), "ShearY": (1.0, 0.0, 0.0, arg, 1.0, 0.0),
            "TranslateXRel": (1.0, 0.0, arg, 0.0, 1.0, 0.0),
            "TranslateYRel": (1.0, 0.0, 0.0, 0.0, 1.0, arg)}[name]


def _needed_box(name: str, arg, kernel: str, out_box: Box, frame_hw) -> Box:
    """The input region op ``name`` reads to produce ``out_box``."""
    H, W = frame_hw
    if name in _GEOMETRIC:
        return source_box(_matrix(name, arg, frame_hw), out_box, frame_hw, kernel)
    if name.startswith("Sharpness"):
        t, l, h, w = out_box
        t0, l0 = max(t - 1, 0), max(l - 1, 0)
        return (t0, l0, min(t + h + 1, H) - t0, min(l + w + 1, W) - l0)
    if name in _WHOLE_FRAME:
        return (0, 0, H, W)
    return out_box


def apply_op(x: torch.Tensor, name: str, arg, kernel: str = "bicubic", fill: int = 128,
             frame_hw: Optional[Tuple[int, int]] = None, in_box: Optional[Box] = None,
             out_box: Optional[Box] = None) -> torch.Tensor:
    """Apply one op with its PIL-level argument (see :func:`op_arguments`).

    x: uint8 [T, h, w, 3], the region ``in_box`` of frames of size ``frame_hw`` (default:
    x is the full frame); returns uint8 [T, oh, ow, 3], the region ``out_box`` (default:
    ``in_box``). ``in_box`` must contain ``_needed_box(out_box)``.
    """
    frame_hw = frame_hw or tuple(x.shape[1:3])
    in_box = in_box or (0, 0) + tuple(frame_hw)
    out_box = out_box or in_box
    rel = (slice(out_box[0] - in_box[0], out_box[0] - in_box[0] + out_box[2]),
           slice(out_box[1] - in_box[1], out_box[1] - in_box[1] + out_box[3]))
    if name in _GEOMETRIC:
        return warp_affine(x, _matrix(name, arg, frame_hw), frame_hw, in_box, out_box,
                           kernel=kernel, fill=fill)
    if name == "AutoContrast":
        return C.autocontrast(x, out=rel)
    if name == "Equalize":
        return C.equalize(x, out=rel)
    if name.startswith("Contrast"):
        return C.contrast(x, arg, out=rel)
    if name.startswith("Sharpness"):
        return C.sharpness(x, arg, rel)
    region = x[(slice(None),) + rel]
    if name == "Invert":
        return C.invert(region)
    if name.startswith("Posterize"):
        return C.posterize(region, arg)
    if name.startswith("Solarize") and name != "SolarizeAdd":
        return C.solarize(region, arg)
    if name == "SolarizeAdd":
        return C.solarize_add(region, arg)
    if name.startswith("Brightness"):
        return C.brightness(region, arg)
    if name.startswith("Color"):
        return C.color(region, arg)
    raise ValueError(f"unknown RandAugment op {name!r}")


def apply_rand_augment(clip: torch.Tensor, params: RandAugmentParams,
                       out_box: Optional[Box] = None, fill: int = 128) -> torch.Tensor:
    """Apply the drawn ops to every frame of ``clip`` and return the region ``out_box``.

    clip: uint8 [T, H, W, 3] (any device). Returns uint8 [T, oh, ow, 3]: the region
    ``out_box`` (top, left, h, w; default the whole frame) of the augmented frames, equal
    to augmenting the whole frames and cropping, but computed on the needed parts only.
    """
    frame_hw = tuple(clip.shape[1:3])
    out_box = tuple(out_box) if out_box is not None else (0, 0) + frame_hw
    ops = [(name, op_arguments(name, m, s, frame_hw), k) for name, m, s, k in params.active()]
    boxes = [out_box]
    for name, arg, kernel in reversed(ops):
        boxes.insert(0, _needed_box(name, arg, kernel, boxes[0], frame_hw))
    t, l, h, w = boxes[0]
    x = clip[:, t:t + h, l:l + w]
    for (name, arg, kernel), in_box, ob in zip(ops, boxes[:-1], boxes[1:]):
        x = apply_op(x, name, arg, kernel, fill, frame_hw, in_box, ob)
    return x
