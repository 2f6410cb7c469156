"""The original's per-frame PIL clip recipe, as a reference for tests and the benchmark.

This is how PySlowFast/MultiTrain ran the train recipe: every decoded frame becomes a PIL
image (torchvision's ``to_pil_image`` of the channel-first frame), RandAugment applies
each drawn op to each frame with PIL (timm's op functions: ImageOps / ImageEnhance /
``Image.transform``), each frame goes back with ``to_tensor`` (float in [0, 1]) and the
frames are stacked, the WHOLE decoded clip is normalised in float, then cropped and
resized with ``F.interpolate(bilinear)``, flipped and erased. It takes the same
:class:`~multitrain.transforms.TrainClipParams` as the tensor recipe, so the two can
be compared draw for draw. Not used in training.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TVF
from PIL import Image, ImageEnhance, ImageOps

from multitrain.transforms import geometry as G
from multitrain.transforms.erasing import apply_erasing
from multitrain.transforms.rand_augment import RandAugmentParams, op_arguments

__all__ = ["pil_apply_op", "pil_rand_augment", "pil_train_clip", "pil_eval_view"]

_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
_ENHANCE = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
            "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


def _lut_op(img: Image.Image, lut: List[int]) -> Image.Image:
    return img.point(lut * 3)


def pil_apply_op(img: Image.Image, name: str, arg, kernel: str = "bicubic",
                 fill: int = 128) -> Image.Image:
    """One RandAugment op on one RGB PIL image, with its PIL-level argument."""
    fillcolor, resample = (fill,) * 3, _RESAMPLE[kernel]
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name.startswith("Posterize"):
        if arg >= 8:
            return img
        # Pillow >= 10 refuses 0 bits; older Pillow (the original's) gave black.
        mask = (0xFF << (8 - arg)) & 0xFF
        return _lut_op(img, [i & mask for i in range(256)])
    if name in ("Solarize", "SolarizeIncreasing"):
        return ImageOps.solarize(img, arg)
    if name == "SolarizeAdd":
        return _lut_op(img, [min(255, i + arg) if i < 128 else i for i in range(256)])
    for prefix, enhancer in _ENHANCE.items():
        if name.startswith(prefix):
            return enhancer(img).enhance(arg)
    if name == "Rotate":
        return img.rotate(arg, resample=resample, fillcolor=fillcolor)
    matrix = {"ShearX": (1, arg, 0, 0, 1, 0), "ShearY": (1, 0, 0, arg, 1, 0),
              "TranslateXRel": (1, 0, arg, 0, 1, 0), "TranslateYRel": (1, 0, 0, 0, 1, arg)}
    if name not in matrix:
        raise ValueError(f"unknown RandAugment op {name!r}")
    return img.transform(img.size, Image.AFFINE, matrix[name], resample=resample,
                         fillcolor=fillcolor)


def _augment_images(images: List[Image.Image], params: RandAugmentParams,
                    fill: int) -> List[Image.Image]:
    """Each drawn op, in order, on every frame."""
    hw = (images[0].height, images[0].width)
    for name, magnitude, sign, kernel in params.active():
        arg = op_arguments(name, magnitude, sign, hw)
        images = [pil_apply_op(im, name, arg, kernel, fill) for im in images]
    return images


def pil_rand_augment(clip: torch.Tensor, params: RandAugmentParams,
                     fill: int = 128) -> torch.Tensor:
    """Per-frame PIL RandAugment. clip: uint8 [T, H, W, 3] -> uint8 [T, H, W, 3]."""
    frames = _augment_images([Image.fromarray(f) for f in clip.cpu().numpy()], params, fill)
    return torch.from_numpy(np.stack([np.asarray(f) for f in frames]))


def pil_train_clip(clip: torch.Tensor, params, recipe) -> torch.Tensor:
    """The whole train recipe the original way (see module doc).

    clip: uint8 [T, H, W, 3]; params: ``recipe.draw(...)``; recipe: a TrainClipRecipe
    (its sizes, normalisation and fill are used). Returns float32 [3, T, S, S].
    """
    chw = clip.cpu().permute(0, 3, 1, 2)  # the original's conversions, frame by frame
    images = [TVF.to_pil_image(frame) for frame in chw]
    if params.rand_augment:
        images = _augment_images(images, params.rand_augment, recipe.fill)
    x = torch.stack([TVF.to_tensor(im) for im in images]).permute(0, 2, 3, 1)  # [T, H, W, 3]
    x = (x - torch.tensor(recipe.mean)) / torch.tensor(recipe.std)  # whole decoded frames
    x = x.permute(3, 0, 1, 2)  # [3, T, H, W]
    crop = params.crop
    if isinstance(crop, G.JitterCrop):
        h, w = G.short_side_hw(tuple(clip.shape[1:3]), crop.size)
        if (h, w) != tuple(clip.shape[1:3]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        x = x[:, :, crop.top:crop.top + crop.crop, crop.left:crop.left + crop.crop]
    else:
        t, l, h, w = crop
        x = F.interpolate(x[:, :, t:t + h, l:l + w], size=(recipe.crop_size,) * 2,
                          mode="bilinear", align_corners=False)
    if params.flip:
        x = x.flip(-1)
    return apply_erasing(x.contiguous(), params.erasing)


def pil_eval_view(clip: torch.Tensor, spatial_idx: int, num_crops: int, crop_size: int,
                  short_side: int, mean=(0.45,) * 3, std=(0.225,) * 3,
                  flip: Optional[bool] = False) -> torch.Tensor:
    """The original's test view (normalise the whole clip, resize, crop) for tests."""
    x = (clip.float() / 255.0 - torch.tensor(mean)) / torch.tensor(std)
    x = x.permute(3, 0, 1, 2)
    h, w = G.short_side_hw(tuple(clip.shape[1:3]), short_side)
    if (h, w) != tuple(clip.shape[1:3]):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    top, left = G.uniform_crop_offsets((h, w), crop_size, 1 if num_crops == 1 else spatial_idx)
    x = x[:, :, top:top + crop_size, left:left + crop_size]
    return x.flip(-1) if flip else x
