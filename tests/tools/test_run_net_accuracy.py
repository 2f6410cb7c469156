"""run_net's reported test accuracy, recomputed from the saved scores and the annotation file."""
import os
import subprocess
import sys

import numpy as np
import torch

from mt_testing import DEMO_CONFIG, REPO, RUN_NET, corpus_overrides


def _topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return 100.0 * float(np.mean([labels[i] in best[i] for i in range(len(labels))]))


def test_reported_top1_top5_match_the_saved_scores_and_the_csv_labels(small_corpus, tmp_path):
    from multitrain.engine.writers import parse_json_stats

    out = tmp_path / "out"
    ds = os.path.join(small_corpus, "kinetics400")
    overrides = [repr(o) if isinstance(o, list) else o for o in corpus_overrides(small_corpus, str(out))]
    args = [RUN_NET, "--cfg", DEMO_CONFIG, *overrides, "TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
            "TEST.DATASET", "kinetics", "DATA.NUM_CLASSES", "6",
            "DATA.PATH_TO_DATA_DIR", os.path.join(ds, "pyslowfast_annotations"),
            "DATA.PATH_PREFIX", os.path.join(ds, "videos_320p"), "TEST.ENABLE_SAVE", "True", "TEST.SAVE_RESULTS_PATH", str(out / "scores.npy"),
            "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "1", "DATA_LOADER.NUM_WORKERS", "0",
            "LOG_MODEL_INFO", "False", "RNG_SEED", "3"]
    r = subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(out / "stdout.log") as f:
        (reported,) = [s for s in parse_json_stats(f) if s.get("_type") == "test"]

    csv = os.path.join(ds, "pyslowfast_annotations", "test.csv")
    with open(csv) as f:
        rows = [line.split() for line in f if line.strip()]
    names, labels = [r[0] for r in rows], np.array([int(r[1]) for r in rows])
    saved = torch.load(out / "scores.details.pt", weights_only=True)
    scores = np.load(out / "scores.npy")
    assert scores.shape == (len(rows), 6)
    assert [os.path.basename(p) for p in saved["paths"]] == names  # rows in CSV order
    saved_labels = saved["labels"]
    saved_labels = saved_labels.argmax(1) if saved_labels.ndim == 2 else saved_labels  # one-hot rows
    assert saved_labels.tolist() == labels.tolist()
    assert len(set(scores.argmax(1).tolist())) > 1, "constant predictions cannot tell labels apart"
    assert abs(reported["top1"] - _topk(scores, labels, 1)) < 1e-3  # the log keeps 4 decimals; a video is 8.3
    assert abs(reported["top5"] - _topk(scores, labels, 5)) < 1e-3
    assert reported["num_videos"] == len(rows)
