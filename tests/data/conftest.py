"""Shared fixtures of the data tests: small real H.264 videos, broken files and CSVs.

Every good video is a flat grey picture whose level encodes the frame number
(``frame_code``), with a textured corner so the codec has real work to do; a test can
therefore read back WHICH frames a decoder or dataset returned.
"""
import os
import types

import numpy as np
import pytest

from multitrain.preparation.h264 import write_h264

# name -> (frames, fps, width, height); varied length, rate and size.
GOOD_VIDEOS = {
    "long.mp4": (90, 30, 96, 64),
    "pal.mp4": (50, 25, 80, 60),
    "ntsc.mp4": (45, 30000 / 1001, 64, 48),
    "short.mp4": (10, 12, 64, 64),
}
BAD_VIDEOS = ["zero.mp4", "truncated.mp4", "cut_no_index.mp4", "random.mp4", "missing.mp4"]


def frame_code(i: int) -> int:
    """Grey level of frame i (distinct for i < 60, steps of 4 survive the codec)."""
    return 16 + (4 * i) % 224


def read_code(frame) -> int:
    """Frame number modulo 56 read back from a decoded uint8 frame [H, W, 3]."""
    h, w = frame.shape[:2]
    level = float(np.median(np.asarray(frame)[h // 2:, w // 2:]))
    return int(round((level - 16) / 4)) % 56


def write_video(path, frames, fps, width, height, faststart=False, gop=8):
    """Encode `frames` synthetic frames as H.264/yuv420p MP4 with B-frames and key
    frames every `gop` frames (so seeking is exercised)."""
    rng = np.random.RandomState(0)

    def frame(i):
        img = np.full((height, width, 3), frame_code(i), np.uint8)
        img[: height // 3, : width // 3] = rng.randint(0, 255, (height // 3, width // 3, 3))
        return img

    write_h264(path, (frame(i) for i in range(frames)), fps, {"bf": "2", "crf": "12", "g": str(gop)},
               container_options={"movflags": "faststart"} if faststart else None)


def _write_csv(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(r + "\n")
    return str(path)


@pytest.fixture(scope="session")
def video_corpus(tmp_path_factory):
    """Videos under `prefix` and CSVs under `ann/<dataset>/{train,val,test}.csv`.

    Datasets: "kinetics" (3 classes), "ssv2" (2 classes), and "broken" whose train/test
    CSVs mix good and broken files. The namespace also carries `specs` (GOOD_VIDEOS) and
    the helpers `read_code` / `frame_code` (test modules do not import conftest).
    """
    root = tmp_path_factory.mktemp("video_corpus")
    prefix = root / "videos"
    prefix.mkdir()
    for name, (n, fps, w, h) in GOOD_VIDEOS.items():
        write_video(prefix / name, n, fps, w, h)
    # Broken files: empty, cut (header kept: faststart), cut (no index), random bytes.
    (prefix / "zero.mp4").write_bytes(b"")
    write_video(root / "full_fs.mp4", 60, 30, 64, 48, faststart=True)
    data = (root / "full_fs.mp4").read_bytes()
    (prefix / "truncated.mp4").write_bytes(data[: len(data) // 2])
    write_video(root / "full.mp4", 60, 30, 64, 48)
    data = (root / "full.mp4").read_bytes()
    (prefix / "cut_no_index.mp4").write_bytes(data[: len(data) // 2])
    (prefix / "random.mp4").write_bytes(np.random.RandomState(1).bytes(4096))

    ann = root / "ann"
    kin, ssv2, broken = ann / "kinetics", ann / "ssv2", ann / "broken"
    for d in (kin, ssv2, broken):
        d.mkdir(parents=True)
    kin_rows = ["long.mp4 0", "pal.mp4 1", "ntsc.mp4 2", "short.mp4 1"]
    for split in ("train", "val", "test"):
        _write_csv(kin / f"{split}.csv", kin_rows)
        _write_csv(ssv2 / f"{split}.csv", ["pal.mp4 0", "long.mp4 1", "ntsc.mp4 1"])
    broken_rows = ["long.mp4 0"] + [f"{b} 1" for b in BAD_VIDEOS] + ["pal.mp4 1"]
    for split in ("train", "val", "test"):
        _write_csv(broken / f"{split}.csv", broken_rows)
    return types.SimpleNamespace(
        root=str(root), prefix=str(prefix), ann=str(ann),
        good={k: os.path.join(prefix, k) for k in GOOD_VIDEOS},
        bad={k: os.path.join(prefix, k) for k in BAD_VIDEOS},
        kinetics_rows=kin_rows, specs=dict(GOOD_VIDEOS), read_code=read_code,
        frame_code=frame_code)


class OffsetTransform:
    """A tiny stand-in for the clip recipe: nearest resize to `size`, [0, 1] floats plus
    a random offset in [0, 0.01) drawn from the generator (so samples differ)."""

    def __init__(self, size=16):
        self.size = size

    def __call__(self, clip, generator_or_spatial):
        import torch
        import torch.nn.functional as F
        x = clip.permute(3, 0, 1, 2).float().div(255)  # [3, T, H, W]
        x = F.interpolate(x[None], size=(x.shape[1], self.size, self.size), mode="nearest")[0]
        if isinstance(generator_or_spatial, torch.Generator):
            return x + 0.01 * torch.rand((), generator=generator_or_spatial)
        return x  # test mode: spatial index (ignored)


@pytest.fixture
def offset_transform():
    return OffsetTransform()
