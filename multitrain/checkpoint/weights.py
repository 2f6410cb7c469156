"""Model weights from a checkpoint file: one safe reader, one key adapter, one strictness rule.

Every tool that reads a checkpoint (training init and resume, testing, ``tools/predict.py``,
``tools/relations.py``) goes through this module.

Reading (:func:`read_checkpoint`): ``torch.load(weights_only=True)`` first. Checkpoints of
PySlowFast-era code may pickle their config (a yacs or fvcore ``CfgNode``, a dict subclass the
weights-only unpickler cannot rebuild). For those, and only when the weights-only load
fails, a restricted unpickler is used whose allow-list is tensor rebuild helpers,
OrderedDict, set/frozenset and the two ``CfgNode`` classes (fvcore's is read as yacs's, so
fvcore need not be installed). Any other global is refused before it is resolved, so no
code from the file runs.

Keys (:func:`adapt_keys`): our parameter names are the original code's, so adapting only
removes wrappers: DDP's leading ``module.``, ``_orig_mod.`` (``torch.compile``) and
``_checkpoint_wrapped_module.`` (activation-checkpoint wrappers), and drops the keys of
modules the original could save but that we never build (``head.heads_moco.*``).

Strictness (:func:`load_weights`): every model tensor must load (same name, same shape)
except those under the prefixes the caller allows: :data:`INFERENCE_UNUSED_PREFIXES` for
testing and prediction (modules inference never runs), :data:`FINE_TUNE_PREFIXES` for
initialising a fine-tune (the heads, whose datasets and class counts the config may
change). Anything else left unloaded is a :class:`CheckpointError` listing the keys.
"""
from __future__ import annotations

import logging
import pickle
import types
from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import nn

from ..utils import paths

logger = logging.getLogger(__name__)

__all__ = ["CheckpointError", "read_checkpoint", "extract_model_state", "strip_module_prefix",
           "adapt_keys", "read_model_state", "load_weights", "unwrap_model",
           "INFERENCE_UNUSED_PREFIXES", "FINE_TUNE_PREFIXES"]

# Modules a forward pass at test time never runs: projections between datasets, the
# informative-loss expander, learned loss weights.
INFERENCE_UNUSED_PREFIXES = ("head.cross_dataset_heads.", "expander.", "criterion.")
# What a fine-tune may change: every head (datasets, class counts), the expander and the
# loss weights that come with them.
FINE_TUNE_PREFIXES = ("head.", "expander.", "criterion.")

