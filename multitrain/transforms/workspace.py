"""Reusable CPU scratch tensors for the big float temporaries of the clip ops.

A 32-frame 426x320 clip is 13 M values; a fresh float32 temporary of that size costs
more in page faults (glibc maps every allocation this large anew) than the arithmetic
done in it, on one CPU thread. Temporaries that never leave a function are therefore
taken from a per-thread pool, keyed by purpose. On accelerators the caching allocator
already does this, so plain ``torch.empty`` is returned there.

Keys in use: ``f32_a``, ``f32_b`` (float), ``u8_a``, ``u8_b`` (uint8); each keeps the
largest size it has seen, about 140 MB per process in all for 32 frames of 426x320.
Callers must not hold two live temporaries under one key.
"""
from __future__ import annotations

import math
import threading
from typing import Sequence

import torch

__all__ = ["scratch", "clear_scratch"]

_local = threading.local()


def scratch(key: str, shape: Sequence[int], dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape``; on CPU a view of the pool buffer ``key``.

    Two live temporaries must use different keys; nothing returned to a caller may
    alias a scratch buffer.
    """
    device = torch.device(device)
    if device.type != "cpu":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    n = math.prod(shape)
    pool = _local.__dict__.setdefault("pool", {})
    buf = pool.get((key, dtype))
    if buf is None or buf.numel() < n:
        buf = torch.empty(n, dtype=dtype)
        pool[(key, dtype)] = buf
    return buf[:n].view(tuple(shape))


def clear_scratch() -> None:
    """Release this thread's pool."""
    _local.__dict__.pop("pool", None)
