"""JSON stat lines through real logging, TensorBoard event files read back by tensorboard."""
import logging
import os

import pytest
import torch

from multitrain.config import get_cfg
from multitrain.engine.writers import (StatsWriter, build_tensorboard_writer, format_json_stats,
                                       log_json_stats, parse_json_stats, tensorboard_log_dir,
                                       write_json_stats)
from multitrain.utils.logging import LOG_FILENAME, setup_logging


def read_scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_format_and_parse_round_trip():
    line = format_json_stats({"_type": "train", "loss": torch.tensor(0.123456789),
                              "lr": 2e-4, "per_ds": {"k400": 1.0}, "bad": float("nan"), "it": 3})
    assert line.startswith("json_stats: ")
    (back,) = parse_json_stats(["[12/01 10:00:00][INFO] x.py: 1: " + line, "other line"])
    assert back == {"_type": "train", "loss": 0.123457, "lr": 0.0002, "per_ds": {"k400": 1.0},
                    "bad": "nan", "it": 3}


def test_stat_lines_reach_rank0_log_file(tmp_path, restore_logging):
    setup_logging(str(tmp_path), rank=0)
    log_json_stats({"loss": 1.5})
    write_json_stats("test", {"top1": 80.0})
    for h in logging.getLogger().handlers:
        h.flush()
    with open(tmp_path / LOG_FILENAME) as f:
        stats = parse_json_stats(f)
    assert stats == [{"loss": 1.5}, {"_type": "test", "top1": 80.0}]


def test_other_ranks_only_warn(tmp_path, restore_logging, capsys):
    setup_logging(str(tmp_path), rank=1)
    logging.getLogger("multitrain.x").info("hidden info")
    logging.getLogger("multitrain.x").warning("visible warning")
    err = capsys.readouterr().err
    assert "[rank 1]" in err and "visible warning" in err and "hidden info" not in err
    assert not os.path.exists(tmp_path / LOG_FILENAME)
    setup_logging(str(tmp_path), rank=0)  # re-setup replaces, does not duplicate, handlers
    setup_logging(str(tmp_path), rank=0)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_multitrain_handler", False)]
    assert len(ours) == 2  # console + file


def test_tensorboard_event_files_are_readable(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TRAIN.DATASET = "multi_dataset_seq"
    assert build_tensorboard_writer(cfg) is None  # TENSORBOARD.ENABLE False
    cfg.TENSORBOARD.ENABLE = True
    assert build_tensorboard_writer(cfg, rank=1) is None
    assert tensorboard_log_dir(cfg) == os.path.join(str(tmp_path), "runs-multi_dataset_seq")
    cfg.TENSORBOARD.LOG_DIR = "tb"
    with build_tensorboard_writer(cfg) as tb:
        for step in range(3):
            tb.add_scalars({"loss": 1.0 / (step + 1), "lr": torch.tensor(0.1), "name": "x",
                            "nan": float("nan")}, step, prefix="Train/")
    scalars = read_scalars(str(tmp_path / "tb"))
    assert set(scalars) == {"Train/loss", "Train/lr"}
    assert [s for s, _ in scalars["Train/loss"]] == [0, 1, 2]
    assert [v for _, v in scalars["Train/loss"]] == pytest.approx([1.0, 0.5, 1 / 3])


def test_stats_writer_json_and_tensorboard(tmp_path, restore_logging):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TENSORBOARD.ENABLE = True
    cfg.TENSORBOARD.LOG_DIR = "tb"
    setup_logging(str(tmp_path), rank=0)
    w = StatsWriter(cfg, rank=0, iters_per_epoch=10)
    w.write("train", 0.5, {"loss": 2.0, "step": "5/10"})
    w.epoch_summary(0, {"replaced_videos": 3})
    w.close()
    StatsWriter(cfg, rank=1).write("train", 0.5, {"loss": 99.0})  # silent on rank 1
    for h in logging.getLogger().handlers:
        h.flush()
    with open(tmp_path / LOG_FILENAME) as f:
        stats = parse_json_stats(f)
    assert stats == [{"_type": "train", "epoch": 0.5, "loss": 2.0, "step": "5/10"},
                     {"_type": "train_epoch", "epoch": 1, "replaced_videos": 3}]
    scalars = read_scalars(str(tmp_path / "tb"))
    assert scalars["train/loss"] == [(5, 2.0)]
    assert scalars["train_epoch/replaced_videos"] == [(10, 3.0)]


@pytest.mark.slow
def test_trainer_closes_its_tensorboard_files(small_corpus, tmp_path, restore_logging):
    """After `Trainer.train` returns, TensorBoard's writer thread has ended (the writer was
    closed) and the event file holds every scalar of the run."""
    import threading

    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    from mt_testing import DEMO_CONFIG, corpus_overrides

    from multitrain.config import load_config
    from multitrain.engine.trainer import Trainer

    opts = corpus_overrides(small_corpus, str(tmp_path)) + [
        "TENSORBOARD.ENABLE", True, "TENSORBOARD.LOG_DIR", "tb", "NUM_GPUS", 0,
        "TRAIN.BATCH_SIZE", 2, "TRAIN.MAX_ITERS_PER_EPOCH", 1, "SOLVER.MAX_EPOCH", 1,
        "TRAIN.AUTO_RESUME", False, "TEST.ENABLE", False, "DATA_LOADER.NUM_WORKERS", 0,
        "LOG_PERIOD", 1, "LOG_MODEL_INFO", False]
    writer_threads = {t for t in threading.enumerate() if isinstance(t, _AsyncWriterThread)}
    trainer = Trainer(load_config(DEMO_CONFIG, opts))
    trainer.train()
    started = {t for t in threading.enumerate() if isinstance(t, _AsyncWriterThread)}
    assert not started - writer_threads
    scalars = read_scalars(str(tmp_path / "tb"))
    assert [step for step, _ in scalars["train/loss"]] == [trainer.steps_per_epoch]
    assert "train_epoch/replaced_videos" in scalars and any(t.startswith("val/") for t in scalars)
