"""The project's video writer: RGB frames -> an H.264 (libx264, yuv420p) file, with PyAV."""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Mapping, Optional, Union

import numpy as np

__all__ = ["rgb_to_yuv420p", "add_video_stream", "write_h264"]


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """RGB ``[H, W, 3]`` uint8 (H, W even) -> yuv420p planes stacked ``[H * 3 // 2, W]``.

    BT.601 limited range (what decoders assume for untagged H.264), in exact integer
    arithmetic: chroma is the rounded mean of each 2x2 block. Done here rather than by
    ffmpeg's scaler, whose result depends on its thread count and SIMD unit, so a
    video's bytes depend only on its frames.
    """
    h, w = frame.shape[:2]
    f = frame.astype(np.int32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    q = f.reshape(h // 2, 2, w // 2, 2, 3).sum((1, 3))  # 2x2 sums
    r, g, b = q[..., 0], q[..., 1], q[..., 2]
    u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128
    v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128
    # PyAV's layout: the three planes flattened one after the other.
    planes = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
    return planes.astype(np.uint8).reshape(h * 3 // 2, w)


def add_video_stream(container, codec: str, rate, width: int, height: int,
                     options: Optional[Mapping[str, str]] = None):
    """A yuv420p video stream of ``codec`` in the PyAV output ``container``."""
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if options:
        stream.options = dict(options)
    return stream


def write_h264(path: str, frames: Iterable[np.ndarray], fps: Union[int, float, Fraction],
               options: Optional[Mapping[str, str]] = None, exact_yuv: bool = False,
               threads: int = 0, container_format: Optional[str] = None,
               container_options: Optional[Mapping[str, str]] = None) -> int:
    """Encode RGB frames ``[H, W, 3]`` uint8 (the first one sets the size) into ``path``
    as H.264 yuv420p at ``fps`` frames per second; return the number of frames.

    Args:
        options: libx264 options (``crf``, ``preset``, ``g``, ``bf``, ``tune``, ...).
        exact_yuv: convert colours with :func:`rgb_to_yuv420p` (bytes then depend only on
            the frames; needs an even width and height) instead of ffmpeg's scaler.
        threads: encoder threads, 0 = libx264's choice (its output depends on the count).
        container_format: e.g. "mp4"; default from the extension of ``path``.
        container_options: muxer options, e.g. ``{"movflags": "faststart"}``.
    """
    import av  # local: only writers need PyAV

    rate = Fraction(fps).limit_denominator(1001) if isinstance(fps, float) else Fraction(fps)
    count, stream = 0, None
    with av.open(str(path), mode="w", format=container_format,
                 options=dict(container_options or {})) as container:
        for frame in frames:
            if stream is None:
                height, width = frame.shape[:2]
                if exact_yuv and (width % 2 or height % 2):
                    raise ValueError(f"{path}: yuv420p needs an even width and height, "
                                     f"got {width}x{height}")
                stream = add_video_stream(container, "libx264", rate, width, height, options)
                if threads:
                    stream.codec_context.thread_count = threads
            if exact_yuv:
                vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            else:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = count, 1 / rate
            container.mux(stream.encode(vf))
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        container.mux(stream.encode(None))
    return count
