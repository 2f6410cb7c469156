"""Speed options of the training device, applied to a built model (no effect on numbers
beyond float rounding): ``MODEL.POOL_CHANNELS_LAST`` and ``MODEL.COMPILE``.

* Channels-last pooling: the token grid that attention pooling convolves is already
  ``channels_last_3d`` in memory (a permuted ``[B, T, H, W, C]`` view), and PyTorch sends a
  depthwise 5-D convolution to cuDNN's channels-last kernels for such input. Its weight
  ``[C, 1, kT, kH, kW]`` has one input channel per group, so its default strides read as
  both layouts and PyTorch takes it for NCDHW; with this option the weights of the
  pooling convolutions get explicit channels-last strides (the same values), so that
  weight, input and output agree. CUDA only: a CPU model is left as it is.
* ``torch.compile`` in place (``nn.Module.compile``, backend ``MODEL.COMPILE_BACKEND``):
  parameter names, and so checkpoints, stay those of the plain model.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["apply_device_levers", "pooling_to_channels_last"]

logger = logging.getLogger(__name__)


def _channels_last_strides(shape) -> tuple:
    o, i, d, h, w = shape
    return (d * h * w * i, 1, h * w * i, w * i, i)


def pooling_to_channels_last(model: nn.Module) -> int:
    """Give the weights of the pooling convolutions (grouped ``Conv3d``) of ``model``
    channels-last strides, values unchanged; returns how many were changed."""
    n = 0
    for m in model.modules():
        if not isinstance(m, nn.Conv3d) or m.groups == 1:  # not pooling: the patch embedding
            continue
        w = m.weight.data
        strides = _channels_last_strides(w.shape)
        if w.stride() != strides:
            m.weight.data = torch.empty_strided(w.shape, strides, dtype=w.dtype,
                                                device=w.device).copy_(w)
            n += 1
    return n


def apply_device_levers(model: nn.Module, cfg, device: torch.device) -> nn.Module:
    """The speed options of ``cfg.MODEL`` for ``model`` on ``device`` (call after ``.to``
    and before building the optimizer)."""
    if cfg.MODEL.POOL_CHANNELS_LAST and device.type == "cuda":
        logger.info("channels-last weights for %d pooling convolutions", pooling_to_channels_last(model))
    if cfg.MODEL.COMPILE:
        model.compile(backend=cfg.MODEL.COMPILE_BACKEND)
        logger.info("model compiled with torch.compile, backend %s (first steps compile it)",
                    cfg.MODEL.COMPILE_BACKEND)
    return model
