"""tools/plot_log.py on logs written by the engine's own writers (and PySlowFast-style
lines): the figure holds the logged numbers, panel by panel, and the PNG is a real image."""
import logging
import os

import pytest

from mt_testing import DEMO_CONFIG, RUN_NET, corpus_args, load_tool, run_python

from multitrain.analysis.plot_log import collect_curves, plot_run, read_stats

plot_tool = load_tool("plot_log")

DATASETS = ("kinetics", "mit", "ssv2")
STEPS = 4  # logged train points per epoch


def train_stats(epoch, step, shift=0.0):
    """Loss terms of a multi-dataset run with both losses (values with <= 6 digits, as logged)."""
    t = epoch + step / STEPS
    return {"loss": round(3.0 / (1 + t) + shift, 4), "loss_cls": round(2.0 / (1 + t) + shift, 4),
            "loss_proj": round(0.9 / (1 + t), 4), "loss_inf": round(0.1 / (1 + t), 4),
            "lr": round(1e-3 * (1 - t / 10), 7), "data_time": 0.01, "step": f"{step}/{STEPS}"}


def val_stats(epoch):
    accs = {f"{d}_top1_acc": round(95.0 - 60.0 / (1 + epoch) - gap, 2)
            for d, gap in zip(DATASETS, (0, 12, 30))}
    stats = dict(accs)
    stats.update({f"{d}_top5_acc": 90.0 for d in DATASETS})
    stats["mean_top1_acc"] = round(sum(accs.values()) / 3, 4)
    return stats


def write_run(out_dir, epochs=4, eval_period=2, resume_from=None):
    """A run's stdout.log through the engine's StatsWriter and write_json_stats."""
    from multitrain.config import get_cfg
    from multitrain.engine.writers import StatsWriter, write_json_stats
    from multitrain.utils.logging import setup_logging

    setup_logging(str(out_dir), rank=0)
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(out_dir)
    writer = StatsWriter(cfg, rank=0, iters_per_epoch=STEPS)
    for epoch in range(resume_from or 0, epochs):
        shift = 0.5 if resume_from is not None else 0.0  # a resumed run logs other values
        for step in range(1, STEPS + 1):
            writer.write("train", epoch + step / STEPS, train_stats(epoch, step, shift))
        writer.epoch_summary(epoch, {"replaced_videos": 0, "skipped_steps": 0})
        if (epoch + 1) % eval_period == 0:
            writer.write("val", epoch + 1, val_stats(epoch + 1))
    if resume_from is None:
        write_json_stats("test", {"dataset": "kinetics", "top1_acc": 81.5, "top5_acc": 99.0})
        write_json_stats("test", {"dataset": "ssv2", "top1_acc": 64.25, "top5_acc": 98.0})
    for h in logging.getLogger().handlers:
        h.flush()
    return os.path.join(str(out_dir), "stdout.log")


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_figure_holds_the_logged_curves(tmp_path, restore_logging):
    log = write_run(tmp_path)
    with open(log, "a") as f:  # a line cut by a crash is skipped and counted
        f.write('[11/25 10:00:00][INFO] x: 1: json_stats: {"_type": "train", "epoch": 4.25, "loss": 0.\n')
    fig, curves, png = plot_run(str(tmp_path))
    assert png == os.path.join(str(tmp_path), "curves.png") and curves.skipped_lines == 1
    loss_ax, lr_ax, val_ax = fig.axes
    assert len(fig.axes) == 3
    losses = lines_by_label(loss_ax)
    assert sorted(losses) == ["loss", "loss_cls", "loss_inf", "loss_proj"]
    xs = [e + s / STEPS for e in range(4) for s in range(1, STEPS + 1)]
    assert list(losses["loss"].get_xdata()) == pytest.approx(xs)
    for name, line in losses.items():
        expected = [train_stats(e, s)[name] for e in range(4) for s in range(1, STEPS + 1)]
        assert list(line.get_ydata()) == pytest.approx(expected)
    assert loss_ax.get_yscale() == "log"  # all positive
    (lr_line,) = lr_ax.get_lines()
    assert list(lr_line.get_ydata()) == pytest.approx([train_stats(e, s)["lr"] for e in range(4)
                                                       for s in range(1, STEPS + 1)])
    vals = lines_by_label(val_ax)
    assert sorted(vals) == sorted([f"{d} val top-1" for d in DATASETS] + ["mean val top-1",
                                  "kinetics test top-1 (81.5)", "ssv2 test top-1 (64.2)"])
    for i, d in enumerate(DATASETS):
        line = vals[f"{d} val top-1"]
        assert list(line.get_xdata()) == [2.0, 4.0]
        assert list(line.get_ydata()) == pytest.approx([val_stats(2)[f"{d}_top1_acc"],
                                                        val_stats(4)[f"{d}_top1_acc"]])
    assert vals["mean val top-1"].get_linestyle() == "--"
    star = vals["kinetics test top-1 (81.5)"]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([4.0], [81.5])
    assert star.get_color() == vals["kinetics val top-1"].get_color()  # same colour per dataset
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.shape[:2] == (round(4.2 * 110), round(3 * 5.5 * 110))
    assert float(img[..., :3].std()) > 0.05


