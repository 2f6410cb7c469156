"""Speed options of the training device, applied to a built model (no effect on numbers
beyond float rounding): ``MODEL.POOL_CHANNELS_LAST`` and ``MODEL.COMPILE``.

* Channels-last pooling: the depthwise ``Conv3d`` weights of attention pooling are kept in
  ``channels_last_3d``. The pooled token grid already has that layout, so the convolution
  runs on cuDNN's channels-last kernels without converting its input, weight or output
  (:func:`multitrain.models.attention.attention_pool` reads a channels-last output as a
  view). CUDA only: on the CPU the model is left as it is.
* ``torch.compile`` in place (``nn.Module.compile``, backend ``MODEL.COMPILE_BACKEND``):
  parameter names, and so checkpoints, stay those of the plain model.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["apply_device_levers", "pooling_to_channels_last"]

logger = logging.getLogger(__name__)


def pooling_to_channels_last(model: nn.Module) -> int:
    """Store every 5-D convolution weight of ``model`` in ``channels_last_3d``; returns
    how many were converted."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Conv3d) and m.weight.dim() == 5:
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
            n += 1
    return n


def apply_device_levers(model: nn.Module, cfg, device: torch.device) -> nn.Module:
    """The speed options of ``cfg.MODEL`` for ``model`` on ``device`` (call after ``.to``
    and before building the optimizer)."""
    if cfg.MODEL.POOL_CHANNELS_LAST and device.type == "cuda":
        logger.info("channels_last_3d weights for %d Conv3d layers", pooling_to_channels_last(model))
    if cfg.MODEL.COMPILE:
        model.compile(backend=cfg.MODEL.COMPILE_BACKEND)
        logger.info("model compiled with torch.compile, backend %s (first steps compile it)",
                    cfg.MODEL.COMPILE_BACKEND)
    return model
