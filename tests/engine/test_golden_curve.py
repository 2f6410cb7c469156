"""The demo config's first training losses, as stored in tests/fixtures/golden_loss_curve.json.

A refactor must reproduce them (to a tolerance that float rounding on any x86-64 CPU stays
well within). A deliberate change of the method, the demo config or the synthetic corpus
changes them: regenerate the file with

    PYTHONPATH=.:tests python tests/engine/test_golden_curve.py

and say why in the commit.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from mt_testing import DEMO_CONFIG, REPO, corpus_overrides

GOLDEN = os.path.join(REPO, "tests", "fixtures", "golden_loss_curve.json")
STEPS = 4  # the small corpus has 4 batches of 16
# Everything else is the demo config as `make demo` runs it (batch 16, AdamW, clipping).
OPTS = ["TRAIN.MAX_ITERS_PER_EPOCH", str(STEPS), "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "100",
        "TEST.ENABLE", "False", "TRAIN.AUTO_RESUME", "False", "DATA_LOADER.NUM_WORKERS", "0",
        "LOG_PERIOD", "1", "LOG_MODEL_INFO", "False", "TRAIN.CHECKPOINT_PERIOD", "100"]
# Two runs on freshly generated corpora differed by up to 6e-4 (relative) after 4 steps.
RTOL, ATOL = 5e-3, 1e-4


def loss_curve(corpus: str, out_dir: str):
    """[{loss terms}] of the first STEPS steps of the demo config on `corpus`."""
    from multitrain.engine.writers import parse_json_stats

    overrides = [repr(o) if isinstance(o, list) else o for o in corpus_overrides(corpus, out_dir)]
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", DEMO_CONFIG,
                        *overrides, *OPTS], cwd=REPO, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(out_dir, "stdout.log")) as f:
        stats = [s for s in parse_json_stats(f) if s.get("_type") == "train"]
    return [{k: v for k, v in s.items() if k.startswith("loss")} for s in stats]


def test_demo_config_reproduces_the_golden_loss_curve(small_corpus, tmp_path):
    with open(GOLDEN) as f:
        golden = json.load(f)
    assert golden["steps"] == STEPS and golden["options"] == OPTS, "regenerate the golden curve"
    got = loss_curve(small_corpus, str(tmp_path))
    assert len(got) == STEPS and got[0].keys() == golden["curve"][0].keys()
    for step, (ours, ref) in enumerate(zip(got, golden["curve"])):
        for key in ref:
            assert ours[key] == pytest.approx(ref[key], rel=RTOL, abs=ATOL), (step, key, ours, ref)


if __name__ == "__main__":
    from multitrain.preparation.synthetic import make_synthetic_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus")  # the suite's small_corpus (tests/conftest.py)
        make_synthetic_corpus(corpus, {"train": 4, "val": 2, "test": 2}, num_workers=2)
        curve = loss_curve(corpus, os.path.join(tmp, "out"))
    with open(GOLDEN, "w") as f:
        json.dump({"steps": STEPS, "options": OPTS, "curve": curve}, f, indent=1)
    print(f"wrote {len(curve)} steps to {GOLDEN}: losses {[round(c['loss'], 4) for c in curve]}")
