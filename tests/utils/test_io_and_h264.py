"""The one atomic write (utils/io.py) and the one H.264 writer (preparation/h264.py)."""
import os

import numpy as np
import pytest

from multitrain.preparation.h264 import write_h264
from multitrain.utils.io import atomic_write, atomic_write_text
from mt_testing import pyav_frames


def test_atomic_write_replaces_and_returns(tmp_path):
    path = str(tmp_path / "sub" / "a.txt")
    atomic_write_text(path, "one\n")  # creates the folder
    assert open(path).read() == "one\n"

    def write(tmp):
        assert tmp.endswith(".bin") and os.path.dirname(tmp) == os.path.dirname(path)
        with open(tmp, "w") as f:
            f.write("two\n")
        return 7

    assert atomic_write(path, write, suffix=".bin") == 7
    assert open(path).read() == "two\n"
    assert os.listdir(tmp_path / "sub") == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = str(tmp_path / "a.txt")
    atomic_write_text(path, "old\n")

    def half_write(tmp):
        with open(tmp, "w") as f:
            f.write("par")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_write)
    assert open(path).read() == "old\n"
    assert os.listdir(tmp_path) == ["a.txt"]


def _frames(n, h=48, w=64):
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = (xx * 4 + 9 * i) % 256
        img[..., 1] = yy * 5
        img[..., 2] = 40 + 20 * i
        yield img


@pytest.mark.parametrize("exact_yuv", [False, True])
def test_write_h264_round_trip(tmp_path, exact_yuv):
    path = str(tmp_path / "v.mp4")
    n = write_h264(path, _frames(6), 25, {"crf": "10", "g": "4"}, exact_yuv=exact_yuv,
                   threads=1)
    assert n == 6
    decoded = pyav_frames(path).numpy().astype(int)
    assert decoded.shape == (6, 48, 64, 3)
    expected = np.stack(list(_frames(6))).astype(int)
    assert np.abs(decoded - expected).mean() < 4  # crf 10: close to the source


def test_exact_yuv_is_deterministic_and_needs_even_sizes(tmp_path):
    a, b = str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")
    opts = {"crf": "20", "threads": "1", "x264-params": "mbtree=0"}
    for p in (a, b):
        write_h264(p, _frames(5), 30, opts, exact_yuv=True, threads=1, container_format="mp4")
    assert open(a, "rb").read() == open(b, "rb").read()  # same code, same machine
    with pytest.raises(ValueError, match="even width and height, got 63x48"):
        write_h264(str(tmp_path / "odd.mp4"), (f[:, :63] for f in _frames(2)), 30,
                   exact_yuv=True)
    with pytest.raises(ValueError, match="no frames"):
        write_h264(str(tmp_path / "empty.mp4"), iter(()), 30)
