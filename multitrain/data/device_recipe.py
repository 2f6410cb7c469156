"""The clip recipes applied to raw batches on the training device (``AUG.ON_DEVICE``).

With ``AUG.ON_DEVICE`` the loader workers only decode: a raw batch (see
``multitrain.data.multi_dataset.collate_multi``) holds ``inputs`` = list of B uint8
``[T, H, W, 3]`` clips at decoded size (already moved to the device), one ``seeds`` entry
per video, and per-video ``datasets`` / ``flip`` / ``spatial_idx``. Each video's recipe
generator is seeded from its seed, exactly as the worker seeds it when it applies the
recipe itself (``AUG.ON_DEVICE False``); the draws are made on the CPU and the
deterministic part runs on the clips' device. The same decoded frames and seed therefore
give the same clips in both modes (bit-identical on CPU tensors; on a GPU within float
rounding of the interpolation), and a clip depends on its item only (exact resume).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from .multi_dataset import expand_raw_batch
from .video_dataset import recipe_generator
from ..transforms.recipe import EvalViewTransform, TrainClipParams, TrainClipRecipe

__all__ = ["apply_train_batch", "apply_eval_batch", "draw_clip_samples"]


def draw_clip_samples(recipe: TrainClipRecipe, seed: int, clip_hw, k: int) -> List[TrainClipParams]:
    """The draws of an item's ``k`` clips, in the order a worker draws them."""
    g = recipe_generator(seed)
    return [recipe.draw(g, clip_hw) for _ in range(k)]


def apply_train_batch(batch: dict, cfg) -> dict:
    """Raw train batch -> batch with ``inputs`` float [B * K, 3, T, S, S] (K =
    ``AUG.NUM_SAMPLE`` clips per video, adjacent) and the per-row fields repeated K times."""
    k = int(cfg.AUG.NUM_SAMPLE)
    recipes: Dict[Tuple[str, bool], TrainClipRecipe] = {}
    clips = []
    for clip, seed, name, flip in zip(batch["inputs"], batch["seeds"].tolist(),
                                      batch["datasets"], batch["flip"].tolist()):
        key = (name, bool(flip))
        if key not in recipes:
            recipes[key] = TrainClipRecipe.from_cfg(cfg, name, random_flip=bool(flip))
        recipe = recipes[key]
        params = draw_clip_samples(recipe, seed, clip.shape[1:3], k)
        clips.append(recipe.apply_many([clip] * k, params))
    out = expand_raw_batch(batch, k)
    out["inputs"] = torch.cat(clips)
    return out


def apply_eval_batch(batch: dict, cfg) -> torch.Tensor:
    """Raw val/test batch -> float [B, 3, T, S, S]: test views where ``spatial_idx`` >= 0
    (test items), else the validation recipe drawn from the item's seed."""
    out = []
    views: Dict[str, EvalViewTransform] = {}
    recipes: Dict[Tuple[str, bool], TrainClipRecipe] = {}
    for clip, seed, name, flip, idx in zip(batch["inputs"], batch["seeds"].tolist(),
                                           batch["datasets"], batch["flip"].tolist(),
                                           batch["spatial_idx"].tolist()):
        if idx >= 0:
            if name not in views:
                views[name] = EvalViewTransform.from_cfg(cfg, name)
            out.append(views[name](clip, idx))
        else:
            key = (name, bool(flip))
            if key not in recipes:
                recipes[key] = TrainClipRecipe.from_cfg(cfg, name, random_flip=bool(flip),
                                                        split="val")
            out.append(recipes[key](clip, recipe_generator(seed)))
    return torch.stack(out)
