"""The synthetic corpus: layout, real decodable files, and classes that the pixels prove.

The truth is computed from decoded pixels (the coloured object's mean colour and centroid
trajectory), then checked against each dataset's labels through hand-written readings of
the class NAMES, so neither the labels nor relations.json are trusted on the generator's
word.
"""
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from multitrain.decoding.decoder import open_video
from multitrain.preparation.h264 import rgb_to_yuv420p
from multitrain.preparation.synthetic import (
    CORPUS_FORMAT, DATASETS, VideoSpec, make_synthetic_corpus, read_corpus_summary, render_video,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = {"train": 2, "val": 1, "test": 1}
PAIRS = [(a.key, b.key) for a in DATASETS for b in DATASETS if a.key != b.key]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    summary = make_synthetic_corpus(root, SMALL, seed=0, num_workers=2)
    return root, summary


def _lines(root, dirname, split):
    with open(os.path.join(root, dirname, "pyslowfast_annotations", f"{split}.csv")) as f:
        return [line.split(" ") for line in f.read().splitlines()]


def _decode(path, count=12):
    """``count`` evenly spaced frames ``[T, H, W, 3]`` (enough for a centroid trajectory)."""
    with open_video(path) as vr:
        idx = np.linspace(0, vr.num_frames - 1, count).round().astype(int).tolist()
        return vr.get_frames(idx).numpy()


@pytest.fixture(scope="module")
def decoded(corpus):
    """manifest entry -> pixel atoms of the video as is, reversed in time, flipped."""
    root, _ = corpus
    dirs = {d.key: d.dirname for d in DATASETS}
    out = []
    for e in json.load(open(os.path.join(root, "manifest.json"))):
        frames = _decode(os.path.join(root, dirs[e["dataset"]], "videos_320p", e["path"]))
        out.append((e, pixel_atom(frames), pixel_atom(frames[::-1]), pixel_atom(frames[:, :, ::-1])))
    return out


# --- reading the truth from pixels ----------------------------------------------------
def pixel_atom(frames):
    """(colour, motion) of the saturated object in ``frames [T, H, W, 3]``.

    Background and distractor are grey: the object is where max-min over RGB is large.
    Motion is the least-squares slope of the centroid over time, in short sides.
    """
    f = frames.astype(np.int16)
    sat = f.max(-1) - f.min(-1)
    mask = sat > 60
    counts = mask.sum((1, 2))
    assert (counts > 0).all(), "object not visible in some frame"
    ys, xs = np.arange(f.shape[1]), np.arange(f.shape[2])
    cy = (mask.sum(2) * ys).sum(1) / counts
    cx = (mask.sum(1) * xs).sum(1) / counts
    colour = ("red", "green", "blue")[int(np.argmax(f[mask].mean(0)))]
    t = np.arange(len(f))
    span = (len(f) - 1) / min(f.shape[1:3])
    dy, dx = np.polyfit(t, cy, 1)[0] * span, np.polyfit(t, cx, 1)[0] * span
    if max(abs(dx), abs(dy)) < 0.1:
        return colour, "still"
    if abs(dx) > abs(dy):
        return colour, "left_to_right" if dx > 0 else "right_to_left"
    return colour, "top_to_bottom" if dy > 0 else "bottom_to_top"


def class_of(dataset, classnames, atom):
    """The class of ``dataset`` whose NAME describes ``atom``, or None (independent of the
    generator's atom tables: this reads the names)."""
    colour, motion = atom
    if dataset == "kinetics":
        if motion == "still":
            return None
        axis = "horizontal" if motion in ("left_to_right", "right_to_left") else "vertical"
        return classnames.index(f"{colour}_{axis}")
    if dataset == "mit":
        return classnames.index("staying_still" if motion == "still" else f"{colour}_moving")
    words = {"left_to_right": "from left to right", "right_to_left": "from right to left",
             "top_to_bottom": "down", "bottom_to_top": "up"}
    if motion == "still":
        return None
    (name,) = [c for c in classnames if c.endswith(" " + words[motion])]
    return classnames.index(name)


# --- tests ------------------------------------------------------------------------------
def test_layout_and_counts(corpus):
    root, summary = corpus
    assert read_corpus_summary(root)["num_videos"] == summary["num_videos"] == 14 * 4
    for ds in DATASETS:
        names = json.load(open(os.path.join(root, ds.dirname, "classnames.json")))
        assert len(names) == len(set(names)) == summary["datasets"][ds.key]["num_classes"]
        for split, per_class in SMALL.items():
            lines = _lines(root, ds.dirname, split)
            labels = [int(y) for _, y in lines]
            assert np.bincount(labels, minlength=len(names)).tolist() == [per_class] * len(names)
            for rel, _ in lines:
                assert os.path.isfile(os.path.join(root, ds.dirname, "videos_320p", rel))


def test_videos_decode_with_declared_properties(corpus):
    root, _ = corpus
    manifest = json.load(open(os.path.join(root, "manifest.json")))
    dirs = {d.key: d.dirname for d in DATASETS}
    sizes, fpss, lengths = set(), set(), set()
    for e in manifest:
        with open_video(os.path.join(root, dirs[e["dataset"]], "videos_320p", e["path"])) as vr:
            assert vr.num_frames == e["num_frames"]
            assert vr.fps == pytest.approx(e["fps"])
            first = vr.get_frames([0])
        assert first.shape == (1, e["height"], e["width"], 3) and first.dtype == torch.uint8
        assert e["height"] % 2 == 0 and e["width"] % 2 == 0
        assert 24 <= e["num_frames"] <= 72
        sizes.add((e["height"], e["width"]))
        fpss.add(e["fps"])
        lengths.add(e["num_frames"])
    # Varied, as real data is.
    assert len(sizes) >= 5 and len(fpss) >= 2 and len(lengths) >= 10
    with open(os.path.join(root, "kinetics400", "videos_320p", manifest[0]["path"]), "rb") as f:
        head = f.read(64)
    assert b"ftyp" in head  # an MP4 container


def test_labels_match_pixels(decoded):
    """Every video's pixel content is what its class name says: a trivial feature
    (colour + centroid trajectory) classifies all of them correctly, so the classes are
    learnable and distinct, and the manifest's atom is right."""
    names = {d.key: d.classnames for d in DATASETS}
    for e, atom, _, _ in decoded:
        assert atom == (e["colour"], e["motion"]), e
        assert class_of(e["dataset"], names[e["dataset"]], atom) == e["label"], e


def test_relations_json_matches_class_semantics(corpus):
    """relations.json against the class names over every possible content (atom), and
    against the (label_a, class of b) pairs seen in the decoded videos."""
    root, _ = corpus
    rel = json.load(open(os.path.join(root, "relations.json")))
    names = {d.key: d.classnames for d in DATASETS}
    assert sorted(rel["relations"]) == sorted(f"{a}_{b}" for a, b in PAIRS)
    atoms = [(c, m) for c in ("red", "green", "blue") for m in
             ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top", "still")]
    for a, b in PAIRS:
        r = np.array(rel["relations"][f"{a}_{b}"])
        assert r.shape == (len(names[a]), len(names[b]))
        assert rel["datasets"][a]["classes"] == names[a]
        np.testing.assert_array_equal(r, np.array(rel["relations"][f"{b}_{a}"]).T)
        expect = np.zeros_like(r)
        for atom in atoms:
            i, j = class_of(a, names[a], atom), class_of(b, names[b], atom)
            if i is not None and j is not None:
                expect[i, j] = 1
        np.testing.assert_array_equal(r, expect)
        frac = np.array(rel["fractions"][f"{a}_{b}"])
        assert ((frac > 0) == (r > 0)).all() and (frac.sum(1) <= 1 + 1e-9).all()
    # The intended structure, spelled out.
    kin, mit, ssv2 = names["kinetics"], names["mit"], names["ssv2"]
    kinds = rel["kinds"]
    assert kinds["kinetics_mit"][kin.index("red_horizontal")][mit.index("red_moving")] == "subset"
    assert kinds["mit_kinetics"][mit.index("red_moving")][kin.index("red_vertical")] == "superset"
    assert not any(rel["relations"]["mit_ssv2"][mit.index("staying_still")])
    lr = ssv2.index("moving something from left to right")
    assert [rel["relations"]["ssv2_kinetics"][lr][kin.index(f"{c}_{ax}")]
            for c in ("red", "green", "blue") for ax in ("horizontal", "vertical")] == [1, 0] * 3
    # Pairs seen in real videos are all marked related.
    manifest = json.load(open(os.path.join(root, "manifest.json")))
    for e in manifest:
        atom = (e["colour"], e["motion"])
        for b in names:
            j = class_of(b, names[b], atom)
            if b != e["dataset"] and j is not None:
                assert rel["relations"][f"{e['dataset']}_{b}"][e["label"]][j] == 1


def test_ssv2_classes_need_time_order_and_no_flip(decoded):
    """Playing an ssv2 video backwards, or flipping a horizontal one, changes its class."""
    names = DATASETS[2].classnames
    swap = {"left_to_right": "right_to_left", "right_to_left": "left_to_right",
            "top_to_bottom": "bottom_to_top", "bottom_to_top": "top_to_bottom"}
    ssv2 = [d for d in decoded if d[0]["dataset"] == "ssv2"]
    assert len(ssv2) == 4 * sum(SMALL.values())
    for e, (colour, motion), reversed_atom, flipped_atom in ssv2:
        assert reversed_atom == (colour, swap[motion])
        assert class_of("ssv2", names, reversed_atom) != e["label"]
        if motion in ("left_to_right", "right_to_left"):
            assert flipped_atom == (colour, swap[motion])
            assert class_of("ssv2", names, flipped_atom) != e["label"]
        else:
            assert flipped_atom == (colour, motion)


def test_render_is_deterministic_and_seed_dependent():
    spec = VideoSpec("green", "bottom_to_top", 10, 25, 64, 48, (7, 1, 2, 3))
    a = np.stack(list(render_video(spec)))
    b = np.stack(list(render_video(spec)))
    c = np.stack(list(render_video(VideoSpec(**{**spec.__dict__, "seed": (8, 1, 2, 3)}))))
    assert a.shape == (10, 48, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 5


def test_rgb_to_yuv420p_is_bt601_limited_range():
    """Known colours land on their BT.601 limited-range codes; chroma is the mean of each
    2x2 block (integer arithmetic, so exact on every CPU)."""
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :2] = 255                      # white
    img[:2, 2:] = (255, 0, 0)              # red
    img[2:, 2:] = (0, 0, 255)              # blue; bottom-left stays black
    img[2, 0] = (255, 255, 255)            # one white pixel in the black block
    yuv = rgb_to_yuv420p(img)
    assert yuv.shape == (6, 4) and yuv.dtype == np.uint8
    y, u, v = yuv[:4], yuv[4:].ravel()[:4].reshape(2, 2), yuv[4:].ravel()[4:].reshape(2, 2)
    assert y[0].tolist() == [235, 235, 82, 82] and y[3].tolist() == [16, 16, 41, 41]
    assert y[2, 0] == 235
    assert u.tolist() == [[128, 90], [128, 240]] and v.tolist() == [[128, 240], [128, 110]]


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name != ".complete":  # holds the wall time
                h.update(name.encode())
                h.update(open(os.path.join(dirpath, name), "rb").read())
    return h.hexdigest()


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    counts = {"train": 1, "val": 0, "test": 0}
    make_synthetic_corpus(str(tmp_path / "a"), counts, seed=3, num_workers=0)
    make_synthetic_corpus(str(tmp_path / "b"), counts, seed=3, num_workers=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_fixed_short_side(tmp_path):
    make_synthetic_corpus(str(tmp_path), {"train": 1, "val": 0, "test": 0}, short_side=64,
                          num_workers=2)
    manifest = json.load(open(tmp_path / "manifest.json"))
    assert {min(e["width"], e["height"]) for e in manifest} == {64}
    e = manifest[0]
    with open_video(str(tmp_path / "kinetics400" / "videos_320p" / e["path"])) as vr:
        assert min(vr.get_frames([0]).shape[1:3]) == 64


def test_short_side_choices(tmp_path):
    make_synthetic_corpus(str(tmp_path), {"train": 3, "val": 0, "test": 0}, short_side=[40, 56],
                          num_workers=2)
    manifest = json.load(open(tmp_path / "manifest.json"))
    sides = {min(e["width"], e["height"]) for e in manifest}
    assert sides == {40, 56}  # 42 videos: both sizes drawn, nothing else
    assert read_corpus_summary(str(tmp_path))["short_side"] == [40, 56]


def _script(name):
    """Load a datasets/ CLI as a module, so its main(argv) runs in this process."""
    spec = importlib.util.spec_from_file_location(f"_cli_{name}", os.path.join(REPO, "datasets", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_is_idempotent_and_redoes_incomplete_runs(tmp_path, capsys):
    cli = _script("make_synthetic_corpus")
    root = tmp_path / "corpus"
    argv = [str(root), "--videos-per-class", "1", "--val-per-class", "0",
            "--test-per-class", "0", "--workers", "2"]
    assert cli.main(argv) == 0
    marker = root / ".complete"
    video = root / "ssv2" / "videos_320p" / "train_00000.mp4"
    first = (marker.stat().st_mtime_ns, video.stat().st_mtime_ns)
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "already there" in capsys.readouterr().out
    assert (marker.stat().st_mtime_ns, video.stat().st_mtime_ns) == first
    assert cli.main(argv + ["--force", "--val-per-class", "1"]) == 0
    assert video.stat().st_mtime_ns != first[1]
    assert json.loads(marker.read_text())["num_videos"] == 14 * 2
    assert len(_lines(str(root), "ssv2", "val")) == 4
    # A corpus written in another format (other bytes for the same seed) is regenerated.
    old = json.loads(marker.read_text())
    marker.write_text(json.dumps({**old, "format": CORPUS_FORMAT - 1}))
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "regenerating" in capsys.readouterr().out
    assert json.loads(marker.read_text())["format"] == CORPUS_FORMAT
    # The marker is what "complete" means: without it (a killed run) the CLI regenerates.
    marker.unlink()
    assert read_corpus_summary(str(root)) is None


@pytest.mark.slow
def test_cli_as_a_command(tmp_path):
    root = tmp_path / "corpus"
    cmd = [sys.executable, os.path.join(REPO, "datasets", "make_synthetic_corpus.py"), str(root),
           "--videos-per-class", "1", "--val-per-class", "0", "--test-per-class", "0"]
    subprocess.run(cmd, check=True, capture_output=True)
    assert read_corpus_summary(str(root))["num_videos"] == 14
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    assert "already there" in out
