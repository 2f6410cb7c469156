"""Multi-view test loading: decoding once per view vs once per video, side by side.

    python -m benchmarks.eval_decode_speed [--videos 8] [--workers 1] [--repeats 2] [--json OUT]

Generated 426x320 30 fps H.264 videos (``loader_speed.make_320p_video``, the resizer's
encoder options) go through the real test loader (``build_loader(cfg, "test")``) of
MViTv2-B 32x3 (32 frames at rate 3, crop 224 from a 256 short side) under two test
protocols: MiT (2 temporal x 3 spatial views, clip sampling) and SSv2 (1 x 3, segment
sampling). Each protocol is run with ``TEST.DECODE_ONCE False`` (one decoding per view,
as the original code) and ``True`` (one per video), alternately ``--repeats`` times, and
in two modes: the full worker (decode + every test crop) and decode only (raw frames,
``AUG.ON_DEVICE``). Reported per video: wall seconds, worker CPU seconds (loader worker
processes, from ``getrusage(RUSAGE_CHILDREN)``; main process CPU with ``--workers 0``)
and the ratio once/per-view of the worker CPU; also the main process's CPU seconds per
video (the decode-once loader cuts and collates the batches there).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time

import torch

from multitrain.config import load_config
from multitrain.data.loader import build_loader

from .loader_speed import add_encoding_args, make_320p_video

PROTOCOLS = {"mit": dict(views=2, crops=3, dataset="mit"),
             "ssv2": dict(views=1, crops=3, dataset="ssv2")}


def make_corpus(root: str, videos: int, seconds: float, gop: int, fast_decode: bool,
                splits=("test",)) -> str:
    """``videos`` generated files under ``root/videos`` and ``root/<split>.csv`` listing
    them (one class)."""
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    make_320p_video(os.path.join(root, "videos", "v0.mp4"), seconds=seconds, gop=gop,
                    fast_decode=fast_decode)
    for v in range(1, videos):  # same content, separate files (no page-cache sharing)
        with open(os.path.join(root, "videos", "v0.mp4"), "rb") as src, \
                open(os.path.join(root, "videos", f"v{v}.mp4"), "wb") as dst:
            dst.write(src.read())
    for split in splits:
        with open(os.path.join(root, f"{split}.csv"), "w") as f:
            f.writelines(f"v{v}.mp4 0\n" for v in range(videos))
    return root


def config(root: str, protocol: str, decode_once: bool, raw: bool, workers: int):
    p = PROTOCOLS[protocol]
    return load_config(None, [
        "NUM_GPUS", 0, "TEST.DATASET", p["dataset"], "DATA.NUM_CLASSES", 2,
        "TEST.NUM_ENSEMBLE_VIEWS", p["views"], "TEST.NUM_SPATIAL_CROPS", p["crops"],
        "TEST.BATCH_SIZE", 8, "TEST.DECODE_ONCE", decode_once, "AUG.ON_DEVICE", raw,
        "DATA.NUM_FRAMES", 32, "DATA.SAMPLING_RATE", 3, "DATA.TEST_CROP_SIZE", 224,
        "DATA.TRAIN_JITTER_SCALES", [256, 320], "DATA.PATH_TO_DATA_DIR", root,
        "DATA.PATH_PREFIX", os.path.join(root, "videos"), "DATA.DECODING_BACKEND", "decord",
        "DATA_LOADER.NUM_WORKERS", workers, "DATA_LOADER.PIN_MEMORY", False])


def _cpu_seconds(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def time_pass(cfg) -> dict:
    """One test pass over the loader: wall and worker CPU seconds, views seen."""
    workers = int(cfg.DATA_LOADER.NUM_WORKERS)
    who = resource.RUSAGE_CHILDREN if workers > 0 else resource.RUSAGE_SELF
    loader = build_loader(cfg, "test")
    cpu0, main0 = _cpu_seconds(who), _cpu_seconds(resource.RUSAGE_SELF)
    t0, views = time.perf_counter(), 0
    for batch in loader:
        views += len(batch["view_index"])
    wall = time.perf_counter() - t0
    del loader  # the workers are joined when the iterator ends
    main = _cpu_seconds(resource.RUSAGE_SELF) - main0 if workers > 0 else 0.0
    return {"wall": wall, "cpu": _cpu_seconds(who) - cpu0, "main_cpu": main, "views": views}


def run(root: str, videos: int, workers: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    results = {}
    for protocol in PROTOCOLS:
        for raw in (False, True):
            sums = {once: {"wall": 0.0, "cpu": 0.0, "main_cpu": 0.0} for once in (False, True)}
            for _ in range(repeats):
                for once in (False, True):  # alternate so that machine load hits both alike
                    r = time_pass(config(root, protocol, once, raw, workers))
                    p = PROTOCOLS[protocol]
                    assert r["views"] == videos * p["views"] * p["crops"], r
                    for k in ("wall", "cpu", "main_cpu"):
                        sums[once][k] += r[k] / (repeats * videos)
            results[f"{protocol}/{'decode_only' if raw else 'full'}"] = {
                "per_view": sums[False], "once": sums[True],
                "cpu_ratio": sums[True]["cpu"] / sums[False]["cpu"]}
    return results


def report(results: dict, args) -> None:
    print(f"{args.videos} videos of {args.seconds:g} s 426x320, {args.workers} worker(s), "
          f"{args.repeats} repeats, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}")
    print(f"{'protocol / worker job':22s} {'path':9s} {'videos/s':>9s} {'worker CPU s/video':>19s} "
          f"{'once/per-view':>14s} {'main CPU s/video':>17s}")
    for key, r in results.items():
        for path in ("per_view", "once"):
            s = r[path]
            ratio = f"{r['cpu_ratio']:.3f}" if path == "once" else ""
            print(f"{key:22s} {path:9s} {1 / s['wall']:9.2f} {s['cpu']:19.3f} {ratio:>14s} "
                  f"{s['main_cpu']:17.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=8, help="test videos per pass")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each video")
    ap.add_argument("--workers", type=int, default=1, help="loader workers (0: main process)")
    ap.add_argument("--repeats", type=int, default=2, help="passes per path (alternated)")
    add_encoding_args(ap)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        make_corpus(tmp, args.videos, args.seconds, args.gop, args.fast_decode)
        results = run(tmp, args.videos, args.workers, args.repeats)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds_per_video": results, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
