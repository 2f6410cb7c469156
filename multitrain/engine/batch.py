"""What happens to a collated batch between the loader and the model.

- `move_batch`: tensors to the device (non-blocking from pinned memory).
- `prepare_train_batch`: with `AUG.ON_DEVICE` the loader shipped uint8 clips at decoded
  size and the clip recipe runs here, on the device; then Mixup/CutMix on the local batch.
- `prepare_eval_inputs`: the eval views of device-side batches.
Every random draw comes from a generator seeded by the step's coordinates, so a resumed
run draws the same numbers.
"""
from __future__ import annotations

import zlib
from typing import Any, Tuple

import torch


def move_batch(batch: Any, device: torch.device) -> Any:
    """Recursively move tensors to `device`."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [move_batch(v, device) for v in batch]
    return batch


def step_generator(seed: Tuple) -> torch.Generator:
    """A CPU generator seeded from a tuple of ints (run seed, epoch, step, ...)."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(repr(tuple(int(s) for s in seed)).encode()))
    return g


def prepare_train_batch(batch: dict, cfg, seed: Tuple) -> dict:
    """Apply the device-side recipe (if the loader left it to us) and Mixup/CutMix."""
    if cfg.AUG.ON_DEVICE:
        from ..data import device_recipe

        batch = device_recipe.apply_train_batch(batch, cfg)
    if cfg.MIXUP.ENABLE:
        from ..transforms import mixup

        batch = dict(batch)
        batch["inputs"], batch["labels"] = mixup.mixup_from_cfg(
            batch["inputs"], batch["labels"], cfg, generator=step_generator(seed))
    return batch


def prepare_eval_inputs(batch: dict, cfg) -> torch.Tensor:
    """The model input [B, 3, T, S, S] of an eval batch."""
    if cfg.AUG.ON_DEVICE:
        from ..data import device_recipe

        return device_recipe.apply_eval_batch(batch, cfg)
    return batch["inputs"]
