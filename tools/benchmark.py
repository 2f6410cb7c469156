#!/usr/bin/env python
"""Throughput benchmarks, one entry point:

    python tools/benchmark.py model  [--device cuda --amp bf16 --act-checkpoint ...]
    python tools/benchmark.py loader [--video FILE --videos 20 --breakdown ...]
    python tools/benchmark.py recipe [--cfg CFG --device cuda --batch 8 --step ...]

`model`: forward(+backward) time per clip and peak memory of a config's model, SDPA
against the reference attention in the same run (benchmarks/model_speed.py).
`loader`: one worker's samples/s for the train clip recipe, decode vs augment split,
against a per-frame PIL baseline (benchmarks/loader_speed.py).
`recipe`: worker CPU s/sample with AUG.ON_DEVICE False / True against the PIL pipeline,
the device recipe's s/batch, and with --step its share of a training step and the
end-to-end samples/s (benchmarks/recipe_speed.py).
Each is `python -m benchmarks.<script> ...` run from the repository root; this entry point
runs it from anywhere (the repository's folder is put on the child's PYTHONPATH).
Figures and the commands that produced them are kept in docs/BENCHMARKS.md.
"""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"model": "model_speed", "loader": "loader_speed", "recipe": "recipe_speed"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SCRIPTS:
        print(__doc__, file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", f"benchmarks.{SCRIPTS[argv[0]]}"] + argv[1:]
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
