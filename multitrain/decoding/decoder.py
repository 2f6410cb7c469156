"""Video decoding behind one small interface, with decord (default) or PyAV (fallback).

Both backends number frames the same way: frame ``i`` is the ``i``-th frame in
presentation order among the packets the container holds (decord's convention), so a
sampled index list means the same frames whatever ``DATA.DECODING_BACKEND`` says. Only
the frames asked for are decoded (decord ``get_batch``; PyAV seeks to the key frame
before the first one and stops after the last one). Every batch decord returns is
checked (uint8 ``[n, H, W, 3]`` at the container's size); when decord raises or returns
anything else on a valid file, PyAV decodes that file instead.

Every failure a bad file can cause (missing, empty, not a video, truncated, corrupt
packets) surfaces as :class:`VideoDecodeError`, whose message names the file and the
reason, so the datasets can retry, replace and log it.
"""
from __future__ import annotations

import abc
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["VideoDecodeError", "VideoReader", "DecordReader", "PyAVReader", "open_video",
           "BACKENDS"]

logger = logging.getLogger(__name__)
_PYAV_FALLBACKS = set()  # files this process decoded with PyAV after decord failed

# "torchvision" was the name of PySlowFast's PyAV path; read it as pyav.
BACKENDS = {"decord": "decord", "pyav": "pyav", "torchvision": "pyav"}


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded. ``path`` and ``reason`` are kept."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot decode video {path!r}: {reason}")
        self.path = path
        self.reason = reason


def _quiet_libraries() -> None:
    # ffmpeg prints a line per damaged packet; we report bad files ourselves, once.
    try:
        import av.logging
        av.logging.set_level(av.logging.PANIC)
    except Exception:  # noqa: BLE001 - logging level is cosmetic
        pass
    try:
        import decord
        decord.logging.set_level(decord.logging.QUIET)
    except Exception:  # noqa: BLE001
        pass


_quiet_libraries()


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file does not exist")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def _probe_header(path: str) -> Optional[dict]:
    """Container-declared facts (frame count, size) read with PyAV; None if unreadable.

    Used by the decord reader to notice truncated files: decord indexes only the packets
    present, so a cut file whose header survived looks like a shorter, healthy video.
    """
    import av
    try:
        with av.open(path) as c:
            if not c.streams.video:
                return None
            s = c.streams.video[0]
            return {"frames": int(s.frames or 0), "width": int(s.codec_context.width),
                    "height": int(s.codec_context.height)}
    except Exception:  # noqa: BLE001 - decord gets its chance to open it anyway
        return None


