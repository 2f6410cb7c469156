"""End-to-end training throughput: a real ``tools/run_net.py`` run on generated 320p videos.

    python -m benchmarks.train_e2e [--videos 256] [--workers 14] [--json OUT.json] [KEY VALUE ...]

The full MViTv2-B 32x3 multi-dataset config (three heads; the three datasets read the same
generated folder of 426x320 30 fps H.264 videos, ``loader_speed.make_320p_video``), one GPU,
bf16, batch 8, ``AUG.ON_DEVICE`` (workers decode, the recipe runs on the GPU) unless
``--host-recipe``, one epoch, no evaluation. Extra ``KEY VALUE`` pairs go to run_net (e.g.
``MODEL.COMPILE True``). Reported from the run's ``json_stats`` train lines (every
``LOG_PERIOD`` steps, the first ``--skip`` lines dropped as warm-up): clips/s, the loader
wait per step (``data_time``: the step waiting for its batch) and the step time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from multitrain.preparation.prepare import DEFAULT_FAST_DECODE, DEFAULT_KEYINT
from multitrain.engine.writers import parse_json_stats

from .eval_decode_speed import make_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CFG = os.path.join(REPO, "configs", "Multi_dataset", "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml")


def run_net_args(root: str, out: str, args) -> list:
    dirs = repr([root] * 3)
    prefixes = repr([os.path.join(root, "videos")] * 3)
    return [sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", CFG,
            "NUM_GPUS", "1", "TRAIN.ENABLE", "True", "TEST.ENABLE", "False",
            "TRAIN.BATCH_SIZE", str(args.batch), "TRAIN.GRAD_ACCU_NUM_BATCH", "1",
            "TRAIN.EVAL_PERIOD", "1000", "TRAIN.CHECKPOINT_PERIOD", "1000",
            "TRAIN.AUTO_RESUME", "False", "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0.5",
            "TRAIN.MIXED_PRECISION", "True", "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16",
            "DATA.MULTI_LABEL", "False", "DATA.NUM_FRAMES", "32", "DATA.SAMPLING_RATE", "3",
            "DATA.TRAIN_CROP_SIZE", "224", "DATA.TEST_CROP_SIZE", "224",
            "AUG.ON_DEVICE", str(not args.host_recipe),
            "DATA_LOADER.NUM_WORKERS", str(args.workers), "LOG_PERIOD", str(args.log_period),
            "LOG_MODEL_INFO", "False", "MODEL.MULTI_PATH_TO_DATA_DIR", dirs,
            "MODEL.MULTI_PATH_PREFIX", prefixes, "OUTPUT_DIR", out, *args.opts]


def summarise(log_path: str, skip: int) -> dict:
    lines = [s for s in parse_json_stats(open(log_path).read().splitlines())
             if s.get("_type") == "train" and "data_time" in s]
    used = lines[skip:] or lines
    if not used:
        raise RuntimeError(f"no train stats in {log_path}")
    med = {k: statistics.median(float(s[k]) for s in used)
           for k in ("clips_per_s", "data_time", "iter_time")}
    return {"clips_per_sec": med["clips_per_s"], "loader_wait_sec_per_step": med["data_time"],
            "step_sec": med["iter_time"], "log_lines": len(used)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--log-period", type=int, default=5)
    ap.add_argument("--skip", type=int, default=2, help="first stat lines dropped (warm-up)")
    ap.add_argument("--host-recipe", action="store_true", help="AUG.ON_DEVICE False")
    ap.add_argument("--timeout", type=int, default=400)
    ap.add_argument("--data", help="reuse this corpus folder (made there if missing)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for run_net")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or os.path.join(tmp, "corpus")
        if not os.path.isfile(os.path.join(root, "train.csv")):
            make_corpus(root, args.videos, args.seconds, DEFAULT_KEYINT, DEFAULT_FAST_DECODE,
                        splits=("train", "val", "test"))
        out = os.path.join(tmp, "out")
        try:
            r = subprocess.run(run_net_args(root, out, args), cwd=REPO, capture_output=True,
                               text=True, timeout=args.timeout)
            failed = r.returncode != 0 and r.stderr[-3000:]
        except subprocess.TimeoutExpired:  # report the steps logged so far
            failed = f"run_net still running after {args.timeout} s (stopped)"
        if failed:
            print(failed)
        try:
            res = summarise(os.path.join(out, "stdout.log"), args.skip)
        except (OSError, RuntimeError) as e:
            print(f"no figures: {e}")
            return 1
        res["complete"] = not failed
    print(f"run_net, {args.videos} videos 426x320, batch {args.batch}, {args.workers} workers, "
          f"{'host' if args.host_recipe else 'device'} recipe, extra {args.opts}: "
          f"{res['clips_per_sec']:.1f} clips/s, loader wait {1000 * res['loader_wait_sec_per_step']:.0f} "
          f"ms/step, step {1000 * res['step_sec']:.0f} ms ({res['log_lines']} stat lines)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**res, "args": vars(args)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
