"""Optimizer construction: AdamW (or SGD) with weight-decay exemptions.

Parameters fall into two groups:

* ``decay``: weight decay ``SOLVER.WEIGHT_DECAY``;
* ``no_decay`` (weight decay 0): parameters whose name contains one of the names the
  model (or any submodule) lists in ``no_weight_decay()`` (position tables and class
  token, honoured when ``MVIT.ZERO_DECAY_POS_CLS``), and, with ``SOLVER.ZERO_WD_1D_PARAM``, every 1-D
  parameter (norm weights, learned loss weights) and every bias.

Frozen parameters (``requires_grad False``) are left out. Group order is fixed
(decay, then no_decay; empty groups dropped), so a checkpointed optimizer state maps back
onto the same model.
"""

import logging
from typing import Iterable, List

import torch
from torch import nn

from ..checkpoint.weights import unwrap_model

__all__ = ["param_groups", "build_optimizer"]

logger = logging.getLogger(__name__)


def param_groups(model: nn.Module, weight_decay: float, zero_wd_1d: bool = True,
                 no_decay_names: Iterable[str] = ()) -> List[dict]:
    """Split trainable parameters into decay / no-decay groups.

    Args:
        model: the model (a DDP wrapper is unwrapped, so names carry no ``module.``).
        weight_decay: decay of the ``decay`` group.
        zero_wd_1d: exempt 1-D parameters and biases.
        no_decay_names: substrings; a parameter whose name contains one is exempt.
    Returns:
        ``[{"params", "weight_decay", "name"}, ...]`` for ``torch.optim`` constructors.
    """
    skip = tuple(no_decay_names)
    decay, no_decay = [], []
    for name, p in unwrap_model(model).named_parameters():
        if not p.requires_grad:
            continue
        exempt = any(k in name for k in skip) or (
            zero_wd_1d and (p.ndim <= 1 or name.endswith(".bias")))
        (no_decay if exempt else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameter (all requires_grad=False)")
    return groups


def _model_no_decay_names(model: nn.Module) -> tuple:
    """Names listed by ``no_weight_decay()`` of the model or of any submodule (a model
    wrapped with its loss in one module still counts), as full parameter names."""
    names = set()
    for prefix, module in unwrap_model(model).named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            names.update(f"{prefix}.{n}" if prefix else n for n in fn())
    return tuple(sorted(names))


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """Build the optimizer from ``cfg.SOLVER`` (reads OPTIMIZING_METHOD, BASE_LR,
    WEIGHT_DECAY, ZERO_WD_1D_PARAM, MOMENTUM, DAMPENING, NESTEROV, MVIT.ZERO_DECAY_POS_CLS).

    The initial learning rate is ``SOLVER.BASE_LR``; the training loop overwrites it
    every iteration with :func:`multitrain.engine.lr_schedule.set_lr`. AdamW uses the
    default betas (0.9, 0.999) and eps 1e-8, as the original.

    Raises:
        ValueError: for an unknown ``SOLVER.OPTIMIZING_METHOD``.
    """
    s = cfg.SOLVER
    skip = _model_no_decay_names(model) if cfg.MVIT.ZERO_DECAY_POS_CLS else ()
    groups = param_groups(model, s.WEIGHT_DECAY, s.ZERO_WD_1D_PARAM, skip)
    counts = {g["name"]: sum(p.numel() for p in g["params"]) for g in groups}
    logger.info("optimizer %s: parameters with weight decay %d, without %d",
                s.OPTIMIZING_METHOD, counts.get("decay", 0), counts.get("no_decay", 0))
    method = s.OPTIMIZING_METHOD.lower()
    if method == "adamw":
        fused = bool(s.FUSED_ADAMW) and all(p.is_cuda for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=s.BASE_LR, weight_decay=s.WEIGHT_DECAY,
                                 **({"fused": True} if fused else {}))
    if method == "sgd":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM,
                               dampening=s.DAMPENING, nesterov=s.NESTEROV,
                               weight_decay=s.WEIGHT_DECAY)
    raise ValueError(f"SOLVER.OPTIMIZING_METHOD '{s.OPTIMIZING_METHOD}' is not supported "
                     "(supported: adamw, sgd)")