class VideoReader(abc.ABC):
    """An opened video (interface of the decord and PyAV backends). Frames are numbered
    0..num_frames-1 in presentation order."""

    path: str

    @property
    @abc.abstractmethod
    def num_frames(self) -> int:
        ...

    @property
    @abc.abstractmethod
    def fps(self) -> float:
        ...

    @property
    @abc.abstractmethod
    def height(self) -> int:
        ...

    @property
    @abc.abstractmethod
    def width(self) -> int:
        ...

    @abc.abstractmethod
    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Decode frames ``indices`` (any order, repeats allowed).

        Returns:
            uint8 tensor ``[len(indices), H, W, 3]`` (RGB).
        """
        ...

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unique_sorted(self, indices: Sequence[int]) -> List[int]:
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError(f"{self.path}: get_frames() needs at least one index")
        bad = [i for i in idx if i < 0 or i >= self.num_frames]
        if bad:
            raise ValueError(f"{self.path}: frame indices {bad[:5]} outside "
                             f"[0, {self.num_frames})")
        return sorted(set(idx))

    def _check_truncation(self, declared: int, present: int) -> None:
        # A header that promises more frames than the file holds = cut during a copy.
        if declared > 0 and present < declared:
            raise VideoDecodeError(self.path, f"truncated: header declares {declared} "
                                              f"frames, only {present} present")


class DecordReader(VideoReader):
    """decord-backed reader; ``num_threads`` decoder threads (1 suits loader workers)."""

    def __init__(self, path: str, num_threads: int = 1, check_truncation: bool = True):
        import decord
        self.path = path
        _check_file(path)
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
            n = len(self._vr)
            fps = float(self._vr.get_avg_fps())
        except Exception as e:  # noqa: BLE001 - decord raises plain RuntimeError/DECORDError
            raise VideoDecodeError(path, f"decord cannot open it ({_first_line(e)})") from None
        if n <= 0:
            raise VideoDecodeError(path, "no video frames")
        if not fps > 0:
            raise VideoDecodeError(path, f"invalid frame rate {fps}")
        self._n, self._fps = n, fps
        self._fallback: Optional[VideoReader] = None  # PyAV, once decord failed on this file
        header = _probe_header(path)
        if header is not None and check_truncation:
            self._check_truncation(header["frames"], n)
        self._size = (header["height"], header["width"]) if header else None

    @property
    def num_frames(self) -> int:
        return self._n

    @property
    def fps(self) -> float:
        return self._fps

    def _hw(self):
        if self._size is None:  # header unreadable by PyAV: ask decord for one frame
            self._size = tuple(self.get_frames([0]).shape[1:3])
        return self._size

    @property
    def height(self) -> int:
        return int(self._hw()[0])

    @property
    def width(self) -> int:
        return int(self._hw()[1])

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        if self._fallback is not None:
            return self._fallback.get_frames(indices)
        uniq = self._unique_sorted(indices)
        try:
            frames = self._vr.get_batch(uniq).asnumpy()
        except Exception as e:  # noqa: BLE001
            reason = f"decord failed on frames {uniq[0]}..{uniq[-1]} ({_first_line(e)})"
            return self._decode_with_pyav(indices, reason)
        wrong = self._wrong_batch(frames, len(uniq))
        if wrong:
            return self._decode_with_pyav(indices, f"decord returned {wrong}")
        return _expand(torch.from_numpy(frames), uniq, indices)

    def _wrong_batch(self, frames, n: int) -> str:
        """What is wrong with a decord batch of ``n`` frames ("" when nothing): it must be
        uint8 ``[n, H, W, 3]`` with the container's H and W (when the header gave them)."""
        shape = tuple(getattr(frames, "shape", ()))
        dtype = getattr(frames, "dtype", None)
        if self._size is not None:
            expected = (n, self._size[0], self._size[1], 3)
            ok = shape == expected
        else:
            expected = (n, "H", "W", 3)
            ok = len(shape) == 4 and shape[0] == n and shape[3] == 3
        if ok and dtype == np.uint8:
            return ""
        return f"an array of shape {list(shape)} dtype {dtype}, expected {list(expected)} uint8"

    def _decode_with_pyav(self, indices: Sequence[int], reason: str) -> torch.Tensor:
        """decord2 mishandles some valid files, and which ones depends on the CPU: for
        some frame widths its colour conversion raises (its copy checks a padded size),
        for others it returns arrays of the wrong shape. PyAV numbers frames the same
        way, so it takes over for this file. A file PyAV cannot decode either is a bad
        file."""
        try:
            self._fallback = PyAVReader(self.path, check_truncation=False)
            frames = self._fallback.get_frames(indices)
        except VideoDecodeError as e:
            raise VideoDecodeError(self.path, f"{reason}; PyAV: {e.reason}") from None
        if self.path not in _PYAV_FALLBACKS:
            _PYAV_FALLBACKS.add(self.path)
            # The first file is a warning; the rest of this process's are debug lines
            # (a dataset at an unlucky size would otherwise log thousands).
            log = logger.warning if len(_PYAV_FALLBACKS) == 1 else logger.debug
            log("%s: %s; decoded with PyAV instead (further such files in this process: "
                "debug log only)", self.path, reason)
        return frames

    def close(self) -> None:
        self._vr = None
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None


