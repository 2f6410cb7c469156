"""Training curves from a run's JSON stat lines (``json_stats: {...}`` in ``stdout.log``).

Read (see :mod:`multitrain.engine.writers`):
- ``_type`` "train": ``epoch`` (fractional), every ``loss*`` term (``loss``, ``loss_cls``,
  ``loss_proj``, ``loss_inf``, per-dataset ``loss_<dataset>`` when logged), ``lr``;
- ``_type`` "val": ``epoch`` and ``<dataset>_top1_acc`` / ``_top5_acc`` / ``mean_top1_acc``;
- ``_type`` "test": ``dataset``, ``top1_acc``, ``top5_acc`` (drawn as stars at the end).
PySlowFast's lines (``train_iter`` with ``"epoch": "3/50"``, ``"iter": "10/200"``;
``val_epoch`` with ``top1_err``) are read too.

A resumed run appends to the same log and repeats the epochs after its checkpoint: for
each x the last value logged wins.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ..engine.writers import JSON_PREFIX

__all__ = ["Curves", "find_log", "read_stats", "collect_curves", "plot_curves", "plot_run",
           "LOG_FILENAME"]

logger = logging.getLogger(__name__)

LOG_FILENAME = "stdout.log"
Series = Dict[float, float]  # x (epoch) -> y


@dataclass
class Curves:
    """What the figure shows; each series maps epoch -> value."""

    losses: Dict[str, Series] = field(default_factory=dict)
    lr: Series = field(default_factory=dict)
    val_top1: Dict[str, Series] = field(default_factory=dict)  # dataset (or "mean") -> acc
    test_top1: Dict[str, float] = field(default_factory=dict)  # dataset -> acc
    skipped_lines: int = 0

    def sorted(self, series: Series) -> Tuple[List[float], List[float]]:
        xs = sorted(series)
        return xs, [series[x] for x in xs]


def find_log(path: str) -> str:
    """``path`` itself when a file, else ``path/stdout.log``."""
    if os.path.isfile(path):
        return path
    candidate = os.path.join(path, LOG_FILENAME)
    if os.path.isdir(path) and os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(f"no log at {path} (expected a log file or a run folder holding "
                            f"{LOG_FILENAME})")


def read_stats(lines: Iterable[str]) -> Tuple[List[dict], int]:
    """Stat dicts of the ``json_stats:`` lines, and how many such lines were unreadable
    (a line cut by a crash, for instance)."""
    out, bad = [], 0
    for line in lines:
        pos = line.find(JSON_PREFIX)
        if pos < 0:
            continue
        try:
            stats = json.loads(line[pos + len(JSON_PREFIX):])
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(stats, dict):
            out.append(stats)
    return out, bad


def _number(v) -> Optional[float]:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)  # "nan" / "inf" strings written for non-finite values
    except (TypeError, ValueError):
        return None


def _fraction(v) -> Optional[Tuple[float, float]]:
    """``"3/50"`` -> (3, 50)."""
    if isinstance(v, str) and "/" in v:
        a, b = v.split("/", 1)
        try:
            return float(a), float(b)
        except ValueError:
            return None
    return None


def _epoch_of(stats: dict, phase: str) -> Optional[float]:
    """x of a stat line: our fractional ``epoch``, or PySlowFast's "e/E" (+ "i/I")."""
    e = stats.get("epoch")
    frac = _fraction(e)
    if frac is None:
        return _number(e)
    if phase == "train":  # PySlowFast: 1-based epoch, 1-based iteration
        it = _fraction(stats.get("iter"))
        return frac[0] - 1 + (it[0] / it[1] if it else 1.0)
    return frac[0]


_PHASES = {"train": "train", "train_iter": "train", "val": "val", "val_epoch": "val",
           "test": "test", "test_final": "test"}


