"""Video readers: decord and PyAV behind one interface, frames as uint8 ``[T, H, W, 3]``."""
from .decoder import VideoDecodeError, VideoReader, open_video

__all__ = ["VideoDecodeError", "VideoReader", "open_video"]