class PyAVReader(VideoReader):
    """PyAV-backed reader. Opening demuxes the packet index (no decoding) so that frame
    numbers, the frame count and key frames are known exactly, as decord knows them.
    ``num_threads`` decoder threads (1 suits loader workers; 0 = ffmpeg's choice)."""

    def __init__(self, path: str, num_threads: int = 1, check_truncation: bool = True):
        import av
        self.path = path
        self._num_threads = num_threads
        _check_file(path)
        try:
            self._container = av.open(path)
        except Exception as e:  # noqa: BLE001 - av.error.* for every kind of bad input
            raise VideoDecodeError(path, f"PyAV cannot open it ({_first_line(e)})") from None
        try:
            self._index_packets(check_truncation)
        except VideoDecodeError:
            self.close()
            raise
        except Exception as e:  # noqa: BLE001
            self.close()
            raise VideoDecodeError(path, f"PyAV cannot read packets ({_first_line(e)})") from None

    def _index_packets(self, check_truncation: bool) -> None:
        if not self._container.streams.video:
            raise VideoDecodeError(self.path, "no video stream")
        s = self._stream = self._container.streams.video[0]
        # One thread suits loader workers (measured: ffmpeg's default slice threads are
        # slower on a busy 2-core machine); 0 lets ffmpeg choose.
        s.codec_context.thread_count = self._num_threads
        rate = s.average_rate or s.guessed_rate
        self._fps = float(rate) if rate else 0.0
        if not self._fps > 0:
            raise VideoDecodeError(self.path, "unknown frame rate")
        pts, key = [], []
        for pkt in self._container.demux(s):
            if pkt.size == 0 or pkt.pts is None:  # flush packet / no timestamp
                continue
            pts.append(int(pkt.pts))
            key.append(bool(pkt.is_keyframe))
        if not pts:
            raise VideoDecodeError(self.path, "no video frames")
        order = np.argsort(np.asarray(pts), kind="stable")
        self._pts = [pts[i] for i in order]
        self._pts_to_idx: Dict[int, int] = {p: i for i, p in enumerate(self._pts)}
        self._key_idx = [i for i, j in enumerate(order) if key[j]] or [0]
        if check_truncation:
            self._check_truncation(int(s.frames or 0), len(self._pts))
        self.frames_decoded = 0  # frames decoded so far (shows that seeking works)
        self._h, self._w = int(s.codec_context.height), int(s.codec_context.width)

    @property
    def num_frames(self) -> int:
        return len(self._pts)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def height(self) -> int:
        return self._h

    @property
    def width(self) -> int:
        return self._w

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        uniq = self._unique_sorted(indices)
        wanted = set(uniq)
        # Start from the last key frame at or before the first wanted frame.
        key = max((k for k in self._key_idx if k <= uniq[0]), default=0)
        got: Dict[int, np.ndarray] = {}
        try:
            self._container.seek(self._pts[key], stream=self._stream, backward=True,
                                 any_frame=False)
            for frame in self._container.decode(self._stream):
                self.frames_decoded += 1
                i = self._pts_to_idx.get(frame.pts)
                if i is None:
                    continue
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= uniq[-1]:
                    break
        except Exception as e:  # noqa: BLE001
            raise VideoDecodeError(self.path, f"PyAV failed on frames {uniq[0]}..{uniq[-1]} "
                                              f"({_first_line(e)})") from None
        missing = [i for i in uniq if i not in got]
        if missing:
            raise VideoDecodeError(self.path, f"frames {missing[:5]} could not be decoded "
                                              f"({len(missing)} missing)")
        frames = torch.from_numpy(np.stack([got[i] for i in uniq]))
        return _expand(frames, uniq, indices)

    def close(self) -> None:
        c, self._container = getattr(self, "_container", None), None
        if c is not None:
            c.close()


def _expand(frames: torch.Tensor, uniq: List[int], indices: Sequence[int]) -> torch.Tensor:
    """frames: [len(uniq), H, W, 3] for sorted unique indices -> [len(indices), H, W, 3]."""
    if len(uniq) == len(indices) and all(a == int(b) for a, b in zip(uniq, indices)):
        return frames
    pos = {v: k for k, v in enumerate(uniq)}
    return frames[torch.tensor([pos[int(i)] for i in indices], dtype=torch.long)]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def open_video(path: str, backend: str = "decord", **kwargs) -> VideoReader:
    """Open ``path`` with ``backend`` ("decord", "pyav"; "torchvision" means pyav).

    Raises:
        VideoDecodeError: missing, empty, truncated or undecodable file.
        ValueError: unknown backend name.
    """
    name = BACKENDS.get(str(backend).lower())
    if name is None:
        raise ValueError(f"DATA.DECODING_BACKEND: unknown backend {backend!r}; "
                         f"expected one of {sorted(BACKENDS)}")
    if name == "decord":
        return DecordReader(path, **kwargs)
    return PyAVReader(path, **kwargs)