def collect_curves(stats: Iterable[dict]) -> Curves:
    """Sort the stat dicts into the series of :class:`Curves`."""
    c = Curves()
    for s in stats:
        phase = _PHASES.get(str(s.get("_type", "")))
        if phase == "test":
            acc = _number(s.get("top1_acc"))
            if acc is None and _number(s.get("top1_err")) is not None:
                acc = 100.0 - _number(s["top1_err"])
            if acc is not None:
                c.test_top1[str(s.get("dataset", "test"))] = acc
            continue
        x = _epoch_of(s, phase or "")
        if phase is None or x is None:
            continue
        if phase == "train":
            for k, v in s.items():
                y = _number(v)
                if k.startswith("loss") and y is not None:
                    c.losses.setdefault(k, {})[x] = y
            if _number(s.get("lr")) is not None:
                c.lr[x] = _number(s["lr"])
        else:
            for k, v in s.items():
                y = _number(v)
                if y is None:
                    continue
                if k.endswith("_top1_acc"):
                    c.val_top1.setdefault(k[: -len("_top1_acc")], {})[x] = y
                elif k == "top1_err":  # PySlowFast's single-dataset validation
                    c.val_top1.setdefault("val", {})[x] = 100.0 - y
    return c


def _smooth(ys: List[float], window: int) -> List[float]:
    """Trailing moving average over ``window`` points (1 = unchanged)."""
    if window <= 1:
        return ys
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= window:
            acc -= ys[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_curves(c: Curves, out_path: Optional[str] = None, title: str = "", smooth: int = 1):
    """Draw the curves; returns the matplotlib Figure (saved to ``out_path`` as PNG when
    given). Panels, left to right, each only when it has data: training losses (one
    line per term, log scale when all positive), learning rate, validation top-1 per
    dataset (mean dashed, final test results as stars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p, has in (("loss", c.losses), ("lr", c.lr), ("val", c.val_top1 or c.test_top1))
              if has]
    if not panels:
        raise ValueError("no training, validation or test statistics found in the log")
    # Shared x: the same epoch lines up across panels.
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False,
                             sharex=True)
    for ax, panel in zip(axes[0], panels):
        if panel == "loss":
            _draw_losses(ax, c, smooth)
        elif panel == "lr":
            xs, ys = c.sorted(c.lr)
            ax.plot(xs, ys, color="tab:gray", label="lr")
            ax.set_title("learning rate")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        else:
            _draw_accuracy(ax, c)
        ax.set_xlabel("epoch")
        ax.tick_params(labelbottom=True)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if out_path:
        fig.savefig(out_path, dpi=110)
    return fig


def _draw_losses(ax, c: Curves, smooth: int) -> None:
    positive = True
    # "loss" (the total) first and thick; the terms after it.
    for name in sorted(c.losses, key=lambda n: (n != "loss", n)):
        xs, ys = c.sorted(c.losses[name])
        ys = _smooth(ys, smooth)
        positive = positive and all(y > 0 for y in ys)
        ax.plot(xs, ys, label=name, linewidth=2.0 if name == "loss" else 1.2,
                marker="." if len(xs) < 30 else None)
    if positive:
        ax.set_yscale("log")
    ax.set_title("training loss" + (f" (moving average of {smooth})" if smooth > 1 else ""))
    ax.legend(fontsize=8)


def _draw_accuracy(ax, c: Curves) -> None:
    colours = {}
    for name in sorted(c.val_top1, key=lambda n: (n == "mean", n)):
        xs, ys = c.sorted(c.val_top1[name])
        style = dict(color="black", linestyle="--") if name == "mean" else {}
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=f"{name} val top-1", **style)
        colours[name] = line.get_color()
    last = max((max(s) for s in c.val_top1.values() if s), default=1.0)
    for name, acc in c.test_top1.items():
        ax.plot([last], [acc], marker="*", markersize=12, linestyle="none",
                color=colours.get(name, None), label=f"{name} test top-1 ({acc:.1f})")
    ax.set_ylim(-2, 102)  # 0 % and 100 % stay visible
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("validation accuracy per dataset")
    ax.legend(fontsize=8)


def plot_run(path: str, out_path: Optional[str] = None, smooth: int = 1):
    """Read the log of ``path`` (a run folder or a log file), draw it into ``out_path``
    (default: ``curves.png`` beside the log). Returns (figure, curves, png path)."""
    log = find_log(path)
    with open(log, errors="replace") as f:
        stats, bad = read_stats(f)
    curves = collect_curves(stats)
    curves.skipped_lines = bad
    if bad:
        logger.warning("%s: %d unreadable json_stats lines skipped", log, bad)
    out = out_path or os.path.join(os.path.dirname(os.path.abspath(log)), "curves.png")
    title = os.path.basename(os.path.dirname(os.path.abspath(log)))
    return plot_curves(curves, out, title=title, smooth=smooth), curves, out
