"""Preparation of the real datasets: converters on hand-made files in the official
formats (tests/data/fixtures_official/), and PyAV resizing on generated videos."""
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
import torch.nn.functional as F

from multitrain.data.annotations import parse_annotation_csv
from multitrain.decoding.decoder import open_video
from multitrain.preparation.prepare import (
    AnnotationError, convert_kinetics, convert_mit, convert_ssv2, drop_missing, resize_video,
    resize_videos, save_prepared, target_size, write_prepared,
)
from multitrain.preparation.synthetic import VideoSpec, encode_video, render_video

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures_official")
REPO = os.path.dirname(os.path.dirname(HERE))
K400, MIT, SSV2 = (os.path.join(FIX, d) for d in ("kinetics400", "moments_in_time", "ssv2"))


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_cli_{name}", os.path.join(REPO, "datasets", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Kinetics ----------------------------------------------------------------------------
def test_kinetics_classes_sorted_paths_and_test_fallback():
    p = convert_kinetics(f"{K400}/train.csv", f"{K400}/validate.csv", f"{K400}/test.csv")
    assert p.classnames == ["abseiling", "passing American football (in game)", "tasting beer", "zumba"]
    # The duplicated clip of train.csv appears once.
    assert p.splits["train"] == [
        ("--6bJUbfpnQ_000017_000027.mp4", 2), ("-3B32lodo2M_000059_000069.mp4", 0),
        ("-0mjvPQHPuo_000010_000020.mp4", 1), ("0FbFE-NOTcU_000000_000010.mp4", 2),
        ("aZ5b-Xx0_1A_000103_000113.mp4", 3)]
    assert p.splits["val"] == [("pQ-9dcWz1Hk_000035_000045.mp4", 3),
                               ("0wR5jVB-WPk_000417_000427.mp4", 0),
                               ("2dz_cN7cqeM_000000_000010.mp4", 1)]
    # The original test list has no labels: test.csv copies val.csv, and says so.
    assert p.splits["test"] == p.splits["val"]
    assert any("no label column" in n for n in p.notes)


def test_kinetics_labelled_test_and_pattern():
    pattern = "{split}/{label_underscore}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
    p = convert_kinetics(f"{K400}/train.csv", f"{K400}/validate.csv",
                         f"{K400}/test_labelled.csv", pattern=pattern)
    assert p.splits["test"] == [("test/abseiling/Uw8pxfTBAEk_000008_000018.mp4", 0),
                                ("test/zumba/0b0Jq8Iu-ZA_000140_000150.mp4", 3)]
    assert p.splits["train"][2][0] == \
        "train/passing_American_football_(in_game)/-0mjvPQHPuo_000010_000020.mp4"


def test_kinetics_errors_name_file_and_line(tmp_path):
    with pytest.raises(AnnotationError, match=r"bad_validate\.csv:3: label 'juggling fire'"):
        convert_kinetics(f"{K400}/train.csv", f"{K400}/bad_validate.csv")
    with pytest.raises(AnnotationError, match="fields are"):
        convert_kinetics(f"{K400}/train.csv", f"{K400}/validate.csv", pattern="{video_id}.mp4")
    bad = tmp_path / "train.csv"
    bad.write_text("label,youtube_id,time_start,time_end,split\nzumba,abc,1.5,11,train\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:2: time_start '1\.5'"):
        convert_kinetics(str(bad), str(bad))
    bad.write_text("name,youtube_id\nzumba,abc\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:1: header .* lacks columns"):
        convert_kinetics(str(bad), str(bad))


# --- Moments in Time ----------------------------------------------------------------------
def test_mit_conversion():
    p = convert_mit(f"{MIT}/trainingSet.csv", f"{MIT}/validationSet.csv",
                    f"{MIT}/moments_categories.txt")
    assert p.classnames == ["clapping", "opening", "adult+female+singing", "raining"]
    assert p.splits["train"][0] == ("training/opening/yt-2Xq7P1L4Wb8_95.mp4", 1)
    assert [y for _, y in p.splits["train"]] == [1, 0, 2, 3]
    assert p.splits["val"] == [("validation/raining/yt-0aJvO8k8S0E_30.mp4", 3),
                               ("validation/clapping/giphy-3o7TKsQ8MJHyTAi9Ow_1.mp4", 0)]
    assert p.splits["test"] == p.splits["val"]
    flat = convert_mit(f"{MIT}/trainingSet.csv", f"{MIT}/validationSet.csv",
                       f"{MIT}/moments_categories.txt", train_dir="", val_dir="")
    assert flat.splits["train"][0][0] == "opening/yt-2Xq7P1L4Wb8_95.mp4"


