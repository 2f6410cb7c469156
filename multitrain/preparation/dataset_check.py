"""Check a dataset before training: every annotation line and every video it names.

Used by ``tools/check_dataset.py``. Reads each ``{split}.csv`` of each dataset, reports
malformed lines and labels outside ``[0, num_classes)`` with file and line, then opens
every distinct video in parallel (decoding its first and last frame, which catches most
truncated files) and gathers frame count, fps and resolution statistics.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from ..data.annotations import AnnotationLineError, parse_annotation_line

from ..utils.parallel import pool_map

__all__ = [
    "DatasetSource", "Entry", "Problem", "VideoInfo", "CheckReport", "read_annotations",
    "probe_video", "probe_videos", "check_datasets", "sources_from_cfg", "format_report",
    "report_to_dict",
]


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset lives: its annotation folder, video prefix and class count."""
    name: str
    ann_dir: str
    prefix: str
    num_classes: int


@dataclass(frozen=True)
class Entry:
    """One annotation line: ``where`` is ``file:line``."""
    where: str
    video: str  # full path (prefix joined)
    labels: Tuple[int, ...]


@dataclass(frozen=True)
class Problem:
    kind: str  # no_csv | empty_csv | malformed | bad_label | missing | empty | corrupt
    where: str  # file:line, or the video path
    detail: str


@dataclass
class VideoInfo:
    path: str
    ok: bool
    error: str = ""
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0


