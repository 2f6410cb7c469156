"""Turn the official K400 / MiT / SSv2 releases into our annotation layout, and resize videos.

Our layout (what our datasets read), per dataset folder ``OUT``::

    OUT/pyslowfast_annotations/{train,val,test}.csv   lines "relative/path label"
    OUT/classnames.json                               class names, index = label
    OUT/videos_320p/...                               videos, short side 320

Converters return a :class:`Prepared` (class names + ``(path, label)`` lines per split);
:func:`write_prepared` writes it. Problems in the official files raise
:class:`AnnotationError` naming the file and line (or JSON entry).

MiT and SSv2 publish no test labels, and PySlowFast evaluates Kinetics on its validation
set: when no labelled test file is given, ``test.csv`` is a copy of ``val.csv``.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .h264 import add_video_stream
from ..utils.io import atomic_write, atomic_write_text
from ..utils.parallel import pool_map

__all__ = [
    "AnnotationError", "Prepared", "KINETICS_PATTERN", "convert_kinetics", "convert_mit",
    "convert_ssv2", "write_prepared", "save_prepared", "run_prepare", "drop_missing", "target_size", "resize_video",
    "find_videos", "resize_videos", "ResizeReport", "VIDEO_EXTS",
]

# File names of the ActivityNet Kinetics crawler and the CVDF tarballs.
KINETICS_PATTERN = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
SPLITS = ("train", "val", "test")


class AnnotationError(ValueError):
    """A problem in an official annotation file; the message names the file and line."""


@dataclass
class Prepared:
    """Converted annotations: ``splits[split]`` = list of (relative video path, label)."""
    classnames: List[str]
    splits: Dict[str, List[Tuple[str, int]]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)  # e.g. "test.csv is a copy of val.csv"


def _where(path: str, line: int) -> str:
    return f"{path}:{line}"


def _check_path(rel: str, where: str) -> str:
    # The loader takes the label after the LAST separator, so paths may hold spaces;
    # an empty path or a line break would still break the CSV.
    if not rel.strip() or "\n" in rel or "\r" in rel:
        raise AnnotationError(f"{where}: video path {rel!r} is empty or spans lines")
    return rel


# ------------------------------------------------------------------------------------
# Kinetics
# ------------------------------------------------------------------------------------
def _int_time(value: str, where: str, column: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {column} {value!r} is not a number") from None
    if f != int(f):
        raise AnnotationError(f"{where}: {column} {value!r} is not a whole second")
    return int(f)


def _read_kinetics_rows(path: str, need_label: bool) -> List[Tuple[int, dict]]:
    """(line number, row dict) of an official Kinetics CSV
    (``label,youtube_id,time_start,time_end,split[,is_cc]``; test files may lack label)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        needed = {"youtube_id", "time_start", "time_end"} | ({"label"} if need_label else set())
        if not needed <= cols:
            raise AnnotationError(f"{_where(path, 1)}: header {sorted(cols)} lacks columns "
                                  f"{sorted(needed - cols)} (expected label,youtube_id,"
                                  "time_start,time_end,split)")
        return [(reader.line_num, row) for row in reader]


