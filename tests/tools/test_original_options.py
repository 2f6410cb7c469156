"""Options of the original's commands do what they did there: TEST.ENABLE_SAVE /
SAVE_RESULTS_PATH, DATA.MODEL_DIFF_DATA, USE_TQDM, mAP of multi-label sets, and clear
errors for what the original refused. Real run_net processes over the synthetic corpus."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from mt_testing import DEMO_CONFIG, corpus_overrides
from multitrain.config import ConfigError, load_config
from multitrain.engine.metrics import mean_average_precision
from multitrain.engine.writers import parse_json_stats

from mt_testing import RUN_NET

QUICK = ["TRAIN.BATCH_SIZE", "4", "TRAIN.MAX_ITERS_PER_EPOCH", "2", "SOLVER.MAX_EPOCH", "1",
         "DATA.VAL_SKIP", "4", "DATA_LOADER.NUM_WORKERS", "0", "LOG_MODEL_INFO", "False",
         "TRAIN.AUTO_RESUME", "False", "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1",
         "TEST.BATCH_SIZE", "4"]


def _test_set(corpus, name, classes):
    ds = os.path.join(corpus, name)
    return ["DATA.PATH_TO_DATA_DIR", os.path.join(ds, "pyslowfast_annotations"),
            "DATA.PATH_PREFIX", os.path.join(ds, "videos_320p"), "DATA.NUM_CLASSES", str(classes)]


def _run_net(corpus, out, extra, cwd):
    args = [str(o) if not isinstance(o, list) else repr(o) for o in corpus_overrides(corpus, str(out))]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, RUN_NET, "--cfg", DEMO_CONFIG] + args + QUICK + extra,
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _stats(out, kind):
    with open(os.path.join(out, "stdout.log")) as f:
        return [s for s in parse_json_stats(f) if s.get("_type") == kind]


def _csv_labels(corpus, name):
    with open(os.path.join(corpus, name, "pyslowfast_annotations", "test.csv")) as f:
        return np.array([int(line.split()[-1]) for line in f if line.strip()])


MULTI_LABEL_KINETICS = ["MODEL.MULTI_HEAD_ACT", "['sigmoid', 'softmax', 'softmax']",
                        "MODEL.MULTI_LOSS_FUNCS", "['bce', 'soft_cross_entropy', 'soft_cross_entropy']"]


def test_saved_scores_are_the_originals_npy_with_the_runs_accuracy_and_map(small_corpus, tmp_path):
    """TEST.SAVE_RESULTS_PATH, relative to the working directory as in the original, holds
    the np.save'd [videos, classes] scores, whose top-1 and mAP are the run's (the kinetics
    head made multi-label: sigmoid). Without USE_TQDM, no progress bar."""
    out = tmp_path / "out"
    r = _run_net(small_corpus, out, ["TRAIN.ENABLE", "False", "TEST.DATASET", "kinetics", "TEST.ENABLE_SAVE",
                                     "True", "TEST.SAVE_RESULTS_PATH", "preds/k400_scores.npy"]
                 + MULTI_LABEL_KINETICS + _test_set(small_corpus, "kinetics400", 6), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "100%|" not in r.stderr
    (test,) = _stats(out, "test")
    scores = np.load(tmp_path / "preds" / "k400_scores.npy")
    labels = _csv_labels(small_corpus, "kinetics400")
    assert scores.dtype == np.float32 and scores.shape == (len(labels), 6) == (test["num_videos"], 6)
    # the log keeps 4 decimals
    assert test["top1"] == pytest.approx(100.0 * np.mean(scores.argmax(1) == labels), abs=1e-3)
    assert test["mAP"] == pytest.approx(mean_average_precision(torch.from_numpy(scores),
                                                               torch.from_numpy(labels)), abs=1e-3)
    details = torch.load(tmp_path / "preds" / "k400_scores.details.pt", weights_only=True)
    assert len(details["paths"]) == len(labels) and details["head"] == "kinetics"


@pytest.mark.slow
def test_tqdm_bars_for_train_val_test_and_validation_map(small_corpus, tmp_path):
    """USE_TQDM shows the three bars on rank 0 (ETA, running loss / top-1); validation
    reports the mAP of the multi-label head only."""
    out = tmp_path / "out"
    r = _run_net(small_corpus, out, ["USE_TQDM", "True", "TEST.DATASET", "kinetics"]
                 + MULTI_LABEL_KINETICS + _test_set(small_corpus, "kinetics400", 6), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"epoch 1: +100%\|.*\| 2/2 \[\d\d:\d\d<00:00.*loss=", r.stderr), r.stderr[-2000:]
    assert re.search(r"val: +100%\|.*top1=", r.stderr) and re.search(r"test: +100%\|", r.stderr)
    (val,) = _stats(out, "val")
    assert "kinetics_mAP" in val and "mit_mAP" not in val and "mAP" in _stats(out, "test")[0]


def test_model_diff_data_scores_another_set_with_the_train_head(small_corpus, tmp_path):
    """DATA.MODEL_DIFF_DATA: the MiT-like test videos (4 classes) through the kinetics head
    (6 classes): saved [videos, 6] scores, no accuracy (the label spaces differ)."""
    path = tmp_path / "mit_by_kinetics.npy"
    r = _run_net(small_corpus, tmp_path / "out",
                 ["TRAIN.ENABLE", "False", "TEST.DATASET", "mit", "TRAIN.DATASET", "kinetics",
                  "DATA.MODEL_DIFF_DATA", "True", "TEST.ENABLE_SAVE", "True", "TEST.SAVE_RESULTS_PATH", str(path)]
                 + _test_set(small_corpus, "moments_in_time", 4), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    scores = np.load(path)
    assert scores.shape == (len(_csv_labels(small_corpus, "moments_in_time")), 6)
    assert np.allclose(scores.sum(1), 1.0, atol=1e-5)  # one softmax view per video
    (test,) = _stats(tmp_path / "out", "test")
    assert "top1" not in test and test["num_videos"] == scores.shape[0]


def test_head_class_count_mismatch_is_one_line_before_any_video(small_corpus, tmp_path):
    r = _run_net(small_corpus, tmp_path / "out",
                 ["TRAIN.ENABLE", "False", "TEST.DATASET", "kinetics", "DATA.NUM_CLASSES", "400",
                  "DATA.PATH_TO_DATA_DIR", str(tmp_path / "no_such_folder")], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert "DATA.NUM_CLASSES = 400" in line and "MODEL.MULTI_NUM_CLASSES[0] = 6" in line
    assert "no_such_folder" not in r.stderr  # checked before the annotations are read


def test_informative_loss_needs_gather_before_loss():
    with pytest.raises(ConfigError, match="MODEL.USE_INF_LOSS needs TRAIN.GATHER_BEFORE_LOSS True"):
        load_config(DEMO_CONFIG, ["TRAIN.GATHER_BEFORE_LOSS", "False"])
    load_config(DEMO_CONFIG, ["TRAIN.GATHER_BEFORE_LOSS", "False", "TRAIN.ENABLE", "False"])
