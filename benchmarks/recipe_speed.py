"""The train clip recipe in the loader workers vs on the device, and training samples/s.

    python -m benchmarks.recipe_speed [--cfg CFG] [--device cpu|cuda] [--videos 4] [--items 12]
        [--batch 8] [--step] [--json OUT] [KEY VALUE ...]

Writes ``--videos`` generated 10 s 426x320 30 fps H.264 files (``loader_speed.make_320p_video``)
and a train.csv into a temporary folder, points the config at them (default: the original
code's K400 MViTv2-B 32x3 recipe) and measures, in one run:

  (1)-(3) per sample, one thread, interleaved item by item: a worker with AUG.ON_DEVICE
      False (decode + recipe), one with True (decode only), and the original per-frame PIL
      pipeline with the same draws; CPU seconds (``time.process_time``) and wall seconds;
  (4) ``device_recipe.apply_train_batch`` on a raw batch of ``--batch`` samples on ``--device``;
  (5) with ``--step``: one training step (the trainer's model, optimizer, AMP, Mixup,
      ``Trainer.run_step``) on that batch, the recipe's share of it, end-to-end samples/s.

KEY VALUE overrides come after every --option and win. A small model for ``--step`` on the
CPU: ``MVIT.DEPTH 2 MVIT.EMBED_DIM 16 MVIT.DIM_MUL "[[1, 2.0]]" MVIT.HEAD_MUL "[[1, 2.0]]"
MVIT.POOL_Q_STRIDE "[[1, 1, 2, 2]]" MVIT.POOL_KV_STRIDE_ADAPTIVE "[1, 4, 4]" DATA.NUM_FRAMES 8
DATA.TRAIN_CROP_SIZE 112`` (the block indices of DIM_MUL etc. must fit the depth). On a
shared CPU, ``--threads 1`` avoids OpenMP threads waiting on each other (docs/BENCHMARKS.md,
"Loader", notes).
Measurements: benchmarks/recipe_benchmark.py.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch  # before decord

from multitrain.preparation.prepare import DEFAULT_FAST_DECODE

from . import recipe_benchmark as rb
from .loader_speed import add_encoding_args, make_320p_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_CFGS = ("configs/Kinetics/MVITV2_B_32x3.yaml",
                "configs/Kinetics/MVITV2_FULL_B_32x3_CONV_k400.yaml")


def default_cfg() -> str:
    for rel in DEFAULT_CFGS:
        path = os.path.join(REPO, rel)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"none of {DEFAULT_CFGS} exists: pass --cfg")


def video_maker(seconds: float, gop: int, fast_decode: bool = DEFAULT_FAST_DECODE):
    """``make_320p_video`` with our length, keyframe interval and tuning."""
    return lambda path: make_320p_video(path, seconds=seconds, gop=gop, fast_decode=fast_decode)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfg", default=None, help="YAML (default: the original code's K400 32x3 recipe)")
    ap.add_argument("--device", default="cpu", help="device of the recipe and the step")
    ap.add_argument("--videos", type=int, default=4, help="generated video files")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    add_encoding_args(ap)
    ap.add_argument("--items", type=int, default=12, help="samples timed per worker pipeline")
    ap.add_argument("--batch", type=int, default=8, help="samples (videos) per device batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed device calls (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed items / device calls first")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the device "
                    "recipe and the step (default: torch's, i.e. OMP_NUM_THREADS or the cores); "
                    "the worker pipelines always use 1")
    ap.add_argument("--step", action="store_true", help="also time one training step")
    ap.add_argument("--amp", default="auto", choices=("auto", "none", "bf16", "fp16"),
                    help="step precision: auto = bf16 on cuda, the config's on cpu")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return ap.parse_args(argv)


def run(argv=None) -> dict:
    """Parse ``argv``, measure, print the report; returns the figures."""
    args = parse_args(argv)
    cfg_file = args.cfg or default_cfg()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="recipe_speed_") as tmp:
        probe = rb.benchmark_config(cfg_file, {"dir": tmp, "prefix": tmp}, args.batch,
                                    args.device, os.path.join(tmp, "out"), args.amp, args.opts)
        corpus = rb.write_corpus(tmp, args.videos, video_maker(args.seconds, args.gop, args.fast_decode),
                                 rows=max(args.videos, args.batch),
                                 num_classes=rb.min_num_classes(probe),
                                 separator=probe.DATA.PATH_LABEL_SEPARATOR)
        cfg = rb.benchmark_config(cfg_file, corpus, args.batch, args.device,
                                  os.path.join(tmp, "out"), args.amp, args.opts)
        result = rb.run_benchmark(cfg, args.items, args.batch, args.device, args.repeats,
                                  args.warmup, args.step)
    result.update(config=os.path.relpath(cfg_file), overrides=[str(o) for o in args.opts],
                  videos=args.videos, video_seconds=args.seconds)
    print(rb.format_report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def main(argv=None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
