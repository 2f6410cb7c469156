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
Figures and the commands that produced them are kept in docs/BENCHMARKS.md.
"""
import os
import runpy
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"model": "model_speed.py", "loader": "loader_speed.py", "recipe": "recipe_speed.py"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SCRIPTS:
        print(__doc__, file=sys.stderr)
        return 2
    script = os.path.join(REPO, "benchmarks", SCRIPTS[argv[0]])
    sys.argv = [script] + argv[1:]
    sys.path.insert(0, REPO)
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
