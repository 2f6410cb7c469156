"""The paths a config names (annotation files, checkpoint files to read, the output folder)
go through iopath's PathManager: a local path behaves as before, and a store for which a
handler is registered on :data:`PATH_MANAGER` (``PATH_MANAGER.register_handler(h)``, e.g.
a bucket's iopath handler) is read and written the same way. Video files are opened by the
decoders themselves (decord and PyAV need a local file)."""
from __future__ import annotations

from typing import IO

from iopath.common.file_io import PathManager

PATH_MANAGER = PathManager()

__all__ = ["PATH_MANAGER", "open_path", "isfile", "mkdirs", "local_path"]


def open_path(path: str, mode: str = "r", **kwargs) -> IO:
    """``open(path, mode, **kwargs)`` through the path manager."""
    return PATH_MANAGER.open(path, mode, **kwargs)


def isfile(path: str) -> bool:
    return PATH_MANAGER.isfile(path)


def mkdirs(path: str) -> None:
    """Create the folder and its parents (no error if it exists)."""
    PATH_MANAGER.mkdirs(path)


def local_path(path: str) -> str:
    """A local file holding ``path``'s bytes: the path itself when local, else a cached copy."""
    return PATH_MANAGER.get_local_path(path)
