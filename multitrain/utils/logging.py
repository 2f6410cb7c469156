"""Logging setup: rank 0 talks (console + ``OUTPUT_DIR/stdout.log``), other ranks warn.

Library modules use ``logging.getLogger(__name__)``; this module configures the root
logger once per process so that every ``multitrain.*`` logger (and the tools) share the
same handlers. Calling :func:`setup_logging` again replaces the handlers it installed
earlier (tests and multi-run scripts call it several times) and leaves foreign
handlers (pytest's capture, for instance) alone.
"""

import logging
import os
import sys
from typing import Optional

__all__ = ["setup_logging", "LOG_FILENAME"]

LOG_FILENAME = "stdout.log"  # PySlowFast's name, so existing log parsers keep working
_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s: %(lineno)4d: %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"
_OURS = "_multitrain_handler"  # attribute marking the handlers this module owns


def _mark(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _OURS, True)
    return handler


def setup_logging(output_dir: Optional[str] = None, rank: int = 0,
                  level: int = logging.INFO, filename: str = LOG_FILENAME) -> logging.Logger:
    """Configure the root logger for this process.

    Args:
        output_dir: folder of the run; rank 0 appends to ``output_dir/filename``
            (created if needed). ``None`` or ``""``: console only.
        rank: global rank. Rank 0 logs ``level`` and above to stdout and the file;
            other ranks log only warnings and errors to stderr, prefixed with their rank,
            so a failing rank is still heard without N copies of every info line.
        level: level of rank 0.
        filename: log file name inside ``output_dir``.
    Returns:
        the root logger.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _OURS, False):
            root.removeHandler(h)
            h.close()

    if rank == 0:
        fmt = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
        console = _mark(logging.StreamHandler(sys.stdout))
        console.setLevel(level)
        console.setFormatter(fmt)
        root.addHandler(console)
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            fh = _mark(logging.FileHandler(os.path.join(output_dir, filename), mode="a"))
            fh.setLevel(level)
            fh.setFormatter(fmt)
            root.addHandler(fh)
        root.setLevel(level)
    else:
        fmt = logging.Formatter(f"[rank {rank}]" + _FORMAT, datefmt=_DATEFMT)
        console = _mark(logging.StreamHandler(sys.stderr))
        console.setLevel(logging.WARNING)
        console.setFormatter(fmt)
        root.addHandler(console)
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return root
