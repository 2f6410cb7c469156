#!/usr/bin/env python3
"""Forward+backward time per clip and peak memory of the model: SDPA vs reference attention.

Default: the full released MViTv2-B (K400+MiT+SSv2 heads) at 8x112x112, batch 2, CPU.
Measurements: benchmarks/model_benchmark.py.
"""
import argparse
import json
import os

from multitrain.config import get_cfg, merge
from multitrain.models.conformance import find_config

from .model_benchmark import compare_attention, format_rows

DEFAULT_CFG = "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default=DEFAULT_CFG, help="YAML path, or a file name under configs/")
    p.add_argument("--frames", type=int, default=8, help="DATA.NUM_FRAMES (sizes the pos tables)")
    p.add_argument("--crop", type=int, default=112, help="DATA.TRAIN_CROP_SIZE")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs per implementation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--act-checkpoint", action="store_true", help="MODEL.ACT_CHECKPOINT True")
    p.add_argument("--impls", nargs="+", default=["sdpa", "reference"])
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="extra KEY VALUE config overrides")
    args = p.parse_args(argv)

    cfg = get_cfg()
    path = args.cfg if os.path.isfile(args.cfg) else find_config(args.cfg)
    merge(cfg, [path], ["DATA.NUM_FRAMES", args.frames, "DATA.TRAIN_CROP_SIZE", args.crop,
                        "DATA.TEST_CROP_SIZE", args.crop] + list(args.opts))
    rows = compare_attention(cfg, args.impls, repeats=args.repeats, batch=args.batch,
                             iters=args.iters, warmup=args.warmup, device=args.device,
                             amp_dtype=None if args.amp == "none" else args.amp,
                             act_checkpoint=args.act_checkpoint)
    print(f"{os.path.basename(path)} at {args.frames}x{args.crop}x{args.crop}")
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
