"""Output writers: JSON stat lines in the log and TensorBoard scalars.

A stat line is ``json_stats: {...}`` — one JSON object per line, the format PySlowFast's
log parsers read. :func:`parse_json_stats` reads them back (tools, tests).
"""

import json
import logging
import math
import os
from typing import Iterable, List, Mapping, Optional

import torch

__all__ = ["JSON_PREFIX", "format_json_stats", "log_json_stats", "write_json_stats",
           "parse_json_stats", "TensorboardWriter", "tensorboard_log_dir",
           "build_tensorboard_writer", "StatsWriter"]

logger = logging.getLogger(__name__)

JSON_PREFIX = "json_stats: "


def _plain(value):
    """JSON-friendly value: tensors to numbers, floats to 6 significant digits, NaN/inf
    as strings (JSON has no literal for them)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return float(f"{value:.6g}")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def format_json_stats(stats: Mapping) -> str:
    """``json_stats: {...}`` for a dict of numbers/strings/tensors (key order kept)."""
    return JSON_PREFIX + json.dumps(_plain(stats))


def log_json_stats(stats: Mapping, log: Optional[logging.Logger] = None) -> str:
    """Log one stat line at INFO (rank 0's handlers decide where it goes); returns it."""
    line = format_json_stats(stats)
    (log or logger).info(line)
    return line


def write_json_stats(phase: str, stats: Mapping, log: Optional[logging.Logger] = None) -> str:
    """Log ``{"_type": phase, **stats}`` as one stat line (``_type`` as in PySlowFast's lines)."""
    return log_json_stats({"_type": phase, **stats}, log)


def parse_json_stats(lines: Iterable[str]) -> List[dict]:
    """Every stat dict found in ``lines`` (log lines; anything before the prefix ignored)."""
    out = []
    for line in lines:
        pos = line.find(JSON_PREFIX)
        if pos >= 0:
            out.append(json.loads(line[pos + len(JSON_PREFIX):]))
    return out


class TensorboardWriter:
    """Thin wrapper of ``torch.utils.tensorboard.SummaryWriter`` for scalar dicts.

    Args:
        log_dir: folder of the event files (created).
        flush_secs: how often pending events reach the disk.
    """

    def __init__(self, log_dir: str, flush_secs: int = 20):
        from torch.utils.tensorboard import SummaryWriter  # imported here: tensorboard is slow to load

        os.makedirs(log_dir, exist_ok=True)
        self.log_dir = log_dir
        self._writer = SummaryWriter(log_dir=log_dir, flush_secs=flush_secs)

    def add_scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """One scalar per entry, tagged ``prefix + name`` (e.g. ``Train/loss``); non-finite
        and non-numeric values are skipped."""
        for name, v in values.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    continue
                v = v.item()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self._writer.add_scalar(prefix + name, v, global_step=step)

    def add_text(self, tag: str, text: str, step: int = 0) -> None:
        self._writer.add_text(tag, text, global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tensorboard_log_dir(cfg) -> str:
    """``OUTPUT_DIR/TENSORBOARD.LOG_DIR``, or ``OUTPUT_DIR/runs-<TRAIN.DATASET>`` when empty
    (an absolute LOG_DIR is used as is)."""
    sub = cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}"
    return os.path.join(cfg.OUTPUT_DIR, sub)


def build_tensorboard_writer(cfg, rank: int = 0) -> Optional[TensorboardWriter]:
    """A writer on rank 0 when ``TENSORBOARD.ENABLE``, else None."""
    if not cfg.TENSORBOARD.ENABLE or rank != 0:
        return None
    return TensorboardWriter(tensorboard_log_dir(cfg))


class StatsWriter:
    """What the trainer writes per log step: a JSON stat line and TensorBoard scalars.

    Only rank 0 writes; other ranks' calls do nothing.

    Args:
        cfg: reads TENSORBOARD.ENABLE / LOG_DIR, OUTPUT_DIR, TRAIN.DATASET.
        rank: global rank.
        iters_per_epoch: TensorBoard's x axis is ``round(epoch * iters_per_epoch)``, so
            fractional epochs map to iterations; None uses 1000 (thousandths of an epoch).
    """

    def __init__(self, cfg, rank: int = 0, iters_per_epoch: Optional[int] = None):
        self.rank = rank
        self.iters_per_epoch = iters_per_epoch or 1000
        self.tb = build_tensorboard_writer(cfg, rank)

    def _step(self, epoch: float) -> int:
        return int(round(float(epoch) * self.iters_per_epoch))

    def write(self, phase: str, epoch: float, stats: Mapping) -> None:
        """Log ``{"_type": phase, "epoch": epoch, **stats}`` and add each numeric entry to
        TensorBoard as ``<phase>/<name>`` at x = epoch (scaled, see the class)."""
        if self.rank != 0:
            return
        write_json_stats(phase, {"epoch": epoch, **stats})
        if self.tb is not None:
            self.tb.add_scalars(stats, self._step(epoch), prefix=f"{phase}/")

    def epoch_summary(self, epoch: int, stats: Mapping) -> None:
        """Per-epoch totals (0-based ``epoch``), logged as phase ``train_epoch`` at the epoch's end."""
        self.write("train_epoch", epoch + 1, stats)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        """Flush and close TensorBoard's files; later writes go to the JSON log only."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
