"""VideoDataset on real files: modes, shapes, frames chosen, bad files, annotations."""
import logging
import os

import pytest
import torch

from multitrain.data.annotations import parse_annotation_csv
from multitrain.decoding.decoder import VideoDecodeError
from multitrain.data.sampling import segment_indices
from multitrain.data.sampling import test_clip_indices as views_of
from multitrain.data.video_dataset import SampleKey, VideoDataset


def make(corpus, split, dataset="kinetics", name=None, **kw):
    kw.setdefault("num_frames", 4)
    kw.setdefault("sampling_rate", 2)
    return VideoDataset(split, os.path.join(corpus.ann, dataset, f"{split}.csv"), corpus.prefix,
                        name or dataset, 3, **kw)


def codes(corpus, clip_uint8):
    return [corpus.read_code(f) for f in clip_uint8]


# --------------------------------------------------------------------------- train / val
def test_train_item_shapes_labels_and_samples(video_corpus, offset_transform):
    ds = make(video_corpus, "train", transform=offset_transform, num_samples=3)
    assert len(ds) == 4 and ds.temporal_sampling == "clip" and ds.random_flip
    item = ds[1]
    assert item["frames"].shape == (3, 3, 4, 16, 16) and item["frames"].dtype == torch.float32
    assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.01
    assert item["label"].tolist() == [1] and item["label"].dtype == torch.long
    assert item["dataset"] == "kinetics" and item["index"] == 1 and item["num_replaced"] == 0
    # The NUM_SAMPLE clips come from the same frames with independent randomness.
    f = item["frames"]
    assert not torch.equal(f[0], f[1])
    assert torch.allclose(f[0] - f[0].mean(), f[1] - f[1].mean(), atol=1e-5)


def test_items_are_reproducible_per_epoch_and_index(video_corpus, offset_transform):
    ds = make(video_corpus, "train", transform=offset_transform, num_samples=2)
    a = ds[SampleKey(0, epoch=3)]["frames"]
    assert torch.equal(a, ds[SampleKey(0, epoch=3)]["frames"])
    ds.set_epoch(3)
    assert torch.equal(a, ds[0]["frames"])  # a bare int uses set_epoch's epoch
    others = [ds[SampleKey(0, epoch=e)]["frames"] for e in range(4, 8)]
    assert any(not torch.equal(a, o) for o in others)


def test_raw_mode_returns_uint8_frames_and_a_seed(video_corpus):
    ds = make(video_corpus, "train", transform=None, num_frames=6, sampling_rate=3)
    item = ds[0]  # long.mp4: 90 frames 96x64 at 30 fps
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (6, 64, 96, 3)
    c = codes(video_corpus, item["frames"])
    steps = [(b - a) % 56 for a, b in zip(c, c[1:])]
    # 6 frames over a span of 18 at a random integer start s: s + trunc(linspace(0, 17, 6)).
    assert steps == [3, 3, 4, 3, 4]
    assert isinstance(item["seed"], int)
    assert item["seed"] != ds[SampleKey(0, epoch=1)]["seed"]


def test_val_keeps_every_kth_line_and_one_clip(video_corpus, offset_transform):
    ds = make(video_corpus, "val", transform=offset_transform, num_samples=4, val_skip=2)
    assert ds.videos == ["long.mp4", "ntsc.mp4"]
    assert ds[1]["frames"].shape == (1, 3, 4, 16, 16)


def test_ssv2_defaults_to_segments_and_no_flip(video_corpus):
    ds = make(video_corpus, "val", dataset="ssv2", num_frames=8)
    assert ds.temporal_sampling == "segment" and ds.random_flip is False
    item = ds[0]  # pal.mp4, 50 frames: val takes segment midpoints
    assert codes(video_corpus, item["frames"]) == [i % 56 for i in segment_indices(50, 8, False)]
    assert item["flip"] is False
    over = make(video_corpus, "val", dataset="ssv2", temporal_sampling="clip", random_flip=True)
    assert over.temporal_sampling == "clip" and over.random_flip


