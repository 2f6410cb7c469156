"""Decoder: both backends on real H.264 files, and every kind of broken file."""
import pytest
import torch

from multitrain.data.decoder import PyAVReader, VideoDecodeError, open_video

BACKENDS = ["decord", "pyav"]
GOOD = ["long.mp4", "pal.mp4", "ntsc.mp4", "short.mp4"]  # see conftest.GOOD_VIDEOS


@pytest.mark.parametrize("name", GOOD)
def test_backends_agree_on_metadata_and_pixels(video_corpus, name):
    read_code = video_corpus.read_code
    frames, fps, width, height = video_corpus.specs[name]
    readers = [open_video(video_corpus.good[name], b) for b in BACKENDS]
    for r in readers:
        assert (r.num_frames, r.width, r.height) == (frames, width, height)
        assert r.fps == pytest.approx(fps, rel=1e-4)
    clips = [r.get_frames(range(frames)) for r in readers]
    for c in clips:
        assert c.dtype == torch.uint8 and c.shape == (frames, height, width, 3)
    # Same stream, same ffmpeg decoder: equal up to colour-conversion rounding.
    diff = (clips[0].int() - clips[1].int()).abs()
    assert diff.max() <= 2 and diff.float().mean() < 0.1
    # And each returned frame is the frame asked for (grey level encodes its number).
    assert [read_code(f) for f in clips[1]] == [i % 56 for i in range(frames)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_get_frames_any_order_with_repeats(video_corpus, backend):
    # long.mp4 has a key frame every 8 frames and B-frames: pyav must seek and reorder.
    idx = [70, 3, 3, 89, 44, 45, 8]
    with open_video(video_corpus.good["long.mp4"], backend) as r:
        out = r.get_frames(idx)
    assert out.shape[0] == len(idx)
    assert [video_corpus.read_code(f) for f in out] == [i % 56 for i in idx]
    assert torch.equal(out[1], out[2])


def test_pyav_decodes_only_the_needed_span(video_corpus):
    r = PyAVReader(video_corpus.good["long.mp4"])
    out = r.get_frames([75, 72])
    assert [video_corpus.read_code(f) for f in out] == [75 % 56, 72 % 56]
    # From the last key frame before 72 (key frames are at most 8 apart) to frame 75,
    # not all 76 frames from the start.
    first = r.frames_decoded
    assert 4 <= first <= 8 + 4
    r.get_frames([0, 1])
    assert r.frames_decoded == first + 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", ["zero.mp4", "truncated.mp4", "cut_no_index.mp4",
                                 "random.mp4", "missing.mp4"])
def test_broken_files_raise_naming_the_file(video_corpus, backend, bad):
    path = video_corpus.bad[bad]
    with pytest.raises(VideoDecodeError) as e:
        with open_video(path, backend) as r:
            r.get_frames(range(r.num_frames))
    assert path in str(e.value) and e.value.path == path and e.value.reason


def test_truncation_reason_is_specific(video_corpus):
    for backend in BACKENDS:
        with pytest.raises(VideoDecodeError, match="truncated"):
            open_video(video_corpus.bad["truncated.mp4"], backend)


def test_backend_names(video_corpus):
    assert isinstance(open_video(video_corpus.good["pal.mp4"], "torchvision"), PyAVReader)
    with pytest.raises(ValueError, match="DATA.DECODING_BACKEND"):
        open_video(video_corpus.good["pal.mp4"], "opencv")


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_indices_are_rejected(video_corpus, backend):
    r = open_video(video_corpus.good["short.mp4"], backend)
    with pytest.raises(ValueError, match="outside"):
        r.get_frames([0, 10])


@pytest.mark.parametrize("width", [48, 72])
def test_decord_failures_on_valid_files_fall_back_to_pyav(tmp_path, width):
    """decord2 cannot convert frames 48 or 72 pixels wide (its copy checks a padded size);
    such a valid file is decoded by PyAV instead (noted), not dropped as bad."""
    import numpy as np

    from multitrain.data.synthetic import encode_video

    path = str(tmp_path / f"w{width}.mp4")
    frames = np.random.default_rng(0).integers(0, 256, (6, 64, width, 3)).astype(np.uint8)
    encode_video(path, iter(frames), 25, width, 64)
    with open_video(path, "decord") as v, open_video(path, "pyav") as ref:
        assert v.num_frames == 6
        got = v.get_frames([4, 1, 1])
        assert got.shape == (3, 64, width, 3)
        assert torch.equal(got, ref.get_frames([4, 1, 1]))
    from multitrain.data import decoder

    assert path in decoder._PYAV_FALLBACKS