def test_mit_errors_name_file_and_line():
    with pytest.raises(AnnotationError, match=r"bad_trainingSet\.csv:2: label 'jumping'"):
        convert_mit(f"{MIT}/bad_trainingSet.csv", f"{MIT}/validationSet.csv",
                    f"{MIT}/moments_categories.txt")
    with pytest.raises(AnnotationError, match=r"bad_categories\.txt: class indices are not 0\.\.1"):
        convert_mit(f"{MIT}/trainingSet.csv", f"{MIT}/validationSet.csv", f"{MIT}/bad_categories.txt")


# --- Something-Something v2 ---------------------------------------------------------------
def test_ssv2_templates_map_to_labels():
    p = convert_ssv2(f"{SSV2}/labels.json", f"{SSV2}/train.json", f"{SSV2}/validation.json")
    assert p.classnames[1] == "Pushing something from left to right"
    assert p.splits["train"] == [("78687.webm", 0), ("42326.webm", 1), ("100904.webm", 2),
                                 ("80715.webm", 3)]
    assert p.splits["val"] == [("74225.webm", 2), ("116154.webm", 0)]
    assert p.splits["test"] == p.splits["val"]
    q = convert_ssv2(f"{SSV2}/labels.json", f"{SSV2}/train.json", f"{SSV2}/validation.json",
                     f"{SSV2}/test.json", f"{SSV2}/test-answers.csv", ext="mp4")
    assert q.splits["test"] == [("1420.mp4", 3), ("1477.mp4", 1)]


def test_ssv2_errors_name_file_and_entry(tmp_path):
    with pytest.raises(AnnotationError, match=r"bad_validation\.json: entry 1 \(id 5555\): template"):
        convert_ssv2(f"{SSV2}/labels.json", f"{SSV2}/train.json", f"{SSV2}/bad_validation.json")
    broken = tmp_path / "train.json"
    broken.write_text('[\n{"id": "1", "template": "x"},\n{"id": \n')
    with pytest.raises(AnnotationError, match=r"train\.json:4: not valid JSON"):
        convert_ssv2(f"{SSV2}/labels.json", str(broken), f"{SSV2}/validation.json")


# --- writing ------------------------------------------------------------------------------
def test_written_files_parse_with_the_loader_parser(tmp_path):
    p = convert_kinetics(f"{K400}/train.csv", f"{K400}/validate.csv")
    written = write_prepared(p, str(tmp_path))
    assert json.load(open(written["classnames"])) == p.classnames
    for split in ("train", "val", "test"):
        rows = parse_annotation_csv(written[split], " ", num_classes=len(p.classnames))
        assert rows == [(path, [label]) for path, label in p.splits[split]]


def test_drop_missing_and_cli(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "--6bJUbfpnQ_000017_000027.mp4").write_bytes(b"x")
    p = convert_kinetics(f"{K400}/train.csv", f"{K400}/validate.csv")
    missing = drop_missing(p, str(videos))
    assert p.splits["train"] == [("--6bJUbfpnQ_000017_000027.mp4", 2)]
    assert len(missing["train"]) == 4 and len(missing["val"]) == 3
    text = save_prepared(p, str(tmp_path / "out"))
    assert "train: 1 videos" in text
    # The CLIs, in process.
    out = tmp_path / "ssv2"
    assert _script("prepare_ssv2").main(["--labels", f"{SSV2}/labels.json", "--train", f"{SSV2}/train.json",
                                         "--val", f"{SSV2}/validation.json", "--out", str(out)]) == 0
    assert (out / "pyslowfast_annotations" / "train.csv").read_text().splitlines()[0] == "78687.webm 0"
    assert _script("prepare_mit").main(["--train", f"{MIT}/bad_trainingSet.csv", "--val",
                                        f"{MIT}/validationSet.csv", "--categories",
                                        f"{MIT}/moments_categories.txt", "--out", str(tmp_path / "m")]) == 1
    assert "bad_trainingSet.csv:2" in capsys.readouterr().err
    assert _script("prepare_kinetics").main(["--train", f"{K400}/train.csv", "--val", f"{K400}/validate.csv",
                                             "--out", str(tmp_path / "k"), "--video-root", str(videos)]) == 0
    assert "dropped 3 lines" in capsys.readouterr().out


# --- resizing -----------------------------------------------------------------------------
def test_target_size():
    assert target_size(1920, 1080, 320) == (568, 320)
    assert target_size(1080, 1920, 320) == (320, 568)
    assert target_size(640, 480, 320) == (426, 320)
    assert target_size(100, 100, 64) == (64, 64)


