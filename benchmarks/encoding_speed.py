#!/usr/bin/env python3
"""Size, quality and decode time of the 320p benchmark video under x264 encoder settings.

Encodes `loader_speed.texture_frames` (10 s, 426x320, 30 fps) with the resizer's options
(`multitrain.preparation.prepare.encoder_options`: veryfast, crf 23, a keyframe every 32 frames)
and variants, then for each file: its size, PSNR of all decoded frames against the source
frames, and the median time of decoding a random 32x3 training span with decord on one
thread (`loader_speed.decode`), the files interleaved span by span.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from multitrain.preparation.h264 import write_h264
from multitrain.preparation.prepare import DEFAULT_KEYINT, encoder_options

from .loader_speed import decode, texture_frames

FPS = 30


def variants(keyint: int) -> dict:
    ours = encoder_options("libx264", 23, keyint, fast_decode=False)
    return {
        "x264 defaults (resizer --no-fast-decode)": ours,
        "cabac=0": {**ours, "x264-params": "cabac=0"},
        "no deblocking": {**ours, "x264-params": "no-deblock=1"},
        "cabac=0, no weighted prediction": {**ours, "x264-params": "cabac=0:weightb=0:weightp=0"},
        "tune fastdecode (resizer default)": encoder_options("libx264", 23, keyint, fast_decode=True),
    }


def psnr(path: str, source: np.ndarray) -> float:
    import decord

    frames = decord.VideoReader(path, num_threads=1).get_batch(list(range(len(source))))
    mse = ((frames.asnumpy().astype(np.float64) - source) ** 2).mean()
    return float(10 * np.log10(255.0 ** 2 / mse))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spans", type=int, default=24, help="random spans decoded per file")
    p.add_argument("--keyint", type=int, default=DEFAULT_KEYINT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    source = np.stack(list(texture_frames(10.0, FPS)))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, opts) in enumerate(variants(args.keyint).items()):
            path = os.path.join(tmp, f"v{i}.mp4")
            write_h264(path, source, FPS, opts)
            rows[name] = {"path": path, "bytes": os.path.getsize(path),
                          "psnr": psnr(path, source), "times": []}
        for s in range(args.spans):  # interleaved: machine load hits every file alike
            for row in rows.values():
                g = torch.Generator().manual_seed(s)
                t0 = time.perf_counter()
                decode(row["path"], g)
                row["times"].append(time.perf_counter() - t0)
    base = next(iter(rows.values()))
    print(f"| encoding | size | PSNR | decode s per 32x3 span (median of {args.spans}) | vs first |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        t = statistics.median(row["times"])
        print(f"| {name} | {row['bytes'] / 1e3:.0f} KB ({row['bytes'] / base['bytes']:.2f}x) | "
              f"{row['psnr']:.2f} dB | {t:.3f} | "
              f"{t / statistics.median(base['times']):.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
