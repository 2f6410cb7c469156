"""Reading original (PySlowFast / MultiTrain) checkpoints and mapping their keys to ours.

Our parameter names are the original ones, so the key map only removes wrappers:
`module.` (DDP), `_checkpoint_wrapped_module.` (activation-checkpoint wrappers), and keys
of training-only modules the original could save but that we never build
(`head.heads_moco.*`, MULTI_USE_MOCO).

Reading: `torch.load(..., weights_only=True)` first. PySlowFast-era files may pickle a yacs
`CfgNode` (a dict subclass that the weights-only unpickler cannot rebuild). For those, and
only when the weights-only load fails, we fall back to a restricted unpickler whose allow-list
is exactly: tensor/parameter rebuild helpers, OrderedDict, set/frozenset, and
`yacs.config.CfgNode` (`_ALLOWED_GLOBALS`). Any other global is refused with an error that
names the file and the global. This is never a blanket `weights_only=False`.
"""
from __future__ import annotations

import pickle
import types
from typing import Any, Dict, Mapping

import torch

WRAPPER_SEGMENTS = ("_checkpoint_wrapped_module.", "_orig_mod.")
DROPPED_PREFIXES = ("head.heads_moco.",)
STATE_KEYS = ("model_state", "state_dict", "model")

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Tensor"),
    ("torch", "Size"),
    ("builtins", "set"), ("__builtin__", "set"),
    ("builtins", "frozenset"), ("__builtin__", "frozenset"),
    ("yacs.config", "CfgNode"),
}


def _restricted_pickle_module(path: str) -> types.ModuleType:
    """A pickle-module stand-in for torch.load whose Unpickler only resolves allowed globals."""

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in _ALLOWED_GLOBALS:
                raise pickle.UnpicklingError(
                    f"{path}: refusing to unpickle global {module}.{name} (not in the "
                    "checkpoint allow-list of multitrain/models/checkpoint_keys.py)")
            if module == "__builtin__":
                module = "builtins"
            return super().find_class(module, name)

    mod = types.ModuleType("multitrain_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler
    mod.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()
    mod.__name__ = "multitrain_restricted_pickle"
    return mod


def load_checkpoint_file(path: str, map_location: Any = "cpu") -> Any:
    """The whole object stored in `path`, loaded safely (see the module docstring)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as first_error:
        try:
            return torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=_restricted_pickle_module(path))
        except pickle.UnpicklingError as e:
            lines = [ln for ln in str(first_error).splitlines() if "Unpickler error" in ln]
            raise pickle.UnpicklingError(
                f"{path}: cannot be read safely. weights-only load: "
                f"{lines[0].strip() if lines else type(first_error).__name__}; "
                f"restricted load: {e}") from None


def extract_state_dict(obj: Any, path: str = "<checkpoint>") -> Dict[str, torch.Tensor]:
    """The model state_dict inside a loaded checkpoint (model_state / state_dict / model / flat)."""
    if isinstance(obj, Mapping):
        for key in STATE_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return dict(obj[key])
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise KeyError(f"{path}: no model state found (looked for {', '.join(STATE_KEYS)} "
                   "or a flat name -> tensor mapping)")


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Original key names -> ours: strip DDP / checkpoint-wrapper segments, drop MoCo heads."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        for seg in WRAPPER_SEGMENTS:
            key = key.replace(seg, "")
        if key.startswith(DROPPED_PREFIXES):
            continue
        out[key] = value
    return out


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """Read `path` safely and return its model state_dict with keys mapped to ours."""
    return convert_state_dict(extract_state_dict(load_checkpoint_file(path), path))