def test_resumed_run_keeps_the_last_values(tmp_path, restore_logging):
    write_run(tmp_path)
    write_run(tmp_path, resume_from=2)  # appended: epochs 2-3 again, losses 0.5 higher
    _, curves, _ = plot_run(str(tmp_path), str(tmp_path / "c.png"))
    xs, ys = curves.sorted(curves.losses["loss"])
    assert len(xs) == 4 * STEPS == len(set(xs))
    assert ys[0] == pytest.approx(train_stats(0, 1)["loss"])  # before the resume point: first run
    assert ys[-1] == pytest.approx(train_stats(3, STEPS, shift=0.5)["loss"])


def test_pyslowfast_style_lines():
    lines = [
        'json_stats: {"_type": "train_iter", "epoch": "2/10", "iter": "5/10", "loss": 1.5, "lr": 0.1}',
        'json_stats: {"_type": "train_iter", "epoch": "2/10", "iter": "10/10", "loss": 1.25, "lr": 0.1}',
        'json_stats: {"_type": "val_epoch", "epoch": "2/10", "top1_err": 30.0, "top5_err": 5.0}',
        'json_stats: {"_type": "train_iter", "epoch": "3/10", "iter": "5/10", "loss": "nan", "lr": 0.1}',
        "not a stat line",
    ]
    stats, bad = read_stats(lines)
    c = collect_curves(stats)
    assert bad == 0
    xs, ys = c.sorted(c.losses["loss"])
    assert xs == [1.5, 2.0, 2.5] and ys[:2] == [1.5, 1.25] and ys[2] != ys[2]  # NaN kept as NaN
    assert c.val_top1 == {"val": {2.0: 70.0}}


def test_cli(tmp_path, restore_logging, capsys):
    write_run(tmp_path / "run")
    out = tmp_path / "fig.png"
    assert plot_tool.main([str(tmp_path / "run" / "stdout.log"), "--out", str(out), "--smooth", "3"]) == 0
    assert out.stat().st_size > 10_000
    assert "4 loss terms over 16 points" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert plot_tool.main([str(tmp_path / "empty")]) == 1
    assert "no log at" in capsys.readouterr().err
    (tmp_path / "nolines.log").write_text("[INFO] started\n")
    assert plot_tool.main([str(tmp_path / "nolines.log")]) == 1
    assert "no training, validation or test statistics" in capsys.readouterr().err


@pytest.mark.slow
def test_log_of_a_real_training_run(small_corpus, tmp_path):
    """Two tiny epochs through tools/run_net.py, then the plot of their log."""
    out = tmp_path / "run"
    opts = corpus_args(small_corpus, str(out))
    opts += ["TRAIN.BATCH_SIZE", "4", "TRAIN.MAX_ITERS_PER_EPOCH", "2", "SOLVER.MAX_EPOCH", "2",
             "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "2", "TEST.ENABLE", "False",
             "LOG_PERIOD", "1", "LOG_MODEL_INFO", "False", "DATA_LOADER.NUM_WORKERS", "0",
             "TRAIN.AUTO_RESUME", "False", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
             "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.VAL_SKIP", "4"]
    r = run_python([RUN_NET, "--cfg", DEMO_CONFIG] + opts)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert plot_tool.main([str(out)]) == 0
    fig, curves, png = plot_run(str(out))
    assert {"loss", "loss_cls", "loss_proj", "loss_inf"} <= set(curves.losses)
    assert sorted(curves.losses["loss"]) == [0.5, 1.0, 1.5, 2.0]
    assert sorted(curves.val_top1) == ["kinetics", "mean", "mit", "ssv2"]
    assert all(sorted(s) == [1.0, 2.0] for s in curves.val_top1.values())
    assert len(fig.axes) == 3 and os.path.getsize(png) > 10_000
