"""Bad inputs: corrupt or missing videos, broken annotation lines, misspelled config keys,
checkpoints whose class counts differ from the config. Each is either skipped and counted
(training videos) or an error that names the culprit (file:line, key, path)."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from .helpers import (BAD_KINDS, DEMO_CONFIG, REPO, RUN_NET, console_of, csv_lines, damage,
                      dataset_dirs, load_tiny_cfg, read_text, stats, train_net)


@pytest.fixture
def corrupt_corpus(small_corpus, tmp_path):
    """A copy of the corpus whose train split is 4 good + one bad video of each kind for
    kinetics, 4 good videos for the others (one epoch visits every line)."""
    root = str(tmp_path / "corpus")
    shutil.copytree(small_corpus, root)
    bad = {}
    for name, (ann, videos) in dataset_dirs(root).items():
        lines = csv_lines(os.path.join(ann, "train.csv"))
        keep = lines[:4]
        if name == "kinetics":
            for kind, line in zip(BAD_KINDS, lines[4:]):
                path = os.path.join(videos, line.rsplit(" ", 1)[0])
                damage(path, kind)
                bad[kind] = path
            keep = lines[:4 + len(BAD_KINDS)]
        with open(os.path.join(ann, "train.csv"), "w") as f:
            f.write("\n".join(keep) + "\n")
    return root, bad


def test_corrupt_training_videos_are_replaced_counted_and_named(corrupt_corpus, tmp_path):
    root, bad = corrupt_corpus
    out = str(tmp_path / "run")
    train_net(root, out, ["SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0.5",
                          "TRAIN.MAX_ITERS_PER_EPOCH", "0", "MODEL.MULTI_REPLICAS", "[1, 1, 1]"])
    log = read_text(console_of(out))
    assert len(stats(out)) == 4  # 16 lines / batch 4: the epoch was complete
    summary = stats(out, "train_epoch")[-1]
    # each bad line was replaced at least once (a replacement may itself hit a bad file)
    assert summary["replaced_videos"] >= len(bad), summary
    for kind, path in bad.items():
        assert re.search(rf"skipping bad video {re.escape(path)} \(.+\)", log), f"{kind}: {path}"


def _test_cfg(root, out, extra=()):
    ann, videos = dataset_dirs(root)["kinetics"]
    return load_tiny_cfg(root, out, ["TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
                                     "TEST.DATASET", "kinetics", "DATA.NUM_CLASSES", "6",
                                     "DATA.PATH_TO_DATA_DIR", ann, "DATA.PATH_PREFIX", videos,
                                     "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1",
                                     *extra])


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_test_video_is_an_error_naming_it(small_corpus, tmp_path, kind):
    from multitrain.decoding.decoder import VideoDecodeError
    from multitrain.data.loader import build_dataset

    root = str(tmp_path / "corpus")
    shutil.copytree(small_corpus, root)
    ann, videos = dataset_dirs(root)["kinetics"]
    first = csv_lines(os.path.join(ann, "test.csv"))[1].rsplit(" ", 1)[0]
    damage(os.path.join(videos, first), kind)
    ds = build_dataset(_test_cfg(root, str(tmp_path / "out")), "test")
    ds[0]  # a good video
    with pytest.raises(VideoDecodeError, match=re.escape(os.path.join(videos, first))):
        ds[ds.views_per_video]  # the damaged one


@pytest.mark.slow
def test_bad_test_video_fails_run_net_naming_it(small_corpus, reference_run, tmp_path):
    root = str(tmp_path / "corpus")
    shutil.copytree(small_corpus, root)
    ann, videos = dataset_dirs(root)["kinetics"]
    bad = os.path.join(videos, csv_lines(os.path.join(ann, "test.csv"))[1].rsplit(" ", 1)[0])
    damage(bad, "random_bytes")
    ckpt = os.path.join(reference_run, "checkpoints", "checkpoint_epoch_00002.pyth")
    out = str(tmp_path / "out")
    train_net(root, out, ["TRAIN.ENABLE", "False", "TEST.ENABLE", "True", "TEST.DATASET", "kinetics",
                          "DATA.NUM_CLASSES", "6", "DATA.PATH_TO_DATA_DIR", ann,
                          "DATA.PATH_PREFIX", videos, "TEST.CHECKPOINT_FILE_PATH", ckpt], expect_rc=1)
    assert f"cannot decode video '{bad}'" in read_text(console_of(out))


@pytest.mark.parametrize("line,error", [
    ("no_label_here.mp4", "expected 'path label'"),
    ("video.mp4 three", "label 'three' is not an integer"),
    ("video.mp4 6", "label 6 outside [0, 6)"),
])
def test_bad_annotation_line_is_an_error_naming_file_and_line(small_corpus, tmp_path, line, error):
    from multitrain.data.loader import build_dataset

    root = str(tmp_path / "corpus")
    shutil.copytree(small_corpus, root)
    csv = os.path.join(dataset_dirs(root)["kinetics"][0], "train.csv")
    lines = csv_lines(csv)
    lines.insert(2, line)
    with open(csv, "w") as f:
        f.write("\n".join(lines) + "\n")
    cfg = load_tiny_cfg(root, str(tmp_path / "out"))
    with pytest.raises(ValueError) as e:
        build_dataset(cfg, "train")
    assert f"{csv}:3: " in str(e.value) and error in str(e.value)


@pytest.mark.slow
def test_bad_annotation_line_fails_run_net_naming_file_and_line(small_corpus, tmp_path):
    root = str(tmp_path / "corpus")
    shutil.copytree(small_corpus, root)
    csv = os.path.join(dataset_dirs(root)["mit"][0], "train.csv")
    lines = csv_lines(csv)
    with open(csv, "w") as f:
        f.write("\n".join(lines[:5] + ["video.mp4 9"] + lines[5:]) + "\n")
    out = str(tmp_path / "out")
    train_net(root, out, expect_rc=1)
    assert f"{csv}:6: label 9 outside [0, 4)" in read_text(console_of(out))


def test_misspelled_config_key_is_an_error_naming_it(small_corpus, tmp_path):
    yaml = tmp_path / "typo.yaml"
    yaml.write_text(f"_BASE_: {DEMO_CONFIG}\nSOLVER:\n  BASE_LRR: 0.1\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for args, culprit in [([DEMO_CONFIG, "TRAIN.BATCH_SIZ", "4"], "TRAIN.BATCH_SIZ"),
                          ([str(yaml)], "SOLVER.BASE_LRR")]:
        r = subprocess.run([sys.executable, RUN_NET, "--cfg", *args, "OUTPUT_DIR", str(tmp_path / "o")],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"unknown config key {culprit}" in r.stderr, r.stderr
    assert f"{yaml}" in r.stderr  # the file at fault is named
    assert not os.path.exists(tmp_path / "o")  # nothing started


def _reference_ckpt(reference_run):
    return os.path.join(reference_run, "checkpoints", "checkpoint_epoch_00002.pyth")


def test_test_checkpoint_with_other_class_counts_is_an_error(small_corpus, reference_run, tmp_path):
    from multitrain.checkpoint import CheckpointError, Checkpointer
    from multitrain.models import build_model

    ckpt = _reference_ckpt(reference_run)
    cfg = _test_cfg(small_corpus, str(tmp_path / "out"), ["MODEL.MULTI_NUM_CLASSES", "[7, 4, 4]",
                                                           "DATA.NUM_CLASSES", "7",
                                                           "TEST.CHECKPOINT_FILE_PATH", ckpt])
    model = build_model(cfg)
    with pytest.raises(CheckpointError) as e:
        Checkpointer(cfg.OUTPUT_DIR, model).load_for_test(cfg)
    msg = str(e.value)
    assert ckpt in msg and "head.heads.kinetics.fc2.weight" in msg and "(6, 2048)" in msg, msg


def test_init_checkpoint_with_other_class_counts_skips_and_lists_keys(small_corpus, reference_run,
                                                                     tmp_path, caplog):
    from multitrain.checkpoint import CheckpointError, Checkpointer
    from multitrain.engine.optim import build_optimizer
    from multitrain.models import build_model

    ckpt = _reference_ckpt(reference_run)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["model_state"]
    opts = ["MODEL.MULTI_NUM_CLASSES", "[7, 4, 4]", "TRAIN.CHECKPOINT_FILE_PATH", ckpt,
            "TRAIN.AUTO_RESUME", "False"]
    cfg = load_tiny_cfg(small_corpus, str(tmp_path / "out"),
                        opts + ["TRAIN.CHECKPOINT_EPOCH_RESET", "True"])
    model = build_model(cfg)
    start = Checkpointer(cfg.OUTPUT_DIR, model, build_optimizer(model, cfg)).resume_or_init(cfg)
    assert start["mode"] == "init" and start["start_epoch"] == 0
    skipped = [r.getMessage() for r in caplog.records if "shape differs" in r.getMessage()]
    assert skipped and "head.heads.kinetics.fc2.weight" in skipped[0] and ckpt in skipped[0]
    own = model.state_dict()
    assert torch.equal(own["patch_embed.proj.weight"], saved["patch_embed.proj.weight"])
    assert own["head.heads.kinetics.fc2.weight"].shape == (7, 2048)
    # keeping the file's optimizer state is impossible: a clear error says what to do
    cfg = load_tiny_cfg(small_corpus, str(tmp_path / "out2"), opts)
    model = build_model(cfg)
    with pytest.raises(CheckpointError, match="TRAIN.CHECKPOINT_EPOCH_RESET True"):
        Checkpointer(cfg.OUTPUT_DIR, model, build_optimizer(model, cfg)).resume_or_init(cfg)
