"""Which gradient `SOLVER.CLIP_GRAD_*` and the weights of per-rank loss terms refer to.

With `TRAIN.GATHER_BEFORE_LOSS` on W > 1 processes, the original code's gradient of the
gathered loss terms was 1/W of the global batch's (DDP averaged the per-rank slices); ours is
the global batch's own (see `distributed.all_gather_with_grad`). AdamW hardly notices, but a
clipping threshold does, and so do the terms computed on every rank from parameters alone
(the L1 projection sparsity, the learned task weights), which weighed W times more relative
to the gathered terms in the original.

`SOLVER.GRAD_REFERENCE "original"` (default) makes every gradient W times the original's:
the thresholds and those terms' gradients are multiplied by W, so the clipped update is
the published runs' one. `"global_batch"` applies the typed values to the true gradient.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

logger = logging.getLogger(__name__)

REFERENCES = ("original", "global_batch")


def original_grad_factor(cfg, world_size: int) -> float:
    """W when our gradient is W times the original's and the config refers to the
    original's; 1 otherwise."""
    if cfg.SOLVER.GRAD_REFERENCE == "original" and cfg.TRAIN.GATHER_BEFORE_LOSS and world_size > 1:
        return float(world_size)
    return 1.0


def clip_thresholds(cfg, world_size: int) -> Tuple[Optional[float], Optional[float]]:
    """`(clip_norm, clip_value)` to apply to our gradient. As in the original, a value
    threshold wins: `CLIP_GRAD_L2NORM` is ignored when `CLIP_GRAD_VAL` is set."""
    s = cfg.SOLVER
    factor = original_grad_factor(cfg, world_size)
    value = None if s.CLIP_GRAD_VAL is None else float(s.CLIP_GRAD_VAL) * factor
    norm = None
    if s.CLIP_GRAD_L2NORM is not None:
        if value is not None:
            logger.warning("SOLVER.CLIP_GRAD_VAL and SOLVER.CLIP_GRAD_L2NORM are both set: only "
                           "CLIP_GRAD_VAL applies (as in the original code)")
        else:
            norm = float(s.CLIP_GRAD_L2NORM) * factor
    for key, typed, used in (("CLIP_GRAD_L2NORM", s.CLIP_GRAD_L2NORM, norm),
                             ("CLIP_GRAD_VAL", s.CLIP_GRAD_VAL, value)):
        if used is not None:
            logger.info("SOLVER.%s %g refers to the %s gradient: effective threshold %g on "
                        "%d processes", key, typed, s.GRAD_REFERENCE.replace("_", "-"), used,
                        world_size)
    return norm, value
