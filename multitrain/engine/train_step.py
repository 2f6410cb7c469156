"""One optimizer step over `GRAD_ACCU_NUM_BATCH` micro-batches, and nothing else.

forward -> loss dict -> backward (AMP-scaled) on every micro-batch; on the last one:
unscale, clip, step, scaler update, zero-grad. DDP all-reduces gradients only on the last
micro-batch (`no_sync` on the others): the same numbers as reducing every time, less traffic.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN (or inf without a grad scaler to absorb it)."""


@dataclass
class StepResult:
    losses: Dict[str, float]  # every named loss term, averaged over the micro-batches
    grad_norm: Optional[float]  # global L2 norm before clipping (None without clipping)
    skipped: bool  # True when the fp16 grad scaler skipped the step (inf gradients)


def autocast_context(device: torch.device, enabled: bool, dtype: torch.dtype):
    """Autocast on `device` when enabled; a null context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def accumulation_context(model: torch.nn.Module, is_last: bool):
    """`model.no_sync()` on all but the last micro-batch of a DDP model."""
    if not is_last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def train_step(model, micro_batches, compute_losses: Callable, optimizer, scaler=None,
               clip_norm: Optional[float] = None, clip_value: Optional[float] = None,
               amp_dtype: Optional[torch.dtype] = None, device=torch.device("cpu"),
               set_lr: Optional[Callable[[int], None]] = None) -> StepResult:
    """Run one optimizer step.

    Args:
        micro_batches: a list of batches (each given to `compute_losses`).
        compute_losses: `(model, batch) -> {name: scalar tensor}` with a "loss" entry (the
            total to minimise); called under autocast when `amp_dtype` is set.
        scaler: a `torch.amp.GradScaler` for fp16 (None for fp32/bf16).
        set_lr: called with the micro-batch index before each forward (the LR is a
            function of the fractional epoch and is set on every micro-batch).
    """
    n = len(micro_batches)
    sums: Dict[str, torch.Tensor] = {}  # on the device: no host sync inside the loop
    nan_or_inf = torch.zeros(2, dtype=torch.bool, device=device)
    for i, batch in enumerate(micro_batches):
        if set_lr is not None:
            set_lr(i)
        is_last = i == n - 1
        with accumulation_context(model, is_last):
            with autocast_context(device, amp_dtype is not None, amp_dtype or torch.float32):
                losses = compute_losses(model, batch)
            loss = losses["loss"].float()
            nan_or_inf = nan_or_inf | torch.stack([torch.isnan(loss), ~torch.isfinite(loss)]).to(device)
            scaled = loss / n
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        for k, v in losses.items():
            part = v.detach().double() / n  # float64, as the Python floats summed before
            sums[k] = sums[k] + part if k in sums else part
    # One host sync for every loss term of every micro-batch and the NaN/inf flags.
    names = list(sums)
    values = torch.cat([torch.stack([sums[k].reshape(()).to(device) for k in names]),
                        nan_or_inf.double()]).tolist()
    totals = dict(zip(names, values[:len(names)]))
    if values[-2] or (scaler is None and values[-1]):  # before any clipping or update
        raise NonFiniteLossError(
            f"training loss is {totals['loss']} (terms: {totals}); lower SOLVER.BASE_LR, "
            "enable SOLVER.CLIP_GRAD_L2NORM, or check the inputs")
    return _finish_step(model, optimizer, scaler, clip_norm, clip_value, totals)


def _finish_step(model, optimizer, scaler, clip_norm, clip_value, totals) -> StepResult:
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = None
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if clip_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
        if not math.isfinite(grad_norm) and scaler is None:
            raise NonFiniteLossError(f"gradient norm is {grad_norm}: the step was not applied")
    skipped = False
    if scaler is not None:
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        skipped = scaler.get_scale() < before
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(losses=totals, grad_norm=grad_norm, skipped=skipped)
