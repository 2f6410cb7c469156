"""Temporal sampling: which frame indices of a video a clip uses. Pure functions.

Two kinds, chosen per dataset:

* **clip** (Kinetics, MiT): ``num_frames`` frames ``sampling_rate`` apart at
  ``target_fps``, i.e. a window of ``num_frames * sampling_rate / target_fps`` seconds,
  which is ``clip_span`` frames of the video at its own fps (a float: 80.0 frames for
  32x3 at 25 fps). Train/val place the window at a random start; test places
  ``num_views`` windows uniformly. Frames past the end repeat the last frame.
* **segment** (SSv2): the video is cut into ``num_frames`` equal segments and one frame
  is taken per segment (random in train, the midpoint otherwise).

The test-time arithmetic reproduces the original decord path index for index
(``conformance/sampling.json``): integer start (floor of the offset formula, or
truncation of the uniform one), start capped at ``len - 2``, end = start + span - 1,
``num_frames`` evenly spaced points truncated to integers, clamped to the video.
"""
from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import torch

__all__ = ["clip_span", "clip_start", "clip_indices", "train_clip_indices",
           "test_clip_indices", "segment_indices"]


def clip_span(num_frames: int, sampling_rate: int, target_fps: float, video_fps: float) -> float:
    """Length, in frames of the video, of a ``num_frames x sampling_rate`` clip at
    ``target_fps`` (a float; not rounded)."""
    if num_frames <= 0 or sampling_rate <= 0 or target_fps <= 0 or video_fps <= 0:
        raise ValueError(f"clip_span: need positive num_frames ({num_frames}), sampling_rate "
                         f"({sampling_rate}), target_fps ({target_fps}), video fps ({video_fps})")
    return sampling_rate * num_frames / target_fps * video_fps


def clip_start(video_frames: int, span: float, view: int, num_views: int,
               use_offset: bool = False, generator: Optional[torch.Generator] = None) -> int:
    """Integer start frame of one clip of ``span`` frames.

    Args:
        view: test view index in ``[0, num_views)``; -1 draws a random start in
            ``[0, max(video_frames - span, 0)]`` from ``generator`` (train/val).
        use_offset: test only; first view at 0 and last ending at the end (one view:
            the centre), with the offsets ``floor(delta / (num_views - 1))`` apart.
    """
    delta = max(video_frames - span, 0.0)
    if view == -1:
        u = torch.rand((), generator=generator, dtype=torch.float64).item()
        start = u * delta
    elif not 0 <= view < num_views:
        raise ValueError(f"view {view} outside [0, {num_views})")
    elif use_offset:
        start = math.floor(delta / 2) if num_views == 1 else view * math.floor(delta / (num_views - 1))
    else:
        start = delta * view / num_views
    return int(start)


def clip_indices(video_frames: int, video_fps: float, num_frames: int, sampling_rate: int,
                 target_fps: float, view: int = -1, num_views: int = 1,
                 use_offset: bool = False,
                 generator: Optional[torch.Generator] = None) -> List[int]:
    """Frame indices (length ``num_frames``, within ``[0, video_frames)``) of one clip.

    ``view = -1`` is a random clip (train/val, needs ``generator`` for reproducibility);
    otherwise test view ``view`` of ``num_views``.
    """
    if video_frames <= 0:
        raise ValueError(f"clip_indices: video has {video_frames} frames")
    span = clip_span(num_frames, sampling_rate, target_fps, video_fps)
    start = clip_start(video_frames, span, view, num_views, use_offset, generator)
    end = start + span - 1  # end from the uncapped start, as the original does
    start = min(start, video_frames - 2)
    points = np.linspace(start, end, num_frames)
    # astype truncates toward zero (not floor/round): part of the reproduced arithmetic.
    return np.clip(points.astype(np.int64), 0, video_frames - 1).tolist()


def train_clip_indices(video_frames: int, video_fps: float, num_frames: int, sampling_rate: int,
                       target_fps: float, generator: torch.Generator) -> List[int]:
    """A clip at a random start drawn from ``generator``."""
    return clip_indices(video_frames, video_fps, num_frames, sampling_rate, target_fps,
                        view=-1, generator=generator)


def test_clip_indices(video_frames: int, video_fps: float, num_frames: int, sampling_rate: int,
                      target_fps: float, num_views: int, use_offset: bool) -> List[List[int]]:
    """All ``num_views`` test views of a video, in view order."""
    return [clip_indices(video_frames, video_fps, num_frames, sampling_rate, target_fps,
                         view=v, num_views=num_views, use_offset=use_offset)
            for v in range(num_views)]


def segment_indices(video_frames: int, num_frames: int, train: bool,
                    generator: Optional[torch.Generator] = None) -> List[int]:
    """SSv2-style segment sampling: one frame per segment of ``(len - 1) / num_frames``.

    Segment bounds are rounded half-to-even (numpy/python rounding); train takes a
    uniformly random frame in ``[lo, hi]`` (both ends included), val/test the integer
    midpoint ``(lo + hi) // 2``.
    """
    if video_frames <= 0:
        raise ValueError(f"segment_indices: video has {video_frames} frames")
    seg = (video_frames - 1) / num_frames
    bounds = np.round(seg * np.arange(num_frames + 1)).astype(np.int64)
    lo, hi = torch.from_numpy(bounds[:-1]), torch.from_numpy(bounds[1:])
    if train:
        u = torch.rand(num_frames, generator=generator, dtype=torch.float64)
        idx = lo + (u * (hi - lo + 1).double()).long().clamp_max_(hi - lo)
    else:
        idx = (lo + hi) // 2
    return idx.tolist()