def convert_kinetics(train_csv: str, val_csv: str, test_csv: Optional[str] = None,
                     pattern: str = KINETICS_PATTERN) -> Prepared:
    """Official Kinetics CSVs -> our splits, classes sorted alphabetically.

    ``pattern`` formats a video path from ``youtube_id``, ``time_start``, ``time_end``
    (ints), ``label``, ``label_underscore`` (spaces -> ``_``), ``label_id`` and ``split``
    (train/val/test); e.g. ``"{label_underscore}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"``
    for per-class folders. A test CSV without labels (the original K400 release) is ignored
    and test.csv copies val.csv.
    """
    train_rows = _read_kinetics_rows(train_csv, need_label=True)
    classnames = sorted({row["label"].strip() for _, row in train_rows})
    index = {c: i for i, c in enumerate(classnames)}
    out = Prepared(classnames)
    sources = [("train", train_csv, train_rows), ("val", val_csv, None)]
    if test_csv:
        with open(test_csv, newline="") as f:
            has_label = "label" in (csv.DictReader(f).fieldnames or [])
        if has_label:
            sources.append(("test", test_csv, None))
        else:
            out.notes.append(f"{test_csv} has no label column: test.csv is a copy of val.csv")
    for split, path, rows in sources:
        rows = rows if rows is not None else _read_kinetics_rows(path, need_label=True)
        lines, seen = [], set()
        for line, row in rows:
            where = _where(path, line)
            label = (row.get("label") or "").strip()
            if label not in index:
                raise AnnotationError(f"{where}: label {label!r} is not a class of the "
                                      f"training set {train_csv}")
            fields = dict(youtube_id=row["youtube_id"].strip(), label=label,
                          label_underscore=label.replace(" ", "_"), label_id=index[label],
                          split=split, time_start=_int_time(row["time_start"], where, "time_start"),
                          time_end=_int_time(row["time_end"], where, "time_end"))
            try:
                rel = pattern.format(**fields)
            except (KeyError, ValueError, IndexError) as e:
                raise AnnotationError(f"file name pattern {pattern!r}: {e!r}; fields are "
                                      f"{sorted(fields)}") from None
            if rel not in seen:  # the official lists hold a few duplicate clips
                seen.add(rel)
                lines.append((_check_path(rel, where), index[label]))
        out.splits[split] = lines
    out.splits.setdefault("test", list(out.splits["val"]))
    return out


