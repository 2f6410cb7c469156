"""Checkpoints: atomic saving, resume, init from foreign files, loading for test."""
from .checkpointer import (CHECKPOINT_SUBDIR, CheckpointError, Checkpointer, atomic_save,
                           checkpoint_dir, checkpoint_name, extract_model_state, find_latest,
                           list_checkpoints, load_model_state, parse_checkpoint_name,
                           strip_module_prefix)

__all__ = [
    "CHECKPOINT_SUBDIR", "CheckpointError", "Checkpointer", "atomic_save", "checkpoint_dir",
    "checkpoint_name", "extract_model_state", "find_latest", "list_checkpoints",
    "load_model_state", "parse_checkpoint_name", "strip_module_prefix",
]
