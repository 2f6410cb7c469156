"""One loader worker's throughput on the original code's K400 32x3 training recipe, three ways.

    python -m benchmarks.loader_speed [--video FILE.mp4] [--videos 20] [--json OUT.json]

One process, one thread (``torch.set_num_threads(1)``, as in a DataLoader worker). Per
video: decode 32 frames at rate 3 (a 96-frame span at a random start) with decord, then
``AUG.NUM_SAMPLE`` = 2 clips of crop 224 with ``rand-m7-n4-mstd0.5-inc1`` and random
erasing 0.25 (in the original's order). Measured, interleaved video by video so that
machine load hits all of them alike, with the SAME draws for (b), (c) and (d):

  (a) decode only (the workers' whole job with ``AUG.ON_DEVICE``);
  (b) decode + our tensor recipe (``TrainClipRecipe``, the paper's order);
  (c) decode + the original's per-frame PIL recipe (``benchmarks/pil_baseline.py``);
  (d) decode + our recipe with ``crop_first`` (faster, NOT the paper's recipe).

Without ``--video`` a 10 s 426x320 30 fps H.264 file with moving texture (~1 Mbit/s) is
written to a temporary folder (PyAV) with the encoder options of
``datasets/resize_videos.py``: a keyframe every ``--gop`` frames (``--gop 0``: x264's
default), x264's fastdecode tuning unless ``--no-fast-decode``. Prints videos/s and
clips/s and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch

from multitrain.preparation.h264 import write_h264
from multitrain.preparation.prepare import DEFAULT_FAST_DECODE, DEFAULT_KEYINT, encoder_options
from multitrain.transforms import TrainClipRecipe

from .pil_baseline import pil_train_clip

NUM_FRAMES, RATE, NUM_SAMPLE = 32, 3, 2


def texture_frames(seconds: float = 10.0, fps: int = 30, h: int = 320, w: int = 426):
    """Moving multi-scale texture, uint8 [h, w, 3] frames: about 0.7-1 Mbit/s in H.264 at
    crf 23, closer to real 320p videos than flat synthetic pictures (which decode several
    times faster)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h // 8 + 4, w // 8 + 4, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))
    fine = rng.integers(0, 256, (h + 64, w + 64, 3), dtype=np.uint8)
    xx = np.mgrid[0:h, 0:w][1]
    for i in range(int(seconds * fps)):
        dx, dy = i % 64, (2 * i) % 16
        img = (base[dy:dy + h, dx // 4:dx // 4 + w].astype(np.int16) // 2
               + fine[dy:dy + h, dx:dx + w] // 16
               + ((xx + 3 * i) % 128)[..., None] // 2)
        yield np.clip(img, 0, 255).astype(np.uint8)


def add_encoding_args(ap: argparse.ArgumentParser) -> None:
    """``--gop`` and ``--no-fast-decode``: how the generated videos are encoded."""
    ap.add_argument("--gop", type=int, default=DEFAULT_KEYINT,
                    help="keyframe interval of the generated videos (default: that of "
                    "datasets/resize_videos.py; 0 = x264's default, up to 250 frames)")
    ap.add_argument("--no-fast-decode", dest="fast_decode", action="store_false",
                    help="generate the videos without x264's fastdecode tuning (the "
                    "resizer's --no-fast-decode)")


def make_320p_video(path: str, seconds: float = 10.0, fps: int = 30,
                    gop: int = DEFAULT_KEYINT, fast_decode: bool = DEFAULT_FAST_DECODE) -> None:
    """:func:`texture_frames` encoded with the options of ``datasets/resize_videos.py``.
    ``gop``: keyframe interval, 0 = x264's default (up to 250); ``fast_decode``: x264's
    fastdecode tuning, as the resizer's default."""
    write_h264(path, texture_frames(seconds, fps), fps,
               encoder_options("libx264", 23, gop, fast_decode))


def decode(path: str, generator: torch.Generator) -> torch.Tensor:
    """decord: 32 frames at rate 3 from a random start -> uint8 [32, H, W, 3]."""
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    span = NUM_FRAMES * RATE
    start = int(torch.randint(max(1, len(reader) - span + 1), (), generator=generator))
    idx = [min(start + RATE * i, len(reader) - 1) for i in range(NUM_FRAMES)]
    return torch.from_numpy(reader.get_batch(idx).asnumpy())


def run(path: str, videos: int, warmup: int = 2) -> dict:
    torch.set_num_threads(1)
    recipe = TrainClipRecipe(crop_size=224, jitter_scales=(256, 320),
                             relative_scale=(0.08, 1.0), relative_aspect=(0.75, 1.3333),
                             rand_augment="rand-m7-n4-mstd0.5-inc1", interpolation="bicubic",
                             re_prob=0.25, re_mode="pixel", re_count=1, random_flip=True)
    fast = TrainClipRecipe(**{**vars_of(recipe), "crop_first": True})
    times = {k: [] for k in ("decode", "ours", "pil", "crop_first")}
    for v in range(warmup + videos):
        g = torch.Generator().manual_seed(v)
        t0 = time.perf_counter()
        frames = decode(path, g)
        t_dec = time.perf_counter() - t0
        params = [recipe.draw(g, frames.shape[1:3]) for _ in range(NUM_SAMPLE)]
        t0 = time.perf_counter()
        ours = recipe.apply_many([frames] * NUM_SAMPLE, params)  # as the dataset does
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = torch.stack([pil_train_clip(frames, p, recipe) for p in params])
        t_pil = time.perf_counter() - t0
        t0 = time.perf_counter()
        small = fast.apply_many([frames] * NUM_SAMPLE, params)
        t_fast = time.perf_counter() - t0
        assert ours.shape == ref.shape == small.shape == (NUM_SAMPLE, 3, NUM_FRAMES, 224, 224)
        if v >= warmup:
            for key, t in (("decode", t_dec), ("ours", t_dec + t_ours), ("pil", t_dec + t_pil),
                           ("crop_first", t_dec + t_fast)):
                times[key].append(t)
    return {k: float(np.mean(t)) for k, t in times.items()}


def breakdown(path: str, clips: int = 100) -> None:
    """Where (b)'s time goes: each RandAugment op and the crop/resize, per clip."""
    from collections import defaultdict

    import multitrain.transforms.geometry as geometry
    import multitrain.transforms.rand_augment as ra

    torch.set_num_threads(1)
    frames = decode(path, torch.Generator().manual_seed(0))
    recipe = TrainClipRecipe(crop_size=224, relative_scale=(0.08, 1.0),
                             relative_aspect=(0.75, 1.3333),
                             rand_augment="rand-m7-n4-mstd0.5-inc1", re_prob=0.25)
    spent, calls = defaultdict(float), defaultdict(int)

    def timed(fn, key=None):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            name = key or a[1]
            spent[name] += time.perf_counter() - t0
            calls[name] += 1
            return out
        return wrapper

    originals = ra.apply_op, geometry.resize_region
    ra.apply_op, geometry.resize_region = timed(ra.apply_op), timed(geometry.resize_region, "crop+resize")
    total = 0.0
    try:
        for i in range(clips):
            params = recipe.draw(torch.Generator().manual_seed(1000 + i), frames.shape[1:3])
            t0 = time.perf_counter()
            recipe.apply(frames, params)
            total += time.perf_counter() - t0
    finally:
        ra.apply_op, geometry.resize_region = originals
    print(f"\nper clip: {1000 * total / clips:.1f} ms over {clips} clips; by step (ms per clip):")
    for name in sorted(spent, key=spent.get, reverse=True):
        print(f"  {name:22s} {1000 * spent[name] / clips:6.1f}  ({calls[name]} calls, "
              f"{1000 * spent[name] / calls[name]:.0f} ms each)")


def vars_of(recipe: TrainClipRecipe) -> dict:
    return dict(crop_size=recipe.crop_size, jitter_scales=recipe.jitter_scales,
                relative_scale=recipe.relative_scale, relative_aspect=recipe.relative_aspect,
                rand_augment=recipe.rand_augment, interpolation=recipe.interpolation,
                mean=recipe.mean, std=recipe.std, re_prob=recipe.re_prob,
                re_mode=recipe.re_mode, re_count=recipe.re_count, random_flip=recipe.random_flip)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", help="a 320p video (default: a generated 426x320 one)")
    ap.add_argument("--videos", type=int, default=20, help="videos timed (after 2 warm-up)")
    add_encoding_args(ap)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time each RandAugment op and the crop/resize of (b)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.video
        if path is None:
            path = os.path.join(tmp, "k400_like_320p.mp4")
            make_320p_video(path, gop=args.gop, fast_decode=args.fast_decode)
        sec = run(path, args.videos)
        report(sec, args.videos)
        if args.breakdown:
            breakdown(path)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds_per_video": sec, "videos": args.videos}, f, indent=1)
    return 0


def report(sec: dict, videos: int) -> None:
    print(f"one thread, {videos} videos, {NUM_SAMPLE} clips of {NUM_FRAMES}x224x224 "
          f"per video, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"{'pipeline':34s} {'s/video':>8s} {'videos/s':>9s} {'clips/s':>8s} {'vs PIL':>7s}")
    names = {"decode": "(a) decode only (decord)", "ours": "(b) decode + tensor recipe",
             "pil": "(c) decode + per-frame PIL", "crop_first": "(d) decode + crop_first"}
    for key, name in names.items():
        s = sec[key]
        print(f"{name:34s} {s:8.3f} {1 / s:9.2f} {NUM_SAMPLE / s:8.2f} {sec['pil'] / s:6.2f}x")
    aug_ours, aug_pil = sec["ours"] - sec["decode"], sec["pil"] - sec["decode"]
    print(f"augmentation only, per clip: tensor {aug_ours / NUM_SAMPLE:.3f} s, "
          f"PIL {aug_pil / NUM_SAMPLE:.3f} s ({aug_pil / aug_ours:.2f}x); decode-only worker "
          f"cost is {sec['decode'] / sec['pil']:.2f} of the PIL pipeline")


if __name__ == "__main__":
    raise SystemExit(main())