# ------------------------------------------------------------------------------------
# Moments in Time
# ------------------------------------------------------------------------------------
def _read_mit_categories(path: str) -> List[str]:
    """``moments_categories.txt``: one ``name,index`` per line -> names by index."""
    by_index: Dict[int, str] = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            where = _where(path, line)
            if len(row) != 2:
                raise AnnotationError(f"{where}: expected 'name,index', got {row!r}")
            try:
                idx = int(row[1])
            except ValueError:
                raise AnnotationError(f"{where}: index {row[1]!r} is not an integer") from None
            if idx in by_index:
                raise AnnotationError(f"{where}: index {idx} already used by {by_index[idx]!r}")
            by_index[idx] = row[0].strip()
    if sorted(by_index) != list(range(len(by_index))):
        raise AnnotationError(f"{path}: class indices are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _read_mit_split(path: str, index: Dict[str, int], folder: str) -> List[Tuple[str, int]]:
    """``trainingSet.csv`` / ``validationSet.csv``: ``filename,label,agree,disagree``."""
    out = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            where = _where(path, line)
            if len(row) < 2:
                raise AnnotationError(f"{where}: expected 'filename,label,...', got {row!r}")
            name, label = row[0].strip(), row[1].strip()
            if label not in index:
                raise AnnotationError(f"{where}: label {label!r} is not in the categories file")
            rel = f"{folder.rstrip('/')}/{name}" if folder else name
            out.append((_check_path(rel, where), index[label]))
    return out


def convert_mit(train_csv: str, val_csv: str, categories_txt: str,
                train_dir: str = "training", val_dir: str = "validation") -> Prepared:
    """Official Moments-in-Time CSVs -> our splits (class order of ``moments_categories.txt``).

    Paths become ``{train_dir}/{filename}`` and ``{val_dir}/{filename}`` as in the official
    ``training/`` and ``validation/`` folders (pass "" to drop the folder). test.csv copies
    val.csv: the test labels are not public.
    """
    classnames = _read_mit_categories(categories_txt)
    index = {c: i for i, c in enumerate(classnames)}
    out = Prepared(classnames)
    out.splits["train"] = _read_mit_split(train_csv, index, train_dir)
    out.splits["val"] = _read_mit_split(val_csv, index, val_dir)
    out.splits["test"] = list(out.splits["val"])
    out.notes.append("test.csv is a copy of val.csv (MiT test labels are not public)")
    return out


# ------------------------------------------------------------------------------------
# Something-Something v2
# ------------------------------------------------------------------------------------
def _load_json(path: str):
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{_where(path, e.lineno)}: not valid JSON: {e.msg}") from None


def _strip_template(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def _read_ssv2_labels(path: str) -> List[str]:
    """``labels.json`` ``{template without brackets: "index"}`` -> names by index."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected an object {{template: \"index\"}}")
    by_index = {}
    for name, idx in data.items():
        try:
            by_index[int(idx)] = name
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}: entry {name!r}: index {idx!r} is not an integer") from None
    if sorted(by_index) != list(range(len(data))):
        raise AnnotationError(f"{path}: class indices are not 0..{len(data) - 1} (or repeat)")
    return [by_index[i] for i in range(len(by_index))]


def _read_ssv2_split(path: str, index: Dict[str, int], ext: str) -> List[Tuple[str, int]]:
    """A train/validation JSON list of ``{id, label, template, placeholders}``."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of {{id, template, ...}} entries")
    out = []
    for k, entry in enumerate(data):
        where = f"{path}: entry {k}"
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise AnnotationError(f"{where}: needs 'id' and 'template', got {entry!r:.120}")
        name = _strip_template(entry["template"])
        if name not in index:
            raise AnnotationError(f"{where} (id {entry['id']}): template {entry['template']!r} "
                                  "is not in the labels file")
        out.append((_check_path(f"{entry['id']}.{ext}", where), index[name]))
    return out


def _read_ssv2_test(test_json: str, answers: str, index: Dict[str, int],
                    ext: str) -> List[Tuple[str, int]]:
    """Test ids (``[{id}]``) labelled by an answers file of ``id;class name`` lines."""
    labels = {}
    with open(answers) as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            vid, sep, name = text.rstrip("\n").partition(";")
            if not sep or _strip_template(name.strip()) not in index:
                raise AnnotationError(f"{_where(answers, line)}: expected 'id;class name' with a "
                                      f"known class, got {text.strip()!r}")
            labels[vid.strip()] = index[_strip_template(name.strip())]
    out = []
    for k, entry in enumerate(_load_json(test_json)):
        vid = str(entry.get("id", "")) if isinstance(entry, dict) else ""
        if vid not in labels:
            raise AnnotationError(f"{test_json}: entry {k}: id {vid!r} has no answer in {answers}")
        out.append((_check_path(f"{vid}.{ext}", f"{test_json}: entry {k}"), labels[vid]))
    return out


def convert_ssv2(labels_json: str, train_json: str, val_json: str,
                 test_json: Optional[str] = None, test_answers: Optional[str] = None,
                 ext: str = "webm") -> Prepared:
    """Official SSv2 JSONs -> our splits. Paths are ``{id}.{ext}``; a label is the template
    with its brackets removed, looked up in ``labels.json``. test.csv copies val.csv unless
    both the test JSON and its answers file (``id;class name`` lines) are given."""
    classnames = _read_ssv2_labels(labels_json)
    index = {c: i for i, c in enumerate(classnames)}
    out = Prepared(classnames)
    out.splits["train"] = _read_ssv2_split(train_json, index, ext)
    out.splits["val"] = _read_ssv2_split(val_json, index, ext)
    if test_json and test_answers:
        out.splits["test"] = _read_ssv2_test(test_json, test_answers, index, ext)
    else:
        out.splits["test"] = list(out.splits["val"])
        out.notes.append("test.csv is a copy of val.csv (no SSv2 test answers given)")
    return out


# ------------------------------------------------------------------------------------
# Writing, filtering
# ------------------------------------------------------------------------------------
def drop_missing(prepared: Prepared, video_root: str) -> Dict[str, List[str]]:
    """Remove (in place) the lines whose video is not under ``video_root``; return the
    removed paths per split. Downloads of K400 always miss some deleted YouTube videos."""
    missing = {}
    for split, lines in prepared.splits.items():
        keep = [(p, y) for p, y in lines if os.path.isfile(os.path.join(video_root, p))]
        missing[split] = [p for p, _ in lines if not os.path.isfile(os.path.join(video_root, p))]
        prepared.splits[split] = keep
    return missing


def write_prepared(prepared: Prepared, out_dir: str, separator: str = " ") -> Dict[str, str]:
    """Write ``out_dir/pyslowfast_annotations/{split}.csv`` and ``out_dir/classnames.json``
    (each atomically); return the written paths by name."""
    ann = os.path.join(out_dir, "pyslowfast_annotations")
    os.makedirs(ann, exist_ok=True)
    written = {}
    for split in SPLITS:
        path = os.path.join(ann, f"{split}.csv")
        atomic_write_text(path, "".join(f"{p}{separator}{y}\n" for p, y in prepared.splits[split]))
        written[split] = path
    written["classnames"] = os.path.join(out_dir, "classnames.json")
    atomic_write_text(written["classnames"], json.dumps(prepared.classnames, indent=1) + "\n")
    return written


def save_prepared(prepared: Prepared, out_dir: str, video_root: Optional[str] = None,
                  separator: str = " ") -> str:
    """What the prepare_* scripts do last: optionally drop lines whose video is not under
    ``video_root``, write the files, and return a short report (counts, notes, drops)."""
    report = []
    if video_root:
        for split, paths in drop_missing(prepared, video_root).items():
            if paths:
                report.append(f"{split}: dropped {len(paths)} lines whose video is missing "
                              f"under {video_root}, e.g. {paths[:3]}")
    written = write_prepared(prepared, out_dir, separator)
    report.insert(0, f"{len(prepared.classnames)} classes -> {written['classnames']}")
    for split in SPLITS:
        report.insert(1 + SPLITS.index(split),
                      f"{split}: {len(prepared.splits[split])} videos -> {written[split]}")
    return "\n".join(report + prepared.notes)


def run_prepare(convert: Callable[[], Prepared], out_dir: str, video_root: str = "") -> int:
    """A prepare_* script after parsing its arguments: ``convert()``, write with
    :func:`save_prepared` and print its report; exit status 0, or 1 with one line on stderr
    when the official files cannot be read or parsed."""
    try:
        prepared = convert()
    except (AnnotationError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(save_prepared(prepared, out_dir, video_root or None))
    return 0


# ------------------------------------------------------------------------------------
# Resizing (PyAV: the ffmpeg command line may not be installed)
# ------------------------------------------------------------------------------------
# Output container and encoder by file extension.
_ENCODERS = {
    ".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"), ".avi": ("avi", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
}


def target_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """(width, height) with the short side = ``short_side``, aspect kept, both even."""
    scale = short_side / float(min(width, height))

    def even(x: float) -> int:
        return max(2, int(round(x * scale / 2.0)) * 2)

    return (short_side, even(height)) if width <= height else (even(width), short_side)


# Keyframe interval of the resized videos. Training decodes a random 96-frame span (32x3);
# H.264 can only start decoding at a keyframe, so with x264's default interval (up to 250
# frames) a random start decodes ~100 frames nobody uses first. Every 32 frames costs ~6%
# more bytes and made decoding a random span ~1.6x cheaper (docs/BENCHMARKS.md, "Decoding").
DEFAULT_KEYINT = 32


# x264's "fastdecode" tuning (CAVLC instead of CABAC, no deblocking filter, no weighted
# prediction): a loader worker decodes such files faster, for bigger files (the same crf,
# so the same quantisation; figures in docs/BENCHMARKS.md, "Decoding"). Decoding is all of a worker's
# work when the clip recipe runs on the GPU (AUG.ON_DEVICE).
DEFAULT_FAST_DECODE = True


def encoder_options(codec: str, crf: int, keyint: int = DEFAULT_KEYINT,
                    fast_decode: bool = DEFAULT_FAST_DECODE) -> Dict[str, str]:
    """The encoder options of our resized videos (also used by the loader benchmarks)."""
    gop = {"g": str(int(keyint))} if keyint and keyint > 0 else {}
    if codec == "libx264":
        tune = {"tune": "fastdecode"} if fast_decode else {}
        return {"crf": str(crf), "preset": "veryfast", **tune, **gop}
    # VP9 in constant-quality mode at its fastest setting; crf scale differs from x264's.
    return {"crf": str(min(63, crf + 9)), "b": "0", "deadline": "realtime", "cpu-used": "8",
            **gop}


def resize_video(src: str, dst: str, short_side: int = 320, crf: int = 23,
                 upscale: bool = False, keyint: int = DEFAULT_KEYINT,
                 fast_decode: bool = DEFAULT_FAST_DECODE) -> str:
    """Re-encode ``src`` into ``dst`` with the short side ``short_side`` (every frame kept,
    timestamps kept, audio dropped), a keyframe at least every ``keyint`` frames (0 = the
    encoder's default), with x264's fastdecode tuning if ``fast_decode``. A video whose
    short side is already <= the target is copied unchanged unless ``upscale``. Writes a temp file then renames, so an existing
    ``dst`` is always complete. Returns "resized" or "copied"."""
    import av

    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    ext = os.path.splitext(dst)[1].lower()
    if ext not in _ENCODERS:
        raise ValueError(f"{dst}: unsupported output extension {ext!r}; use one of {sorted(_ENCODERS)}")

    def write(tmp: str) -> str:
        with av.open(src) as inp:
            if not inp.streams.video:
                raise ValueError(f"{src}: no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            w, h = vin.codec_context.width, vin.codec_context.height
            if min(w, h) <= short_side and not upscale:
                shutil.copyfile(src, tmp)
                return "copied"
            _transcode(inp, vin, tmp, ext, target_size(w, h, short_side), crf, keyint,
                       fast_decode)
        return "resized"

    return atomic_write(dst, write, suffix=ext)


def _transcode(inp, vin, path: str, ext: str, size: Tuple[int, int], crf: int,
               keyint: int = DEFAULT_KEYINT, fast_decode: bool = DEFAULT_FAST_DECODE) -> None:
    """Decode every frame of stream ``vin``, scale to ``size``, encode into ``path``."""
    import av

    fmt, codec = _ENCODERS[ext]
    rate = vin.average_rate or vin.guessed_rate or Fraction(30)
    time_base = vin.time_base or (1 / Fraction(rate))
    with av.open(path, mode="w", format=fmt) as out:
        vout = add_video_stream(out, codec, rate, size[0], size[1],
                                encoder_options(codec, crf, keyint, fast_decode))
        # The source's time base keeps every timestamp exact (variable frame rates too).
        vout.codec_context.time_base = time_base
        last = None
        for i, frame in enumerate(inp.decode(vin)):
            scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p",
                                    interpolation="AREA")
            pts = frame.pts if frame.pts is not None else int(i / (rate * time_base))
            if last is not None and pts <= last:  # broken/duplicate timestamps
                pts = last + 1
            scaled.pts, scaled.time_base, last = pts, time_base, pts
            out.mux(vout.encode(scaled))
        out.mux(vout.encode(None))


def find_videos(root: str, exts: Sequence[str] = VIDEO_EXTS) -> List[str]:
    """Relative paths of the video files under ``root`` (sorted), skipping temp files."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(tuple(exts)) and ".tmp" not in name:
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


@dataclass
class ResizeReport:
    resized: int = 0
    copied: int = 0
    skipped: int = 0  # output already there
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (source path, error)


def _resize_task(task: Tuple[str, str, int, int, int, bool]) -> Tuple[str, str, str]:
    src, dst, short_side, crf, keyint, fast_decode = task
    try:
        return src, resize_video(src, dst, short_side, crf, keyint=keyint,
                                 fast_decode=fast_decode), ""
    except Exception as e:  # noqa: BLE001 - every failure is reported with its file
        return src, "failed", f"{type(e).__name__}: {e}"


def resize_videos(src_root: str, dst_root: str, short_side: int = 320, workers: int = 0,
                  crf: int = 23, files: Optional[Iterable[str]] = None, out_ext: str = "",
                  progress: bool = True, keyint: int = DEFAULT_KEYINT,
                  fast_decode: bool = DEFAULT_FAST_DECODE) -> ResizeReport:
    """Resize every video under ``src_root`` into the same relative path under ``dst_root``
    (``out_ext`` such as ".mp4" changes the extension), in parallel over files.

    Outputs that already exist are skipped (writes are atomic, so they are complete).
    ``workers`` <= 0 means all cores. Failures are collected, never raised.
    """
    rels = sorted(files) if files is not None else find_videos(src_root)
    report = ResizeReport()
    tasks = []
    for rel in rels:
        dst = os.path.join(dst_root, os.path.splitext(rel)[0] + out_ext) if out_ext else \
            os.path.join(dst_root, rel)
        if os.path.isfile(dst) and os.path.getsize(dst) > 0:
            report.skipped += 1
        else:
            tasks.append((os.path.join(src_root, rel), dst, short_side, crf, keyint, fast_decode))
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    results = pool_map(_resize_task, tasks, workers, f"resize to {short_side}p", progress,
                       ordered=False, chunksize=1)
    for src, status, error in results:
        if status == "failed":
            report.failed.append((src, error))
        elif status == "copied":
            report.copied += 1
        else:
            report.resized += 1
    return report
