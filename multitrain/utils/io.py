"""Atomic file writes: a reader sees the old file or the complete new one, never a part."""
from __future__ import annotations

import os
from typing import Callable, Optional, TypeVar

__all__ = ["atomic_write", "atomic_write_text"]

T = TypeVar("T")


def atomic_write(path: str, write: Callable[[str], T], suffix: str = "",
                 tmp: Optional[str] = None) -> T:
    """Call ``write(temp path)``, then rename the temp file onto ``path``; return what
    ``write`` returned. The temp file (default ``<path>.tmp<pid><suffix>``, in the same
    folder so the rename is atomic; ``suffix`` keeps an extension a writer needs) is
    removed when ``write`` or the rename fails, and an existing ``path`` is left as it was.
    """
    tmp = tmp or f"{path}.tmp{os.getpid()}{suffix}"
    try:
        result = write(tmp)
        os.replace(tmp, path)
        return result
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its folder."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)
