"""A small synthetic video corpus in the layout of the real K400 / MiT / SSv2 data.

Three datasets play the roles of Kinetics-400, Moments-in-Time and Something-Something-v2.
Every video shows one coloured object (square or disc) over a grey, noisy, textured
background, usually with a grey distractor moving in a random direction. What a video
shows is one *atom* ``(colour, motion)``:

    colour in {red, green, blue}
    motion in {left_to_right, right_to_left, top_to_bottom, bottom_to_top, still}

A class of any dataset is a set of atoms; a video of that class shows one atom of the set,
chosen so that every atom of the class appears equally often. The label spaces differ
and are related in a known way:

- kinetics (6): colour x motion axis, e.g. ``red_horizontal`` = {red} x {l->r, r->l}.
- mit (4): ``<colour>_moving`` = the union of the two kinetics classes of that colour;
  ``staying_still`` (any colour, no motion) has no counterpart in the other datasets.
- ssv2 (4): the direction with its sign, any colour: refinements of kinetics' motion axes.
  Playing a video backwards swaps left_to_right <-> right_to_left and top <-> bottom, and a
  horizontal flip swaps left <-> right: this set needs temporal order and must never be
  flipped, as the real SSv2.

``relations.json`` holds the true relations between the label spaces (see
:func:`class_relations`). Generation is deterministic given the seed (one independent
random stream per video, so the number of workers does not change the output).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..utils.parallel import pool_map

__all__ = [
    "COLOURS", "MOTIONS", "DATASETS", "SPLITS", "VideoSpec", "SyntheticDataset",
    "class_relations", "render_video", "rgb_to_yuv420p", "encode_video", "make_synthetic_corpus",
    "read_corpus_summary", "COMPLETE_MARKER",
]

# Nominal RGB of each object colour; every video jitters it by up to +-COLOUR_JITTER.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 45, 40),
    "green": (40, 190, 60),
    "blue": (45, 85, 225),
}
COLOUR_JITTER = 25
MOTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top", "still")
MOVING = MOTIONS[:4]
SPLITS = ("train", "val", "test")
FPS_CHOICES = (24, 25, 30)
SHORT_SIDE_CHOICES = (96, 112, 128, 144, 160)
ASPECTS = (4 / 3, 16 / 9, 3 / 2, 1.0)
FRAME_RANGE = (24, 72)  # inclusive
DEFAULT_COUNTS = {"train": 24, "val": 8, "test": 8}
COMPLETE_MARKER = ".complete"
ANNOTATION_DIR = "pyslowfast_annotations"
VIDEO_DIR = "videos_320p"  # the real layout's name, whatever the actual size

Atom = Tuple[str, str]  # (colour, motion)
ShortSide = Union[None, int, Sequence[int]]  # fixed, or choices (None: SHORT_SIDE_CHOICES)


@dataclass(frozen=True)
class SyntheticDataset:
    """One synthetic dataset: its key (as in MODEL.MULTI_DATASETS), folder and classes.

    ``classes`` is a tuple of (class name, atoms); ``path_format`` names a video from its
    split and index (relative to ``videos_320p``).
    """
    key: str
    dirname: str
    classes: Tuple[Tuple[str, Tuple[Atom, ...]], ...]
    path_format: str

    @property
    def classnames(self) -> List[str]:
        return [name for name, _ in self.classes]


def _build_datasets() -> Tuple[SyntheticDataset, ...]:
    kin = []
    for c in COLOURS:
        kin.append((f"{c}_horizontal", ((c, "left_to_right"), (c, "right_to_left"))))
        kin.append((f"{c}_vertical", ((c, "top_to_bottom"), (c, "bottom_to_top"))))
    mit = [(f"{c}_moving", tuple((c, m) for m in MOVING)) for c in COLOURS]
    mit.append(("staying_still", tuple((c, "still") for c in COLOURS)))
    ssv2_names = {
        "left_to_right": "moving something from left to right",
        "right_to_left": "moving something from right to left",
        "top_to_bottom": "moving something down",
        "bottom_to_top": "moving something up",
    }
    ssv2 = [(ssv2_names[m], tuple((c, m) for c in COLOURS)) for m in MOVING]
    return (
        # Flat file names, like the real K400 and SSv2 folders.
        SyntheticDataset("kinetics", "kinetics400", tuple(kin), "{split}_{index:05d}.mp4"),
        # A sub-folder per split, like MiT's training/ and validation/ paths.
        SyntheticDataset("mit", "moments_in_time", tuple(mit), "{split}/{index:05d}.mp4"),
        SyntheticDataset("ssv2", "ssv2", tuple(ssv2), "{split}_{index:05d}.mp4"),
    )


DATASETS: Tuple[SyntheticDataset, ...] = _build_datasets()


def _relation_kind(a: frozenset, b: frozenset) -> str:
    if not a & b:
        return "none"
    if a == b:
        return "equal"
    if a < b:
        return "subset"
    if a > b:
        return "superset"
    return "overlap"


def class_relations(datasets: Sequence[SyntheticDataset] = DATASETS) -> dict:
    """The true relations between the label spaces, as stored in ``relations.json``.

    For every ordered pair ``"a_b"`` of dataset keys (a != b), with rows = classes of a:
      - ``relations[a_b]``: ``[K_a, K_b]`` of 0/1, 1 when the two classes share at least one
        atom (equal, subset, superset or overlapping), 0 when they are disjoint;
      - ``kinds[a_b]``: the same cells as words (equal/subset/superset/overlap/none), where
        "subset" means a's class is contained in b's class;
      - ``fractions[a_b]``: ``|A_i & B_j| / |A_i|``, i.e. P(the video is of b's class j |
        it is of a's class i) when a's class draws its atoms uniformly (rows sum to 1 where
        b covers all of A_i, less where part of A_i has no class in b).
    """
    out = {
        "atoms": [f"{c}/{m}" for c in COLOURS for m in MOTIONS],
        "datasets": {d.key: {"dir": d.dirname, "classes": d.classnames,
                             "atoms": [[f"{c}/{m}" for c, m in atoms] for _, atoms in d.classes]}
                     for d in datasets},
        "relations": {}, "kinds": {}, "fractions": {},
    }
    for a in datasets:
        for b in datasets:
            if a.key == b.key:
                continue
            name = f"{a.key}_{b.key}"
            sets_a = [frozenset(atoms) for _, atoms in a.classes]
            sets_b = [frozenset(atoms) for _, atoms in b.classes]
            out["kinds"][name] = [[_relation_kind(x, y) for y in sets_b] for x in sets_a]
            out["relations"][name] = [[int(bool(x & y)) for y in sets_b] for x in sets_a]
            out["fractions"][name] = [[len(x & y) / len(x) for y in sets_b] for x in sets_a]
    return out


# ------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoSpec:
    """What one video shows and how it is stored. ``seed`` seeds its own random stream."""
    colour: str
    motion: str
    num_frames: int
    fps: int
    width: int
    height: int
    seed: Tuple[int, ...]


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A grey textured background ``[H, W, 3]`` int16: low-frequency blobs, fine grain and
    a faint tint. Low saturation by design, so colour identifies the object."""
    gh, gw = rng.integers(3, 7), rng.integers(3, 9)
    coarse = rng.uniform(-50, 50, size=(gh, gw))
    ys = np.linspace(0, gh - 1, h)
    xs = np.linspace(0, gw - 1, w)
    # Separable linear interpolation of the coarse grid up to the frame size.
    rows = np.stack([np.interp(xs, np.arange(gw), coarse[i]) for i in range(gh)])  # [gh, W]
    y0 = np.minimum(ys.astype(int), gh - 2)
    fy = (ys - y0)[:, None]
    smooth = rows[y0] * (1 - fy) + rows[y0 + 1] * fy  # [H, W]
    grain = rng.integers(-10, 11, size=(h, w))
    luma = rng.uniform(95, 160) + smooth + grain
    tint = rng.integers(-8, 9, size=3)
    return np.clip(luma[..., None] + tint, 0, 255).astype(np.int16)


def _shape_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[size, size]`` bool: a square (all True) or a disc."""
    if rng.random() < 0.5:
        return np.ones((size, size), dtype=bool)
    r = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - r) ** 2 + (xx - r) ** 2 <= (r + 0.5) ** 2


def _object_track(rng: np.random.Generator, motion: str, n: int, h: int, w: int,
                  size: int) -> np.ndarray:
    """Top-left corners ``[T, 2]`` (y, x) of the object for each frame."""
    t = np.linspace(0.0, 1.0, n)
    wobble_amp = 0.03 * min(h, w)
    wobble = wobble_amp * np.sin(2 * np.pi * (rng.uniform(0.3, 1.5) * t + rng.random()))
    if motion == "still":
        # Small jitter around a fixed point: no net displacement.
        cy = rng.uniform(0.3, 0.7) * h + rng.normal(0, 0.01 * h, n)
        cx = rng.uniform(0.3, 0.7) * w + rng.normal(0, 0.01 * w, n)
    else:
        start, end = rng.uniform(0.15, 0.35), rng.uniform(0.65, 0.85)
        if motion in ("right_to_left", "bottom_to_top"):
            start, end = 1.0 - start, 1.0 - end
        along = start + (end - start) * t
        across = rng.uniform(0.3, 0.7)
        if motion in ("left_to_right", "right_to_left"):
            cy, cx = across * h + wobble, along * w
        else:
            cy, cx = along * h, across * w + wobble
    return np.stack([cy - size / 2.0, cx - size / 2.0], axis=1).round().astype(int)


def _distractor_track(rng: np.random.Generator, n: int, h: int, w: int,
                      size: int) -> np.ndarray:
    """Top-left corners ``[T, 2]`` of a grey distractor moving straight in a random
    direction, bouncing off the borders."""
    pos = np.array([rng.uniform(0, h - size), rng.uniform(0, w - size)])
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.1, 0.5) * min(h, w) / max(n - 1, 1)
    step = speed * np.array([np.sin(angle), np.cos(angle)])
    span = np.array([h - size, w - size], dtype=float)
    raw = pos[None, :] + np.arange(n)[:, None] * step[None, :]
    # Reflect into [0, span] (a triangle wave), i.e. bounce.
    folded = np.abs((raw + 2 * span) % (2 * span) - span)
    return (span - folded).round().astype(int)


def _paste(frame: np.ndarray, mask: np.ndarray, y: int, x: int, colour: np.ndarray) -> None:
    """Paint ``colour`` on ``frame[H, W, 3]`` where ``mask`` lands, clipped at the borders."""
    h, w = frame.shape[:2]
    s = mask.shape[0]
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + s, h), min(x + s, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - y:y1 - y, x0 - x:x1 - x]
    frame[y0:y1, x0:x1][m] = colour


def render_video(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Yield the frames of ``spec`` one by one, each ``[H, W, 3]`` uint8 RGB."""
    rng = np.random.default_rng(list(spec.seed))
    h, w, n = spec.height, spec.width, spec.num_frames
    short = min(h, w)
    background = _background(rng, h, w)
    colour = np.clip(np.array(COLOURS[spec.colour]) + rng.integers(
        -COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255).astype(np.int16)
    size = max(4, int(rng.uniform(0.16, 0.26) * short))
    mask = _shape_mask(rng, size)
    track = _object_track(rng, spec.motion, n, h, w, size)
    distractor = None
    if rng.random() < 0.8:
        dsize = max(3, int(rng.uniform(0.08, 0.14) * short))
        grey = rng.uniform(150, 235) if rng.random() < 0.5 else rng.uniform(20, 70)
        dcol = np.clip(grey + rng.integers(-6, 7, size=3), 0, 255).astype(np.int16)
        distractor = (_shape_mask(rng, dsize), _distractor_track(rng, n, h, w, dsize), dcol)
    flicker = rng.normal(0, 4, size=n).cumsum().clip(-15, 15)  # slow global brightness drift
    for i in range(n):
        frame = background.copy()
        if distractor is not None:
            dmask, dtrack, dcol = distractor
            _paste(frame, dmask, dtrack[i, 0], dtrack[i, 1], dcol)
        _paste(frame, mask, track[i, 0], track[i, 1], colour)
        frame += rng.integers(-8, 9, size=frame.shape, dtype=np.int16)
        frame += np.int16(round(flicker[i]))
        yield np.clip(frame, 0, 255).astype(np.uint8)


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """RGB ``[H, W, 3]`` uint8 (H, W even) -> yuv420p planes stacked ``[H * 3 // 2, W]``.

    BT.601 limited range (what decoders assume for untagged H.264), in exact integer
    arithmetic: chroma is the rounded mean of each 2x2 block. Done here rather than by
    ffmpeg's scaler, whose result depends on its thread count and SIMD unit, so a
    video's bytes depend only on its frames.
    """
    h, w = frame.shape[:2]
    f = frame.astype(np.int32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    q = f.reshape(h // 2, 2, w // 2, 2, 3).sum((1, 3))  # 2x2 sums
    r, g, b = q[..., 0], q[..., 1], q[..., 2]
    u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128
    v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128
    # PyAV's layout: the three planes flattened one after the other.
    planes = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
    return planes.astype(np.uint8).reshape(h * 3 // 2, w)


def encode_video(path: str, frames: Iterator[np.ndarray], fps: Union[int, Fraction],
                 width: int, height: int, crf: int = 25, preset: str = "veryfast") -> int:
    """Encode RGB frames ``[H, W, 3]`` uint8 as H.264 (libx264, yuv420p) in ``path``.

    Returns the number of frames written. The bytes are a function of the frames and
    arguments, on every run: the colour conversion is :func:`rgb_to_yuv420p`; libx264
    runs one thread (its output depends on the thread count; corpus generation runs one
    process per core instead) and without macroblock-tree rate control, whose SIMD code
    made repeated encodes of the same frames differ (measured: 2-3 of 8 on an AVX-512
    CPU). crf 25 without it gives about the file size of crf 23 with it.
    """
    import av  # local: only the writer needs PyAV

    if width % 2 or height % 2:
        raise ValueError(f"{path}: yuv420p needs an even width and height, got {width}x{height}")
    count = 0
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1",
                          "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            vf.pts = count
            vf.time_base = Fraction(1) / Fraction(fps)
            container.mux(stream.encode(vf))
            count += 1
        container.mux(stream.encode(None))
    return count


# ------------------------------------------------------------------------------------
# Corpus
# ------------------------------------------------------------------------------------
def _split_counts(videos_per_class: Union[None, int, Mapping[str, int]]) -> Dict[str, int]:
    if videos_per_class is None:
        return dict(DEFAULT_COUNTS)
    if isinstance(videos_per_class, int):
        n = videos_per_class
        return {"train": n, "val": max(1, n // 3), "test": max(1, n // 3)}
    counts = {s: int(videos_per_class.get(s, 0)) for s in SPLITS}
    unknown = set(videos_per_class) - set(SPLITS)
    if unknown:
        raise ValueError(f"videos_per_class: unknown split(s) {sorted(unknown)}; use {SPLITS}")
    return counts


def _plan_split(ds_index: int, ds: SyntheticDataset, split_index: int, split: str, count: int,
                seed: int, short_side: ShortSide) -> List[Tuple[str, int, VideoSpec]]:
    """(relative path, label, spec) of every video of one dataset split, in CSV order."""
    plan_rng = np.random.default_rng([seed, ds_index, split_index, 0xC0])
    items = []
    for label, (_, atoms) in enumerate(ds.classes):
        # Cycle through the class's atoms from a random offset so each appears ~equally.
        offset = int(plan_rng.integers(len(atoms)))
        items += [(label, atoms[(offset + k) % len(atoms)]) for k in range(count)]
    order = plan_rng.permutation(len(items))  # file order does not reveal the class
    plan = []
    for index, j in enumerate(order):
        label, (colour, motion) = items[j]
        if isinstance(short_side, int):
            short = short_side
        else:
            short = int(plan_rng.choice(short_side or SHORT_SIDE_CHOICES))
        long_ = _even(short * float(plan_rng.choice(ASPECTS)))
        short = _even(short)
        portrait = plan_rng.random() < 0.15
        height, width = (long_, short) if portrait else (short, long_)
        spec = VideoSpec(colour=colour, motion=motion,
                         num_frames=int(plan_rng.integers(FRAME_RANGE[0], FRAME_RANGE[1] + 1)),
                         fps=int(plan_rng.choice(FPS_CHOICES)), width=width, height=height,
                         seed=(seed, ds_index, split_index, index))
        plan.append((ds.path_format.format(split=split, index=index), label, spec))
    return plan


def _make_one(task: Tuple[str, VideoSpec]) -> Tuple[str, int]:
    """Render and encode one video atomically (temp file then rename)."""
    path, spec = task
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.mp4"
    try:
        n = encode_video(tmp, render_video(spec), spec.fps, spec.width, spec.height)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path, n


def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _run_tasks(tasks: List[Tuple[str, VideoSpec]], num_workers: int, progress: bool) -> None:
    for _ in pool_map(_make_one, tasks, num_workers, "synthetic videos", progress, ordered=False):
        pass


def make_synthetic_corpus(root: str, videos_per_class: Union[None, int, Mapping[str, int]] = None,
                          seed: int = 0, short_side: ShortSide = None,
                          num_workers: Optional[int] = None, progress: bool = False) -> dict:
    """Write the synthetic corpus under ``root`` and return its summary.

    Args:
        root: output folder; gets ``<dataset dir>/pyslowfast_annotations/{split}.csv``,
            ``<dataset dir>/videos_320p/...``, ``<dataset dir>/classnames.json``,
            ``relations.json``, ``manifest.json`` and, last, the ``.complete`` marker.
        videos_per_class: an int n (train n, val and test n // 3, at least 1) or a mapping
            ``{"train": n, "val": m, "test": k}``; default ``DEFAULT_COUNTS``.
        seed: the whole corpus is a function of the seed (and the counts and short side).
        short_side: fixed short side in pixels (e.g. 320 for loader benchmarks), or a
            list of sizes to vary among; default: varied among ``SHORT_SIDE_CHOICES``.
        num_workers: processes; default all cores; 0 or 1 runs in this process.
        progress: show a tqdm bar.
    Returns:
        dict with ``root``, ``seed``, ``counts``, ``short_side``, ``num_videos``,
        ``seconds`` and per dataset its ``dir``, ``num_classes`` and videos per split.
    """
    t0 = time.time()
    root = os.path.abspath(root)
    counts = _split_counts(videos_per_class)
    marker = os.path.join(root, COMPLETE_MARKER)
    if os.path.exists(marker):
        os.remove(marker)  # an interrupted rewrite must not look complete
    tasks, manifest = [], []
    if short_side is not None and not isinstance(short_side, int):
        short_side = [int(v) for v in short_side]  # as the JSON summary stores it
    summary = {"root": root, "seed": seed, "counts": counts, "short_side": short_side,
               "datasets": {}}
    for di, ds in enumerate(DATASETS):
        base = os.path.join(root, ds.dirname)
        summary["datasets"][ds.key] = {"dir": ds.dirname, "num_classes": len(ds.classes),
                                       "videos": {}}
        for si, split in enumerate(SPLITS):
            plan = _plan_split(di, ds, si, split, counts[split], seed, short_side)
            lines = "".join(f"{rel} {label}\n" for rel, label, _ in plan)
            _write_atomic(os.path.join(base, ANNOTATION_DIR, f"{split}.csv"), lines)
            summary["datasets"][ds.key]["videos"][split] = len(plan)
            for rel, label, spec in plan:
                tasks.append((os.path.join(base, VIDEO_DIR, rel), spec))
                manifest.append({"dataset": ds.key, "split": split, "path": rel,
                                 "label": label, **asdict(spec)})
        _write_atomic(os.path.join(base, "classnames.json"), json.dumps(ds.classnames, indent=1))
    _write_atomic(os.path.join(root, "relations.json"), json.dumps(class_relations(), indent=1))
    _write_atomic(os.path.join(root, "manifest.json"), json.dumps(manifest))
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    _run_tasks(tasks, workers, progress)
    summary["num_videos"] = len(tasks)
    summary["seconds"] = round(time.time() - t0, 2)
    _write_atomic(marker, json.dumps(summary, indent=1))
    return summary


def read_corpus_summary(root: str) -> Optional[dict]:
    """The summary stored in ``root/.complete``, or None when the corpus is not complete."""
    marker = os.path.join(root, COMPLETE_MARKER)
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        return json.load(f)
