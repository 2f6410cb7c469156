"""Checkpoints: atomic saving, resume, and reading model weights from any file (one reader,
one key adapter, one strictness rule for test, predict, relations and init)."""
from .checkpointer import (CHECKPOINT_SUBDIR, Checkpointer, atomic_save, checkpoint_dir,
                           checkpoint_name, find_latest, list_checkpoints, parse_checkpoint_name)
from .weights import (FINE_TUNE_PREFIXES, INFERENCE_UNUSED_PREFIXES, CheckpointError, adapt_keys,
                      extract_model_state, load_weights, read_checkpoint, read_model_state,
                      strip_module_prefix)

__all__ = [
    "CHECKPOINT_SUBDIR", "CheckpointError", "Checkpointer", "atomic_save", "checkpoint_dir",
    "checkpoint_name", "find_latest", "list_checkpoints", "parse_checkpoint_name",
    "FINE_TUNE_PREFIXES", "INFERENCE_UNUSED_PREFIXES", "adapt_keys", "extract_model_state",
    "load_weights", "read_checkpoint", "read_model_state", "strip_module_prefix",
]