# --------------------------------------------------------------------------- test
def test_test_items_enumerate_video_temporal_spatial(video_corpus):
    ds = make(video_corpus, "test", num_frames=8, sampling_rate=4, num_ensemble_views=3,
              num_spatial_crops=2, use_offset_sampling=True)
    assert len(ds) == 4 * 6 and ds.num_videos == 4
    item = ds[6 + 5]  # video 1 (pal.mp4: 50 frames at 25 fps), view 5
    assert (item["index"], item["view"], item["temporal_idx"], item["spatial_idx"]) == (1, 5, 2, 1)
    expected = views_of(50, 25, 8, 4, 30, num_views=3, use_offset=True)[2]
    assert codes(video_corpus, item["frames"]) == [i % 56 for i in expected]
    seen = {(ds[i]["index"], ds[i]["view"]) for i in range(len(ds))}
    assert seen == {(v, k) for v in range(4) for k in range(6)}  # nothing dropped
    assert ds.video_labels() == [[0], [1], [2], [1]]


def test_test_transform_receives_the_spatial_index(video_corpus):
    calls = []

    def transform(clip, spatial_idx):
        calls.append(spatial_idx)
        return clip.permute(3, 0, 1, 2).float()

    ds = make(video_corpus, "test", transform=transform, num_ensemble_views=2, num_spatial_crops=3)
    out = [ds[i]["frames"] for i in range(6)]
    assert calls == [0, 1, 2, 0, 1, 2] and out[0].shape == (1, 3, 4, 64, 96)


def test_test_mode_bad_file_is_an_error_naming_it(video_corpus):
    ds = make(video_corpus, "test", dataset="broken")
    assert torch.is_tensor(ds[0]["frames"])
    with pytest.raises(VideoDecodeError) as e:
        ds[1]
    assert video_corpus.bad["zero.mp4"] in str(e.value)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_test_views_are_the_frames_of_an_independent_decode(video_corpus, backend,
                                                             record_property):
    """Every test view equals what PyAV itself decodes at the sampled frame numbers:
    decord's frames where it works on this CPU, PyAV's where the reader fell back."""
    from mt_testing import assert_close_to, pyav_frames

    from multitrain.decoding import decoder

    ds = make(video_corpus, "test", num_frames=8, num_ensemble_views=2, backend=backend)
    decoded = {}
    for i in range(len(ds)):
        item = ds[i]
        path = ds.video_path(item["index"])
        n, fps, _, _ = video_corpus.specs[os.path.basename(path)]
        idx = views_of(n, fps, 8, 2, ds.target_fps, num_views=2,
                       use_offset=ds.use_offset_sampling)[item["temporal_idx"]]
        if path not in decoded:
            decoded[path] = pyav_frames(path)
        assert_close_to(item["frames"], decoded[path][list(idx)])
        assert codes(video_corpus, item["frames"]) == [j % 56 for j in idx]
    fallbacks = sum(p in decoder._PYAV_FALLBACKS for p in decoded) if backend == "decord" else 0
    record_property("decoded_by_pyav_after_decord_failed", fallbacks)


# --------------------------------------------------------------------------- bad files
def test_bad_files_in_train_are_replaced_counted_and_logged(video_corpus, caplog, offset_transform):
    ds = make(video_corpus, "train", dataset="broken", transform=offset_transform, decode_retries=2)
    good = {"long.mp4": 0, "pal.mp4": 6}
    with caplog.at_level(logging.WARNING, logger="multitrain.data.video_dataset"):
        items = [ds[i] for i in range(len(ds))]
    for i, item in enumerate(items):
        assert ds.videos[item["index"]] in good  # a good video of the SAME dataset
        assert item["dataset"] == "broken" and item["frames"].shape == (1, 3, 4, 16, 16)
        assert item["label"].tolist() == ds.labels[item["index"]]
        assert (item["num_replaced"] >= 1) == (ds.videos[i] not in good)
    assert ds.num_failed == sum(it["num_replaced"] for it in items) >= 5
    logged = caplog.text
    for path in video_corpus.bad.values():
        assert path in logged
    assert set(ds.failed_paths) == set(video_corpus.bad.values())


