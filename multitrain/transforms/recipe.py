"""The clip recipes: training (the original's order), validation and test views.

Train clip recipe, the order the paper trained with:

1. RandAugment on the decoded frames at decoded size (one draw per op per clip);
2. normalise with ``DATA.MEAN`` / ``DATA.STD``;
3. random resized crop to ``TRAIN_CROP_SIZE`` (with relative scale/aspect) or short-side
   jitter + random crop; then a horizontal flip with p = 0.5 (never for SSv2);
4. random erasing (``AUG.RE_*``).

Every random number is drawn first, by :meth:`TrainClipRecipe.draw`, from a CPU
``torch.Generator`` into a small :class:`TrainClipParams`; :meth:`TrainClipRecipe.apply`
is then deterministic on any device. Same generator state -> same clip, on CPU or GPU.

Two reorderings that do not change the result are used for speed: RandAugment computes
only the part of the frames the crop reads (see ``rand_augment.py``), and normalisation
comes after the bilinear resize (the same affine map commutes with it). ``crop_first``
is a real change, off by default: crop and resize to the crop size first, then
RandAugment on the small frames; faster, NOT the paper's recipe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch

from . import geometry as G
from .erasing import ErasingParams, apply_erasing, draw_erasing_params
from .rand_augment import (RandAugmentParams, apply_rand_augment, draw_rand_augment_params,
                           parse_rand_augment)

__all__ = ["TrainClipRecipe", "TrainClipParams", "EvalViewTransform", "build_clip_transform",
           "default_random_flip", "NO_FLIP_DATASETS"]

NO_FLIP_DATASETS = ("ssv2",)  # labels say "left"/"right": never flipped, test short side = crop


def default_random_flip(dataset_name: str) -> bool:
    """Flip allowed unless the dataset is SSv2-like."""
    return str(dataset_name).lower() not in NO_FLIP_DATASETS


@dataclass(frozen=True)
class TrainClipParams:
    """All draws of one training clip (python numbers; a few hundred bytes)."""

    frame_hw: Tuple[int, int]
    rand_augment: Optional[RandAugmentParams]
    crop: Union[G.Box, G.JitterCrop]  # Box: resized crop; JitterCrop: scale + crop
    flip: bool
    erasing: Optional[ErasingParams]


class TrainClipRecipe:
    """The train (or validation) clip recipe.

    Args:
        crop_size: output side S (``DATA.TRAIN_CROP_SIZE``).
        jitter_scales: (min, max) short side of the scale jitter (``TRAIN_JITTER_SCALES``),
            used when no relative scale is given.
        relative_scale / relative_aspect: random resized crop ranges
            (``TRAIN_JITTER_SCALES_RELATIVE`` / ``TRAIN_JITTER_ASPECT_RELATIVE``); None or
            empty = short-side jitter + random crop.
        rand_augment: policy string (``AUG.AA_TYPE``) or None for no RandAugment.
        interpolation: kernel of RandAugment's geometric ops (``AUG.INTERPOLATION``).
        mean / std: normalisation (``DATA.MEAN`` / ``DATA.STD``, values in [0, 1]).
        re_prob / re_mode / re_count: random erasing (``AUG.RE_*``); 0 = off.
        random_flip: horizontal flip with p = 0.5 (False for SSv2).
        crop_first: crop + resize before RandAugment (faster; not the paper's recipe).
        inverse_uniform: inverse-uniform short-side jitter (``DATA.INV_UNIFORM_SAMPLE``).
        fill: grey level of the areas the geometric ops uncover.
    """

    def __init__(self, crop_size: int = 224, jitter_scales: Sequence[int] = (256, 320),
                 relative_scale: Optional[Sequence[float]] = None,
                 relative_aspect: Optional[Sequence[float]] = None,
                 rand_augment: Optional[str] = None, interpolation: str = "bicubic",
                 mean: Sequence[float] = (0.45, 0.45, 0.45),
                 std: Sequence[float] = (0.225, 0.225, 0.225), re_prob: float = 0.0,
                 re_mode: str = "pixel", re_count: int = 1, random_flip: bool = True,
                 crop_first: bool = False, inverse_uniform: bool = False, fill: int = 128):
        self.crop_size = int(crop_size)
        self.jitter_scales = tuple(int(s) for s in jitter_scales)
        if len(self.jitter_scales) != 2:
            raise ValueError(f"DATA.TRAIN_JITTER_SCALES needs 2 values, got {jitter_scales}")
        rel = bool(relative_scale) or bool(relative_aspect)
        # One range alone gets the Inception default of the other.
        self.relative_scale = (tuple(relative_scale) if relative_scale
                               else ((0.08, 1.0) if rel else None))
        self.relative_aspect = (tuple(relative_aspect) if relative_aspect
                                else ((3 / 4, 4 / 3) if rel else None))
        self.policy = parse_rand_augment(rand_augment) if rand_augment else None
        self.rand_augment, self.interpolation = rand_augment, interpolation
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"DATA.MEAN / DATA.STD need 3 values, got {mean} / {std}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.re_prob, self.re_mode, self.re_count = float(re_prob), re_mode, int(re_count)
        self.random_flip, self.crop_first = bool(random_flip), bool(crop_first)
        self.inverse_uniform, self.fill = bool(inverse_uniform), int(fill)
        if self.re_prob > 0 and self.re_mode not in ("pixel", "rand", "const"):
            raise ValueError(f"AUG.RE_MODE must be pixel, rand or const, got {re_mode!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_cfg(cls, cfg, dataset_name: str = "", random_flip: Optional[bool] = None,
                 split: str = "train") -> "TrainClipRecipe":
        """Build from the config. ``split="val"``: no RandAugment, no relative crop, no
        erasing (short-side jitter + random crop + flip). ``AUG.ENABLE False`` in train:
        no RandAugment, no erasing (the crop follows the relative ranges as in PySlowFast;
        they are empty by default, giving short-side jitter + random crop)."""
        d, a = cfg.DATA, cfg.AUG
        flip = (bool(d.RANDOM_FLIP) and default_random_flip(dataset_name)
                if random_flip is None else bool(random_flip))
        train = split == "train"
        aug = train and bool(a.ENABLE)
        return cls(
            crop_size=d.TRAIN_CROP_SIZE, jitter_scales=d.TRAIN_JITTER_SCALES,
            relative_scale=list(d.TRAIN_JITTER_SCALES_RELATIVE) if train else None,
            relative_aspect=list(d.TRAIN_JITTER_ASPECT_RELATIVE) if train else None,
            rand_augment=a.AA_TYPE if aug and a.AA_TYPE else None,
            interpolation=a.INTERPOLATION, mean=d.MEAN, std=d.STD,
            re_prob=a.RE_PROB if aug else 0.0, re_mode=a.RE_MODE, re_count=a.RE_COUNT,
            random_flip=flip, crop_first=bool(a.get("CROP_FIRST", False)) and aug,
            inverse_uniform=bool(d.get("INV_UNIFORM_SAMPLE", False)))

    def __repr__(self) -> str:
        crop = (f"resized_crop(scale={self.relative_scale}, aspect={self.relative_aspect})"
                if self.relative_scale else f"jitter{self.jitter_scales}+crop")
        return (f"TrainClipRecipe(S={self.crop_size}, {crop}, ra={self.rand_augment!r}, "
                f"flip={self.random_flip}, re={self.re_prob}/{self.re_mode}/{self.re_count}, "
                f"crop_first={self.crop_first})")

    # ------------------------------------------------------------------------- draws
    def draw(self, generator: torch.Generator, clip_hw: Sequence[int]) -> TrainClipParams:
        """Draw everything random about one clip of decoded size ``clip_hw`` (H, W).

        Order of the draws (fixed, part of the reproducibility contract): RandAugment,
        crop, flip, erasing.
        """
        hw = (int(clip_hw[0]), int(clip_hw[1]))
        ra = (draw_rand_augment_params(generator, self.policy, self.interpolation)
              if self.policy else None)
        if self.relative_scale:
            crop = G.draw_resized_crop_box(generator, hw, self.relative_scale,
                                           self.relative_aspect)
        else:
            crop = G.draw_jitter_crop(generator, hw, *self.jitter_scales, self.crop_size,
                                      inverse_uniform=self.inverse_uniform)
        flip = self.random_flip and G.uniform(generator) < 0.5
        S = self.crop_size
        erasing = draw_erasing_params(generator, (S, S), self.re_prob, self.re_mode,
                                      self.re_count) if self.re_prob > 0 else None
        return TrainClipParams(hw, ra, crop, flip, erasing)

    # ---------------------------------------------------------------------- applying
    def apply(self, clip: torch.Tensor, params: TrainClipParams,
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Deterministic part. clip: uint8 [T, H, W, 3] on any device -> float32
        [3, T, S, S] normalised, on the clip's device (written into ``out`` if given:
        a float32 [3, T, S, S] tensor, e.g. a row of a batch, which saves a copy)."""
        if clip.dtype != torch.uint8 or clip.dim() != 4 or clip.shape[-1] != 3:
            raise ValueError(f"clip must be uint8 [T, H, W, 3], got {clip.dtype} "
                             f"{tuple(clip.shape)}")
        if tuple(clip.shape[1:3]) != tuple(params.frame_hw):
            raise ValueError(f"params were drawn for frames {params.frame_hw}, clip is "
                             f"{tuple(clip.shape[1:3])}")
        if self.crop_first:
            x, flipped = self._crop_first(clip, params), False
        else:
            x, flipped = self._paper_order(clip, params)
        if params.flip and not flipped:
            x = x.flip(-1)
        x = G.normalize_(x, self.mean, self.std, out=out)
        return apply_erasing(x, params.erasing)

    def _paper_order(self, clip: torch.Tensor, p: TrainClipParams) -> Tuple[torch.Tensor, bool]:
        """(float [3, T, S, S] in [0, 255], whether the flip is already applied)."""
        crop = p.crop
        if isinstance(crop, G.JitterCrop):
            frames = clip
            if p.rand_augment:
                frames = apply_rand_augment(clip, p.rand_augment, fill=self.fill)
            out = G.scale_and_crop(frames, crop.size, crop.top, crop.left, crop.crop)
            return out.contiguous(), False
        t, l, h, w = crop
        if p.rand_augment:  # only the crop box of the augmented frames is computed
            region = apply_rand_augment(clip, p.rand_augment, out_box=crop, fill=self.fill)
        else:
            region = clip[:, t:t + h, l:l + w]
        if p.flip:  # flipping the uint8 crop is 4x less memory than the float output;
            region = region.flip(2)  # bilinear sampling is mirror-symmetric (same result)
        return G.resize_region(region, self.crop_size), p.flip

    def _crop_first(self, clip: torch.Tensor, p: TrainClipParams) -> torch.Tensor:
        crop = p.crop
        if isinstance(crop, G.JitterCrop):
            small = G.scale_and_crop(clip, crop.size, crop.top, crop.left, crop.crop)
        else:
            t, l, h, w = crop
            small = G.resize_region(clip[:, t:t + h, l:l + w], self.crop_size)
        if p.rand_augment is None:
            return small.contiguous()
        frames = small.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 3, 0)
        frames = apply_rand_augment(frames.contiguous(), p.rand_augment, fill=self.fill)
        return frames.permute(3, 0, 1, 2).to(torch.float32).contiguous()

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw and apply: uint8 [T, H, W, 3] -> float32 [3, T, S, S]."""
        return self.apply(clip, self.draw(generator, clip.shape[1:3]))

    def sample(self, clip: torch.Tensor, generator: torch.Generator, k: int) -> torch.Tensor:
        """``k`` clips of one decoded video (``AUG.NUM_SAMPLE``): the draws of each in
        turn from ``generator``, then float32 [k, 3, T, S, S]."""
        params = [self.draw(generator, clip.shape[1:3]) for _ in range(k)]
        return self.apply_many([clip] * k, params)

    def apply_many(self, clips: Sequence[torch.Tensor],
                   params: Sequence[TrainClipParams]) -> torch.Tensor:
        """Clips of possibly different sizes (and one length) -> float32 [N, 3, T, S, S].

        Each clip runs the same deterministic code as :meth:`apply` on its own device and
        is written straight into its row of the result (the per-clip ops are already
        whole-clip tensor ops; clips of one size could later be stacked op by op)."""
        if len(clips) != len(params):
            raise ValueError(f"apply_many: {len(clips)} clips but {len(params)} params")
        if not clips:
            raise ValueError("apply_many: no clips")
        lengths = {int(c.shape[0]) for c in clips}
        if len(lengths) != 1:
            raise ValueError(f"apply_many: clips of different lengths {sorted(lengths)}")
        S = self.crop_size
        out = torch.empty((len(clips), 3, lengths.pop(), S, S), dtype=torch.float32,
                          device=clips[0].device)
        for row, clip, p in zip(out, clips, params):
            self.apply(clip, p, out=row)
        return out


class EvalViewTransform:
    """Test views: ``transform(clip, spatial_idx) -> [3, T, S, S]``.

    One crop: short side -> ``TRAIN_JITTER_SCALES[0]``, centre crop ``TEST_CROP_SIZE``.
    Three crops: short side -> ``TEST_CROP_SIZE``, crops at start / centre / end of the
    long side. SSv2: short side -> ``TEST_CROP_SIZE`` whatever the crop count.
    """

    def __init__(self, crop_size: int, short_side: int, num_crops: int = 1,
                 mean: Sequence[float] = (0.45,) * 3, std: Sequence[float] = (0.225,) * 3):
        if num_crops not in (1, 3):
            raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be 1 or 3, got {num_crops}")
        self.crop_size, self.short_side, self.num_crops = int(crop_size), int(short_side), num_crops
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    def from_cfg(cls, cfg, dataset_name: str = "") -> "EvalViewTransform":
        d, crops = cfg.DATA, int(cfg.TEST.NUM_SPATIAL_CROPS)
        ssv2 = not default_random_flip(dataset_name)
        short = d.TEST_CROP_SIZE if (crops > 1 or ssv2) else d.TRAIN_JITTER_SCALES[0]
        return cls(d.TEST_CROP_SIZE, short, crops, d.MEAN, d.STD)

    def __call__(self, clip: torch.Tensor, spatial_idx: int) -> torch.Tensor:
        return G.eval_view(clip, spatial_idx, self.num_crops, crop_size=self.crop_size,
                           short_side=self.short_side, mean=self.mean, std=self.std)

    def __repr__(self) -> str:
        return (f"EvalViewTransform(crop={self.crop_size}, short_side={self.short_side}, "
                f"crops={self.num_crops})")


def build_clip_transform(cfg, split: str, dataset_name: str = "",
                         random_flip: Optional[bool] = None):
    """The clip transform of a split: train/val ``f(clip, generator)``, test
    ``f(clip, spatial_idx)``; all take uint8 [T, H, W, 3] and return float [3, T, S, S]."""
    if split in ("train", "val"):
        return TrainClipRecipe.from_cfg(cfg, dataset_name, random_flip, split=split)
    if split == "test":
        return EvalViewTransform.from_cfg(cfg, dataset_name)
    raise ValueError(f"split must be train, val or test, got {split!r}")
