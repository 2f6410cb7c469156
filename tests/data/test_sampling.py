"""Temporal sampling: exact conformance with the original, plus the random modes."""
import json
import os

import pytest
import torch

from multitrain.data.sampling import clip_indices, clip_span, segment_indices, train_clip_indices
from multitrain.data.sampling import test_clip_indices as views_of  # not a pytest test

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLING_JSON = os.path.join(REPO, "tests", "fixtures", "sampling.json")  # the original's indices


@pytest.fixture(scope="module")
def conformance():
    with open(SAMPLING_JSON) as f:
        return json.load(f)


def test_every_clip_case_of_the_original(conformance):
    cases = conformance["cases"]
    assert len(cases) == 168
    wrong = []
    for c in cases:
        got = views_of(c["video_frames"], c["video_fps"], c["NUM_FRAMES"],
                                c["SAMPLING_RATE"], c["TARGET_FPS"], c["NUM_ENSEMBLE_VIEWS"],
                                c["USE_OFFSET_SAMPLING"])
        if got != c["frame_indices"]:
            wrong.append({k: v for k, v in c.items() if k != "frame_indices"})
    assert not wrong, f"{len(wrong)} cases differ, first: {wrong[0]}"


def test_every_ssv2_segment_case_of_the_original(conformance):
    cases = conformance["ssv2_segment_cases"]
    assert cases
    for c in cases:
        assert segment_indices(c["video_frames"], c["NUM_FRAMES"], train=False) == \
            c["frame_indices"], c


def test_clip_span_is_a_float_rescaled_to_the_video_fps():
    assert clip_span(32, 3, 30, 30) == 96
    assert clip_span(32, 3, 30, 25) == pytest.approx(80.0)
    assert clip_span(16, 4, 30, 25) == pytest.approx(53.333, abs=1e-3)


def test_offset_views_cover_the_video_from_start_to_end():
    views = views_of(300, 30, 32, 3, 30, num_views=3, use_offset=True)
    assert views[0][0] == 0 and views[-1][-1] == 299
    center = views_of(300, 30, 32, 3, 30, num_views=1, use_offset=True)[0]
    assert center[0] == (300 - 96) // 2


def test_random_clip_reproducible_in_range_and_varied():
    def draw(seed):
        return train_clip_indices(300, 30, 8, 8, 30, torch.Generator().manual_seed(seed))

    assert draw(3) == draw(3)
    starts = {draw(s)[0] for s in range(50)}
    assert len(starts) > 20 and min(starts) >= 0 and max(starts) <= 300 - 64
    for s in range(20):
        idx = draw(s)
        assert [b - a for a, b in zip(idx, idx[1:])] == [9] * 7  # 8 frames, 8 apart at 30/30


def test_short_video_repeats_its_last_frame():
    g = torch.Generator().manual_seed(0)
    idx = train_clip_indices(10, 30, 8, 8, 30, g)  # needs 64 frames, has 10
    assert idx[0] == 0 and max(idx) == 9 and idx[-3:] == [9, 9, 9]
    for view in views_of(10, 30, 8, 8, 30, num_views=3, use_offset=False):
        assert view[0] == 0 and view[-1] == 9
    assert clip_indices(1, 30, 4, 2, 30, view=0) == [0, 0, 0, 0]


def test_segment_train_draws_one_frame_per_segment():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        idx = segment_indices(45, 8, train=True, generator=g)
        seg = 44 / 8
        for i, v in enumerate(idx):
            assert round(seg * i) <= v <= round(seg * (i + 1))
        seen.add(tuple(idx))
    assert len(seen) > 100  # random, not the midpoints
    a = segment_indices(45, 8, True, torch.Generator().manual_seed(5))
    assert a == segment_indices(45, 8, True, torch.Generator().manual_seed(5))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        clip_indices(0, 30, 8, 8, 30, view=0)
    with pytest.raises(ValueError):
        clip_indices(100, 30, 8, 8, 30, view=3, num_views=3)
    with pytest.raises(ValueError):
        clip_span(8, 8, 30, 0)


def test_segment_train_draws_every_frame_of_each_segment_uniformly():
    """Both segment ends included, each frame of a segment about equally often."""
    g = torch.Generator().manual_seed(1)
    frames, num = 45, 8
    bounds = [round(44 / 8 * i) for i in range(num + 1)]
    draws = [segment_indices(frames, num, train=True, generator=g) for _ in range(3000)]
    for i in range(num):
        lo, hi = bounds[i], bounds[i + 1]
        values = [d[i] for d in draws]
        assert set(values) == set(range(lo, hi + 1)), (i, lo, hi, sorted(set(values)))
        expected = len(values) / (hi - lo + 1)
        counts = [values.count(v) for v in range(lo, hi + 1)]
        assert all(abs(c - expected) < 0.2 * expected for c in counts), (i, counts)
