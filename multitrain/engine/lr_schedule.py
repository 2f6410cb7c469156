"""Learning-rate schedule: linear warm-up, then cosine.

The learning rate is a function of the fractional epoch
``e = epoch + iteration / iterations_per_epoch``:

* ``e < WARMUP_EPOCHS``: linear from ``WARMUP_START_LR`` (at e = 0) to the cosine's
  value at ``WARMUP_EPOCHS`` — so the curve is continuous where warm-up ends;
* otherwise the cosine ``END + (BASE - END) * (1 + cos(pi * (e - o) / (MAX_EPOCH - o))) / 2``
  with offset ``o = WARMUP_EPOCHS`` when ``COSINE_AFTER_WARMUP`` (the cosine starts at
  ``BASE_LR`` when warm-up ends) and ``o = 0`` otherwise.

With ``SOLVER.BASE_LR_SCALE_NUM_SHARDS`` the three learning rates are multiplied by
``NUM_SHARDS`` here; the config itself is never modified, so callers must not scale it
a second time.
"""

import math
from dataclasses import dataclass

import torch

__all__ = ["LRSchedule", "lr_schedule_from_cfg", "get_lr_at_epoch", "set_lr"]

_POLICIES = ("cosine",)


@dataclass(frozen=True)
class LRSchedule:
    """Warm-up + cosine schedule with plain arguments (no config needed).

    Attributes:
        base_lr: peak learning rate (``SOLVER.BASE_LR``, already scaled).
        end_lr: final learning rate of the cosine (``SOLVER.COSINE_END_LR``).
        warmup_start_lr: learning rate at epoch 0 (``SOLVER.WARMUP_START_LR``).
        warmup_epochs: length of the linear warm-up, in (fractional) epochs.
        max_epoch: epoch at which the cosine reaches ``end_lr``.
        cosine_after_warmup: start the cosine at ``warmup_epochs`` instead of 0.
    """

    base_lr: float
    end_lr: float
    warmup_start_lr: float
    warmup_epochs: float
    max_epoch: float
    cosine_after_warmup: bool = True

    def __post_init__(self):
        offset = self.warmup_epochs if self.cosine_after_warmup else 0.0
        if self.max_epoch <= offset:
            raise ValueError(
                f"SOLVER.MAX_EPOCH ({self.max_epoch}) must exceed the cosine's start "
                f"({offset}: SOLVER.WARMUP_EPOCHS with COSINE_AFTER_WARMUP)")
        if self.end_lr > self.base_lr:
            raise ValueError(f"SOLVER.COSINE_END_LR ({self.end_lr}) exceeds SOLVER.BASE_LR "
                             f"({self.base_lr})")
        if self.warmup_epochs < 0:
            raise ValueError(f"SOLVER.WARMUP_EPOCHS must be >= 0, got {self.warmup_epochs}")

    def cosine(self, epoch: float) -> float:
        """The cosine branch at fractional ``epoch`` (no warm-up)."""
        offset = self.warmup_epochs if self.cosine_after_warmup else 0.0
        progress = (epoch - offset) / (self.max_epoch - offset)
        return self.end_lr + (self.base_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, epoch: float) -> float:
        """Learning rate at fractional ``epoch`` (epoch + iteration / iterations_per_epoch)."""
        if epoch < self.warmup_epochs:
            target = self.cosine(self.warmup_epochs)
            slope = (target - self.warmup_start_lr) / self.warmup_epochs
            return self.warmup_start_lr + slope * epoch
        return self.cosine(epoch)


def lr_schedule_from_cfg(cfg) -> LRSchedule:
    """Build the schedule from ``cfg.SOLVER`` (and ``NUM_SHARDS`` for LR scaling).

    Raises:
        ValueError: for an ``SOLVER.LR_POLICY`` other than ``cosine``.
    """
    s = cfg.SOLVER
    if s.LR_POLICY not in _POLICIES:
        raise ValueError(f"SOLVER.LR_POLICY '{s.LR_POLICY}' is not supported "
                         f"(supported: {', '.join(_POLICIES)})")
    scale = float(cfg.NUM_SHARDS) if s.BASE_LR_SCALE_NUM_SHARDS else 1.0
    return LRSchedule(
        base_lr=s.BASE_LR * scale,
        end_lr=s.COSINE_END_LR * scale,
        warmup_start_lr=s.WARMUP_START_LR * scale,
        warmup_epochs=float(s.WARMUP_EPOCHS),
        max_epoch=float(s.MAX_EPOCH),
        cosine_after_warmup=bool(s.COSINE_AFTER_WARMUP),
    )


def get_lr_at_epoch(cfg, cur_epoch: float) -> float:
    """Learning rate at fractional epoch ``cur_epoch`` for the config's schedule.

    Convenience wrapper; a training loop should build :func:`lr_schedule_from_cfg` once
    and call it per iteration.
    """
    return lr_schedule_from_cfg(cfg)(cur_epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group (times the group's ``lr_scale`` if it has one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