def test_all_bad_gives_up_with_a_clear_error(video_corpus, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("zero.mp4 0\nmissing.mp4 1\n")
    ds = VideoDataset("train", str(csv), video_corpus.prefix, "k", 2, max_replacements=5)
    with pytest.raises(RuntimeError, match="bad videos in a row"):
        ds[0]


# --------------------------------------------------------------------------- annotations
def test_annotation_parsing(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("dir/a b.mp4 3\n\nx.mp4 0\n")
    assert parse_annotation_csv(str(p), " ", 4) == [("dir/a b.mp4", [3]), ("x.mp4", [0])]
    p.write_text("a.mp4 1,3\nb.mp4 2\n")
    assert parse_annotation_csv(str(p), " ", 4, multi_label=True) == [("a.mp4", [1, 3]), ("b.mp4", [2])]
    with pytest.raises(ValueError, match="MULTI_LABEL"):
        parse_annotation_csv(str(p), " ", 4)
    p.write_text("a.mp4,2\n")
    assert parse_annotation_csv(str(p), ",", 4) == [("a.mp4", [2])]


@pytest.mark.parametrize("content, line, message", [
    ("a.mp4 1\nb.mp4\n", 2, "expected"),
    ("a.mp4 1\n\nb.mp4 cat\n", 3, "not an integer"),
    ("a.mp4 1\nb.mp4 4\n", 2, r"outside \[0, 4\)"),
    ("a.mp4 -1\n", 1, "outside"),
])
def test_annotation_errors_name_file_and_line(tmp_path, content, line, message):
    p = tmp_path / "train.csv"
    p.write_text(content)
    with pytest.raises(ValueError, match=message) as e:
        parse_annotation_csv(str(p), " ", 4)
    assert f"{p}:{line}:" in str(e.value)


def test_dataset_reports_bad_label_with_file_and_line(video_corpus, tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("long.mp4 0\npal.mp4 7\n")
    with pytest.raises(ValueError, match=f"{p}:2"):
        VideoDataset("train", str(p), video_corpus.prefix, "kinetics", 3)


# --------------------------------------------------------------------------- real recipe
def test_with_the_real_clip_recipe(video_corpus):
    pytest.importorskip("multitrain.transforms")
    from multitrain.config import get_cfg
    from multitrain.data.loader import build_loader

    cfg = get_cfg()
    cfg.TRAIN.DATASET, cfg.TEST.DATASET, cfg.NUM_GPUS = "kinetics", "kinetics", 0
    cfg.DATA.PATH_TO_DATA_DIR = os.path.join(video_corpus.ann, "kinetics")
    cfg.DATA.PATH_PREFIX, cfg.DATA.NUM_CLASSES = video_corpus.prefix, 3
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TRAIN_JITTER_SCALES = 32, 32, [40, 48]
    cfg.AUG.ENABLE, cfg.AUG.AA_TYPE, cfg.AUG.NUM_SAMPLE = True, "rand-m7-n4-mstd0.5-inc1", 2
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE, cfg.DATA_LOADER.NUM_WORKERS = 2, 3, 0
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 3
    train = next(iter(build_loader(cfg, "train")))
    x = train["inputs"]
    assert x.shape == (4, 3, 4, 32, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert not torch.equal(x[0], x[1])  # two independently augmented clips of one video
    assert train["labels"]["kinetics"][0].equal(train["labels"]["kinetics"][1])
    val = next(iter(build_loader(cfg, "val")))
    assert val["inputs"].shape == (2, 3, 4, 32, 32)
    test = next(iter(build_loader(cfg, "test")))
    assert test["inputs"].shape == (3, 3, 4, 32, 32) and test["spatial_idx"].tolist() == [0, 1, 2]
    # Normalised with DATA.MEAN / DATA.STD: grey levels map into about [-2, 2.5].
    assert -2.1 < float(test["inputs"].min()) and float(test["inputs"].max()) < 2.5
    # The three crops of the long side differ (the left one holds the textured corner).
    assert not torch.equal(test["inputs"][0], test["inputs"][2])
