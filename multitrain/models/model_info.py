"""Model size and cost: parameter count and fvcore GFLOPs of one view (cfg.LOG_MODEL_INFO).

fvcore counts one "flop" per multiply-add, as the original's log did. Its tracer does not
know `aten::scaled_dot_product_attention`, so we register a handle that counts the two
matrix products inside it (Q K^T and A V) exactly as the original's explicit matmuls were
counted; the softmax and the additive bias are element-wise and not counted (as before).
"""
from __future__ import annotations

import logging
import warnings
from typing import Dict, Optional

import torch
import torch.nn as nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _sdpa_flop_handle(inputs, outputs) -> int:
    """Multiply-adds of softmax(Q K^T) V for q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv]."""
    from fvcore.nn.jit_handles import get_shape
    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = 1
    for s in q[:-2]:
        batch *= s
    lq, d, lk, dv = q[-2], q[-1], k[-2], v[-1]
    return batch * lq * lk * (d + dv)


class _EvalAllHeads(nn.Module):
    """Trace wrapper: eval forward through every head, returned as a tuple of tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model(x, output="probs")
        return tuple(out.values()) if isinstance(out, dict) else (out,)


@torch.no_grad()
def gflops_one_view(model: nn.Module, num_frames: int, crop_size: int, in_chans: int = 3,
                    device: Optional[torch.device] = None) -> float:
    """fvcore GFLOPs (multiply-adds) of one [1, C, T, S, S] view in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore scripts a function at import
        from fvcore.nn import FlopCountAnalysis

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_chans, num_frames, crop_size, crop_size, device=device)
        analysis = FlopCountAnalysis(_EvalAllHeads(model), (x,))
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_handle)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # fvcore still uses torch.jit
            return analysis.total() / 1e9
    finally:
        model.train(was_training)


def model_info(model: nn.Module, cfg, with_flops: bool = True) -> Dict[str, float]:
    """{"params", "trainable_params", ["gflops"]} of the model at cfg's input size."""
    info: Dict[str, float] = {"params": count_parameters(model),
                              "trainable_params": count_parameters(model, trainable_only=True)}
    if with_flops:
        info["gflops"] = gflops_one_view(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE,
                                         cfg.DATA.INPUT_CHANNEL_NUM[0])
    return info


def log_model_info(model: nn.Module, cfg, logger: Optional[logging.Logger] = None
                   ) -> Dict[str, float]:
    """Log parameter count and GFLOPs of one view (call when cfg.LOG_MODEL_INFO)."""
    logger = logger or logging.getLogger(__name__)
    info = model_info(model, cfg)
    logger.info("model: %s parameters (%s trainable), %.1f GFLOPs per %dx%dx%d view",
                f"{info['params']:,}", f"{info['trainable_params']:,}", info["gflops"],
                cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)
    return info