@dataclass
class CheckReport:
    """Per ``dataset/split``: line counts; problems; stats of the videos that opened."""
    lines: Dict[str, int] = field(default_factory=dict)
    videos: Dict[str, int] = field(default_factory=dict)
    classes_without_videos: Dict[str, List[int]] = field(default_factory=dict)
    problems: List[Problem] = field(default_factory=list)
    stats: Dict[str, Dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_annotations(csv_path: str, prefix: str, num_classes: int, separator: str = " ",
                     multi_label: bool = False) -> Tuple[List[Entry], List[Problem]]:
    """Parse ``path<sep>label`` lines with the rules of
    :func:`multitrain.data.annotations.parse_annotation_csv` (label after the LAST
    separator; ``a,b,c`` lists when ``multi_label``), but return one Problem per bad line
    instead of stopping at the first, so one run lists every bad line of the file.
    """
    entries, problems = [], []
    with open(csv_path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{csv_path}:{number}"
            try:
                item = parse_annotation_line(raw.rstrip("\r\n"), where, separator, num_classes,
                                             multi_label)
            except AnnotationLineError as e:
                problems.append(Problem(e.kind, where, e.detail))
                continue
            if item is None:
                continue
            video, labels = item[0], tuple(item[1])
            entries.append(Entry(where, os.path.join(prefix, video), labels))
    if not entries and not problems:
        problems.append(Problem("empty_csv", csv_path, "no annotation lines"))
    return entries, problems


def probe_video(path: str, backend: str = "decord") -> VideoInfo:
    """Open ``path`` with the datasets' decoder, read its metadata and decode its first
    and last frame (the decoder also compares the header's frame count with the frames
    present, which catches truncated copies)."""
    from ..decoding.decoder import VideoDecodeError, open_video

    if not os.path.isfile(path):
        return VideoInfo(path, False, "missing")
    if os.path.getsize(path) == 0:
        return VideoInfo(path, False, "empty file")
    try:
        with open_video(path, backend) as reader:
            n = int(reader.num_frames)
            if n <= 0:
                return VideoInfo(path, False, "no frames")
            frames = reader.get_frames([0, n - 1])
            if tuple(frames.shape[:1]) != (2,):
                return VideoInfo(path, False, f"decoded {tuple(frames.shape)} for 2 frames")
            return VideoInfo(path, True, "", n, float(reader.fps), int(reader.width),
                             int(reader.height))
    except VideoDecodeError as e:
        return VideoInfo(path, False, e.reason[:300])
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad file
        return VideoInfo(path, False, f"{type(e).__name__}: {e}".strip()[:300])


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _probe_task(args: Tuple[str, str]) -> VideoInfo:
    return probe_video(*args)


def probe_videos(paths: Sequence[str], backend: str = "decord", workers: int = 0,
                 progress: bool = True) -> List[VideoInfo]:
    """:func:`probe_video` over ``paths`` in a process pool; results in input order."""
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    tasks = [(p, backend) for p in paths]
    # one torch thread per worker, as torch's own DataLoader workers do after their fork
    return list(pool_map(_probe_task, tasks, workers, "checking videos", progress,
                         initializer=_worker_init if workers > 1 and len(tasks) > 1 else None,
                         chunksize=4))


def _stats(infos: Iterable[VideoInfo]) -> Dict[str, Dict[str, float]]:
    ok = [i for i in infos if i.ok]
    if not ok:
        return {}
    columns = {
        "frames": [i.num_frames for i in ok], "fps": [i.fps for i in ok],
        "width": [i.width for i in ok], "height": [i.height for i in ok],
        "short_side": [min(i.width, i.height) for i in ok],
        "seconds": [i.num_frames / i.fps if i.fps > 0 else 0.0 for i in ok],
    }
    return {k: {"min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v))}
            for k, v in columns.items()}


def check_datasets(sources: Sequence[DatasetSource], splits: Sequence[str] = ("train", "val", "test"),
                   separator: str = " ", multi_label: bool = False, backend: str = "decord",
                   workers: int = 0, progress: bool = True) -> CheckReport:
    """Check the annotations of every (dataset, split) and every distinct video they name."""
    report = CheckReport()
    entries_by_key: Dict[str, List[Entry]] = {}
    for src in sources:
        for split in splits:
            key = f"{src.name}/{split}"
            csv_path = os.path.join(src.ann_dir, f"{split}.csv")
            if not os.path.isfile(csv_path):
                report.problems.append(Problem("no_csv", csv_path, f"{key}: annotation file not found"))
                continue
            entries, problems = read_annotations(csv_path, src.prefix, src.num_classes,
                                                 separator, multi_label)
            report.problems += problems
            report.lines[key] = len(entries) + len(problems)
            entries_by_key[key] = entries
            seen = {y for e in entries for y in e.labels}
            report.classes_without_videos[key] = [c for c in range(src.num_classes) if c not in seen]
    paths = sorted({e.video for entries in entries_by_key.values() for e in entries})
    infos = {i.path: i for i in probe_videos(paths, backend, workers, progress)}
    for key, entries in entries_by_key.items():
        report.videos[key] = len(entries)
        report.stats[key] = _stats(infos[e.video] for e in entries)
        for e in entries:
            info = infos[e.video]
            if not info.ok:
                kind = {"missing": "missing", "empty file": "empty"}.get(info.error, "corrupt")
                report.problems.append(Problem(kind, e.video, f"{info.error} (listed at {e.where})"))
    report.stats["all"] = _stats(infos.values())
    return report


def sources_from_cfg(cfg) -> List[DatasetSource]:
    """The datasets a config reads. ``TRAIN.DATASET multi_dataset_seq``: each dataset of
    ``MODEL.MULTI_DATASETS`` with its ``MULTI_PATH_*`` and ``MULTI_NUM_CLASSES``.
    Otherwise (single-dataset training, or testing one dataset as in the original code's inference
    command): ``DATA.PATH_TO_DATA_DIR`` / ``DATA.PATH_PREFIX`` / ``DATA.NUM_CLASSES``."""
    m = cfg.MODEL
    if cfg.TRAIN.DATASET == "multi_dataset_seq":
        n = len(m.MULTI_DATASETS)
        if not n or len(m.MULTI_PATH_TO_DATA_DIR) != n or len(m.MULTI_NUM_CLASSES) != n:
            raise ValueError("TRAIN.DATASET multi_dataset_seq needs MODEL.MULTI_DATASETS, "
                             "MULTI_PATH_TO_DATA_DIR and MULTI_NUM_CLASSES of the same length")
        prefixes = list(m.MULTI_PATH_PREFIX) or [""] * n
        return [DatasetSource(name, d, p, int(k)) for name, d, p, k in
                zip(m.MULTI_DATASETS, m.MULTI_PATH_TO_DATA_DIR, prefixes, m.MULTI_NUM_CLASSES)]
    if not cfg.DATA.PATH_TO_DATA_DIR:
        raise ValueError("DATA.PATH_TO_DATA_DIR is empty: nothing to check (or set "
                         "TRAIN.DATASET multi_dataset_seq)")
    name = cfg.TRAIN.DATASET if cfg.TRAIN.ENABLE else cfg.TEST.DATASET
    return [DatasetSource(name, cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX,
                          int(cfg.DATA.NUM_CLASSES))]


def format_report(report: CheckReport, max_listed: int = 50) -> str:
    """Human-readable summary: counts, statistics, then up to ``max_listed`` problems."""
    out = []
    for key in sorted(report.lines):
        out.append(f"{key}: {report.lines[key]} lines, {report.videos.get(key, 0)} valid lines")
        empty = report.classes_without_videos.get(key) or []
        if empty:
            out.append(f"  warning: {len(empty)} classes have no video: {empty[:20]}"
                       + (" ..." if len(empty) > 20 else ""))
    for key, stats in report.stats.items():
        if stats:
            out.append(f"[{key}] " + "; ".join(
                f"{k} {s['min']:g}/{s['median']:g}/{s['max']:g}" for k, s in stats.items())
                + "  (min/median/max of readable videos)")
    by_kind: Dict[str, int] = {}
    for p in report.problems:
        by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
    if report.ok:
        out.append("OK: no problem found")
    else:
        out.append("PROBLEMS: " + ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())))
        for p in report.problems[:max_listed]:
            out.append(f"  [{p.kind}] {p.where}: {p.detail}")
        if len(report.problems) > max_listed:
            out.append(f"  ... {len(report.problems) - max_listed} more (use --json for all)")
    return "\n".join(out)


def report_to_dict(report: CheckReport) -> dict:
    """JSON-serialisable form of the report."""
    d = asdict(report)
    d["ok"] = report.ok
    return d
