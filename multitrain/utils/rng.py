"""Capture and restore every random number generator a training step touches.

Exact mid-epoch resume needs the generators of torch (CPU), CUDA (every
visible device), numpy's global generator and python's ``random`` module to continue
where they stopped. The captured state holds only tensors, numbers, strings, lists and
dicts, so a checkpoint containing it loads with ``torch.load(path, weights_only=True)``.
"""

import random

import numpy as np
import torch

__all__ = ["seed_everything", "derived_seed", "capture_rng_state", "restore_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all CUDA devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device


def derived_seed(*coords: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``coords`` (non-negative),
    e.g. (RNG_SEED, epoch, position, rank) for the streams of a resumed rank."""
    words = np.random.SeedSequence([int(c) for c in coords]).generate_state(2, np.uint64)
    return int(words[0]) & 0x7FFFFFFFFFFFFFFF


def _numpy_state() -> dict:
    # np.random.get_state() -> ('MT19937', uint32[624], pos, has_gauss, cached_gaussian).
    # uint32 keys become int64 so that no unsigned dtype has to survive the unpickler.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": str(name),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _python_state() -> dict:
    # random.getstate() -> (version, tuple of 625 ints < 2**32, gauss_next or None).
    version, internal, gauss_next = random.getstate()
    return {
        "version": int(version),
        "internal": torch.tensor(internal, dtype=torch.int64),
        "gauss_next": gauss_next,
    }


def capture_rng_state() -> dict:
    """Snapshot all generators.

    Returns:
        ``{"torch": uint8 tensor, "cuda": [uint8 tensor per device], "numpy": dict,
        "python": dict}`` — plain containers, safe for ``weights_only`` loading.
    """
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
        "numpy": _numpy_state(),
        "python": _python_state(),
    }


def restore_rng_state(state: dict) -> None:
    """Restore generators captured by :func:`capture_rng_state`.

    A CUDA state list is restored only where CUDA is available; a mismatch in the
    number of devices restores the common prefix (a resume on a machine with another
    GPU count cannot be bit-exact anyway, but must not crash).
    """
    missing = {"torch", "numpy", "python"} - set(state)
    if missing:
        raise KeyError(f"RNG state lacks {sorted(missing)}; was it written by capture_rng_state()?")
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())

    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for dev in range(n):
            torch.cuda.set_rng_state(cuda[dev].to(torch.uint8).cpu(), device=dev)

    ns = state["numpy"]
    keys = ns["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((ns["name"], keys, int(ns["pos"]), int(ns["has_gauss"]),
                         float(ns["cached_gaussian"])))

    ps = state["python"]
    internal = tuple(int(v) for v in ps["internal"].tolist())
    random.setstate((int(ps["version"]), internal, ps["gauss_next"]))
