"""Training step of the full MViTv2-B 32x3 with each device speed option, on one GPU.

    python -m benchmarks.levers_speed [--batch 8] [--iters 5] [--json OUT.json] [KEY VALUE ...]

(`--device cpu --cfg configs/demo/synthetic_multi.yaml --frames 8 --crop 32`: a dry run of
the script on a CPU; its figures mean nothing.)

One step = forward under bf16 autocast, the real criterion, backward, AdamW step (the
trainer's ``build_optimizer``), on random clips. Rows, one after the other in one process:
``plain`` (every option off), each option alone and all together (compile alone last):
``MODEL.POOL_CHANNELS_LAST``, ``SOLVER.FUSED_ADAMW``, ``MODEL.COMPILE``. Reported: clips/s,
GB per clip (``max_memory_allocated`` above the model and optimizer state, over the
batch) and MFU = clips/s x ``--tflop-per-clip`` / ``--peak-tflops``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import torch

from multitrain.config import get_cfg, merge
from multitrain.models.conformance import find_config

from .model_benchmark import build_train_step

DEFAULT_CFG = "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml"
LEVERS = {"plain": {}, "channels_last": {"MODEL.POOL_CHANNELS_LAST": True},
          "fused_adamw": {"SOLVER.FUSED_ADAMW": True}, "compile": {"MODEL.COMPILE": True}}
OFF = {"MODEL.POOL_CHANNELS_LAST": False, "SOLVER.FUSED_ADAMW": False, "MODEL.COMPILE": False}


def lever_cfg(base: str, frames: int, crop: int, settings: dict, extra=()):
    cfg = get_cfg()
    opts = ["DATA.NUM_FRAMES", frames, "DATA.TRAIN_CROP_SIZE", crop, "DATA.TEST_CROP_SIZE", crop,
            *extra]
    for k, v in {**OFF, **settings}.items():
        opts += [k, v]
    merge(cfg, [base], opts)
    return cfg


def measure(cfg, batch: int, iters: int, warmup: int, device: str = "cuda") -> dict:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    step = build_train_step(cfg, batch, device, "bf16", with_optimizer=True)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    if cuda:
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / iters
    peak = torch.cuda.max_memory_allocated() - base if cuda else 0  # not measured on the CPU
    step = None  # free the model, optimizer and clips before empty_cache
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {"clips_per_sec": batch / sec, "sec_per_step": sec, "gb_per_clip": peak / 1e9 / batch,
            "warmup_sec": warm_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfg", default=DEFAULT_CFG)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--levers", nargs="+", default=["plain", "channels_last", "fused_adamw", "all",
                                                    "compile"],
                    help=f"rows to run, of {[*LEVERS, 'all']}")
    ap.add_argument("--tflop-per-clip", type=float, default=1.35,
                    help="training FLOPs of one clip (forward + backward), in TFLOP")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    ap.add_argument("--device", default="cuda", help="cuda (cpu: a dry run of the script)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config overrides")
    args = ap.parse_args(argv)
    base = args.cfg if os.path.isfile(args.cfg) else find_config(args.cfg)
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{name}, torch {torch.__version__}, batch {args.batch}, "
          f"{args.frames}x{args.crop}x{args.crop}, bf16, step = fwd + loss + bwd + AdamW")
    print(f"{'row':14s} {'clips/s':>8s} {'GB/clip':>8s} {'MFU':>6s} {'warm-up s':>10s}")
    rows = {}
    for name in args.levers:
        settings = ({k: True for k in OFF} if name == "all" else LEVERS[name])
        try:
            r = measure(lever_cfg(base, args.frames, args.crop, settings, args.opts), args.batch,
                        args.iters, args.warmup, args.device)
        except Exception as e:  # noqa: BLE001 - report the row, go on with the others
            rows[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"{name:14s} failed: {rows[name]['error']}", flush=True)
            continue
        r["mfu"] = r["clips_per_sec"] * args.tflop_per_clip / args.peak_tflops
        rows[name] = r
        print(f"{name:14s} {r['clips_per_sec']:8.1f} {r['gb_per_clip']:8.2f} {100 * r['mfu']:5.1f}% "
              f"{r['warmup_sec']:10.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "args": vars(args)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