@pytest.fixture(scope="module")
def source_videos(tmp_path_factory):
    """Two real H.264 videos (landscape 25 fps, portrait 30 fps) and a corrupt one."""
    root = tmp_path_factory.mktemp("src")
    specs = {"a.mp4": VideoSpec("red", "left_to_right", 17, 25, 160, 120, (1,)),
             "sub/b.mp4": VideoSpec("blue", "still", 11, 30, 96, 128, (2,))}
    for name, spec in specs.items():
        os.makedirs(os.path.dirname(root / name), exist_ok=True)
        encode_video(str(root / name), render_video(spec), spec.fps)
    (root / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    return root, specs


def test_resize_keeps_frames_fps_and_aspect(source_videos, tmp_path):
    root, specs = source_videos
    assert resize_video(str(root / "a.mp4"), str(tmp_path / "a.mp4"), short_side=64) == "resized"
    with open_video(str(root / "a.mp4")) as src, open_video(str(tmp_path / "a.mp4")) as dst:
        assert dst.num_frames == src.num_frames == 17 and dst.fps == pytest.approx(25)
        assert dst.get_frames([0]).shape == (1, 64, 86, 3)
        src8, dst8 = src.get_frames([8])[0], dst.get_frames([8])[0]
    # Same picture, smaller: the downscaled source matches the output.
    ref = F.interpolate(src8.permute(2, 0, 1)[None].float(),
                        size=(64, 86), mode="area")[0].permute(1, 2, 0).numpy()
    assert np.abs(ref - dst8.numpy()).mean() < 8
    # Already small enough: copied byte for byte, never upscaled.
    assert resize_video(str(root / "sub/b.mp4"), str(tmp_path / "b.mp4"), short_side=128) == "copied"
    assert open(tmp_path / "b.mp4", "rb").read() == open(root / "sub/b.mp4", "rb").read()


def _keyframes(path):
    import av

    with av.open(str(path)) as c:
        return [i for i, pk in enumerate(c.demux(c.streams.video[0]))
                if pk.size and pk.is_keyframe]


def test_resize_sets_the_keyframe_interval(source_videos, tmp_path):
    """Random clip starts decode from the keyframe before them: the resizer bounds the gap."""
    root, _ = source_videos
    resize_video(str(root / "a.mp4"), str(tmp_path / "k4.mp4"), short_side=64, keyint=4)
    resize_video(str(root / "a.mp4"), str(tmp_path / "k0.mp4"), short_side=64, keyint=0)
    gaps = _keyframes(tmp_path / "k4.mp4")
    assert gaps[0] == 0 and max(b - a for a, b in zip(gaps, gaps[1:] + [17])) <= 4
    assert _keyframes(tmp_path / "k0.mp4") == [0]  # x264's default: one keyframe here


def test_resize_uses_x264_fastdecode_unless_told_not_to(source_videos, tmp_path):
    """x264 writes its settings into the stream (an SEI message): the fast-decode files use
    CAVLC and no deblocking filter; --no-fast-decode keeps x264's defaults."""
    root, _ = source_videos
    resize_video(str(root / "a.mp4"), str(tmp_path / "fast.mp4"), short_side=64)
    resize_video(str(root / "a.mp4"), str(tmp_path / "slow.mp4"), short_side=64,
                 fast_decode=False)
    fast, slow = (open(tmp_path / n, "rb").read() for n in ("fast.mp4", "slow.mp4"))
    assert b"cabac=0" in fast and b"deblock=0:" in fast
    assert b"cabac=1" in slow and b"deblock=1:" in slow
    for name in ("fast.mp4", "slow.mp4"):  # both decode to every frame
        with open_video(str(tmp_path / name)) as r:
            assert r.num_frames == 17 and r.get_frames(list(range(17))).shape[0] == 17


def test_resize_videos_parallel_skip_and_errors(source_videos, tmp_path, capsys):
    root, _ = source_videos
    out = tmp_path / "out"
    report = resize_videos(str(root), str(out), short_side=40, workers=2, progress=False)
    assert (report.resized, report.copied, report.skipped) == (2, 0, 0)
    assert [os.path.basename(p) for p, _ in report.failed] == ["bad.mp4"]
    with open_video(str(out / "sub" / "b.mp4")) as b:
        assert b.num_frames == 11 and b.get_frames([0]).shape == (1, 54, 40, 3)
        assert b.fps == pytest.approx(30)
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    again = resize_videos(str(root), str(out), short_side=40, workers=1, progress=False)
    assert (again.resized, again.skipped, len(again.failed)) == (0, 2, 1)
    # The CLI lists the failure and exits 1.
    assert _script("resize_videos").main([str(root), str(tmp_path / "cli"), "--short-side", "40",
                                          "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "bad.mp4" in err


def test_resize_to_webm_and_out_ext(source_videos, tmp_path):
    root, _ = source_videos
    shutil.copy(root / "a.mp4", tmp_path / "a.mp4")
    report = resize_videos(str(tmp_path), str(tmp_path / "o"), short_side=32, workers=1,
                           files=["a.mp4"], out_ext=".webm", progress=False)
    assert report.resized == 1
    with open_video(str(tmp_path / "o" / "a.webm")) as vr:
        assert vr.num_frames == 17 and vr.get_frames([0]).shape == (1, 32, 42, 3)