_WRAPPER_SEGMENTS = ("_checkpoint_wrapped_module.", "_orig_mod.")
_DROPPED_PREFIXES = ("head.heads_moco.",)
_STATE_KEYS = ("model_state", "model", "state_dict")
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
    ("fvcore.common.config", "CfgNode"),
}
_RENAMED_GLOBALS = {("__builtin__", "set"): ("builtins", "set"),
                    ("__builtin__", "frozenset"): ("builtins", "frozenset"),
                    ("fvcore.common.config", "CfgNode"): ("yacs.config", "CfgNode")}


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read, or does not fit the model; the message
    names the file."""


def _restricted_pickle_module(path: str) -> types.ModuleType:
    """A pickle-module stand-in for ``torch.load`` whose Unpickler resolves only the
    allowed globals."""

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in _ALLOWED_GLOBALS:
                raise pickle.UnpicklingError(
                    f"it pickles {module}.{name}; only tensors and config objects are read")
            return super().find_class(*_RENAMED_GLOBALS.get((module, name), (module, name)))

    mod = types.ModuleType("multitrain_restricted_pickle")
    mod.Unpickler = RestrictedUnpickler
    mod.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()
    return mod


def read_checkpoint(path: str, what: str = "checkpoint") -> dict:
    """The dict stored in ``path``, read on the CPU without running code from the file.

    Raises:
        CheckpointError: one line naming ``what`` and the file: missing, unreadable (truncated,
            not a checkpoint), pickling something other than tensors and configs, or not a dict.
    """
    if not paths.isfile(path):
        raise CheckpointError(f"{what}: checkpoint file {path} does not exist")
    local = paths.local_path(path)
    try:
        try:
            ckpt = torch.load(local, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            ckpt = torch.load(local, map_location="cpu", weights_only=False,
                              pickle_module=_restricted_pickle_module(path))
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{what}: cannot read checkpoint {path} safely: {first}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what}: {path} holds a {type(ckpt).__name__}, not a dict")
    return ckpt


def extract_model_state(ckpt: Mapping, path: str = "<checkpoint>") -> Dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint: ``model_state`` (ours, the original
    code's), ``model`` or ``state_dict`` (other tools), or the dict itself when it maps
    names to tensors."""
    for key in _STATE_KEYS:
        if isinstance(ckpt.get(key), Mapping):
            return dict(ckpt[key])
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return dict(ckpt)
    raise CheckpointError(f"{path}: no model state found (looked for {', '.join(_STATE_KEYS)} "
                          f"or a name -> tensor dict; keys: {sorted(map(str, ckpt))[:10]})")


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove DDP's ``module.`` prefixes (repeated ones too)."""
    out = {}
    for k, v in state.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def adapt_keys(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Key names of any layout we read -> ours (see the module docstring)."""
    out = {}
    for key, value in strip_module_prefix(state).items():
        for seg in _WRAPPER_SEGMENTS:
            key = key.replace(seg, "")
        if not key.startswith(_DROPPED_PREFIXES):
            out[key] = value
    return out


def read_model_state(path: str, what: str = "checkpoint") -> Tuple[dict, Dict[str, torch.Tensor]]:
    """``(whole checkpoint, model state with our key names)`` of ``path``."""
    ckpt = read_checkpoint(path, what)
    return ckpt, adapt_keys(extract_model_state(ckpt, path))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper, else itself."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                 may_skip: Sequence[str] = (), what: str = "checkpoint",
                 level: int = logging.INFO) -> dict:
    """Load ``state`` (our key names) into ``model``: every model tensor must load except
    those whose name starts with one of ``may_skip``, which keep their initialisation and
    are named in the log.

    Returns:
        ``{"loaded": [...], "skipped_shape": [(key, file shape, model shape)],
        "unexpected": [...], "missing": [...]}``; missing = model keys left unloaded.
    Raises:
        CheckpointError: model tensors outside ``may_skip`` are absent from the file or
            differ in shape; the message lists them and nothing is loaded.
    """
    target = unwrap_model(model)
    own = target.state_dict()
    report = {"loaded": [], "skipped_shape": [], "unexpected": [], "missing": []}
    usable = {}
    for k, v in state.items():
        if k not in own:
            report["unexpected"].append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report["skipped_shape"].append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            usable[k] = v
    report["loaded"] = sorted(usable)
    report["missing"] = sorted(set(own) - set(usable))
    bad = [k for k in report["missing"] if not k.startswith(tuple(may_skip))]
    if bad:
        shapes = {k: (a, b) for k, a, b in report["skipped_shape"]}
        described = [f"{k} file {shapes[k][0]} model {shapes[k][1]}" if k in shapes else k
                     for k in bad]
        raise CheckpointError(
            f"{what} {source} does not match the config's model: {len(bad)} of {len(own)} model "
            f"tensors would stay unloaded ({len(usable)} match): {_listing(described)}; the "
            "config must describe the checkpoint's model (MODEL.*NUM_CLASSES, crop size...)")
    target.load_state_dict(usable, strict=False)
    logger.log(level, "loaded %d/%d model tensors from %s", len(usable), len(own), source)
    warn = logging.WARNING if level > logging.DEBUG else level  # allowed gaps are named
    if report["skipped_shape"]:
        logger.log(warn, "%s: %d keys skipped, shape differs (key, file, model): %s", source,
                   len(report["skipped_shape"]), report["skipped_shape"])
    if report["missing"]:
        logger.log(warn, "%s: %d model tensors left unloaded (at their initialisation, allowed "
                   "under %s): %s", source, len(report["missing"]), list(may_skip),
                   report["missing"])
    if report["unexpected"]:
        logger.log(level, "%s: %d keys not in the model, skipped: %s", source,
                   len(report["unexpected"]), report["unexpected"])
    return report
