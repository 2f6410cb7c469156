#!/usr/bin/env python3
"""Where a training step's device time goes: torch.profiler's top operators and kernels.

Default: the full released MViTv2-B (K400+MiT+SSv2 heads) at 32x224x224, batch 8, bf16 on
cuda. A step is the one `benchmarks/model_speed.py` times (forward, real criterion,
backward). Prints the ops by self device time; `--trace F` also writes a Chrome trace.
"""
import argparse
import os
import time

import torch

from multitrain.config import get_cfg, merge
from multitrain.models.conformance import find_config

from .model_benchmark import build_train_step

DEFAULT_CFG = "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default=DEFAULT_CFG)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cuda")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="bf16")
    p.add_argument("--steps", type=int, default=2, help="profiled steps (after 2 warm-up)")
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--trace", help="also write a Chrome trace here")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark = True (autotuned convolutions)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config overrides")
    args = p.parse_args(argv)

    cfg = get_cfg()
    path = args.cfg if os.path.isfile(args.cfg) else find_config(args.cfg)
    merge(cfg, [path], ["DATA.NUM_FRAMES", args.frames, "DATA.TRAIN_CROP_SIZE", args.crop]
          + list(args.opts))
    cfg.CUDNN_BENCHMARK = args.cudnn_benchmark
    dev = torch.device(args.device)
    step = build_train_step(cfg, args.batch, args.device,  # synchronises after each step
                            None if args.amp == "none" else args.amp)

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    step_s = (time.perf_counter() - start) / 3
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(args.steps):
            step()
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(f"{os.path.basename(path)} at {args.frames}x{args.crop}x{args.crop}, batch "
          f"{args.batch}, {args.amp}, cudnn.benchmark {args.cudnn_benchmark}, on {dev}: "
          f"{step_s:.3f} s/step (mean of 3), {args.batch / step_s:.2f} clips/s")
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    if args.trace:
        prof.export_chrome_trace(args.trace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
