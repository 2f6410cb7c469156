"""Clip transforms: the train recipe (RandAugment, crop, flip, erasing), eval views, Mixup.

Clips enter as uint8 ``[T, H, W, 3]`` (what the decoders return) on any device and leave
as float32 ``[3, T, S, S]`` normalised. Every random draw is made first, from an explicit
CPU ``torch.Generator``, into a small params object; applying the params is then
deterministic, so the same seed gives the same clip on CPU and GPU and resumes exactly.

- :class:`TrainClipRecipe` (``recipe.py``): the paper's train recipe, and validation.
- :class:`EvalViewTransform` / :func:`eval_view`: 1-crop and 3-crop test views.
- :class:`MixUp` / :func:`mixup_from_cfg` (``mixup.py``): Mixup/CutMix with per-head smoothing.
- ``rand_augment.py``, ``color.py``, ``warp.py``: RandAugment ops, equal to PIL's per frame.
"""
from .erasing import ErasingParams, apply_erasing, draw_erasing_params
from .geometry import eval_view, uniform_crop_offsets
from .mixup import (MixParams, MixUp, draw_mix_params, mix_inputs, mix_labels, mixup_from_cfg,
                    one_hot)
from .rand_augment import (RandAugmentParams, RandAugmentPolicy, apply_rand_augment,
                           draw_rand_augment_params, parse_rand_augment)
from .recipe import (EvalViewTransform, TrainClipParams, TrainClipRecipe, build_clip_transform,
                     default_random_flip)

__all__ = ["TrainClipRecipe", "TrainClipParams", "EvalViewTransform", "build_clip_transform",
           "default_random_flip", "eval_view", "uniform_crop_offsets", "MixUp", "MixParams",
           "draw_mix_params", "mix_inputs", "mix_labels", "mixup_from_cfg", "one_hot",
           "RandAugmentPolicy", "RandAugmentParams", "parse_rand_augment",
           "draw_rand_augment_params", "apply_rand_augment", "ErasingParams",
           "draw_erasing_params", "apply_erasing"]
