"""tools/run_net.py as users type it: the seed README's command lines."""
import os
import subprocess
import sys

import pytest
import torch

from mt_testing import CONFORMANCE, DEMO_CONFIG, REPO, corpus_overrides

RUN_NET = os.path.join(REPO, "tools", "run_net.py")
MULTI = os.path.join(REPO, "configs", "Multi_dataset", "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml")


def seed_inference_args(datapath, dataset, num_class, s, t, ckpt, extra=()):
    """The seed README's inference command, with our config path and NUM_GPUS 0."""
    return [RUN_NET, "--cfg", MULTI,
            "DATA.MULTI_LABEL", "False", "TRAIN.ENABLE", "False", "TRAIN.BATCH_SIZE", "1", "NUM_GPUS", "0",
            "TEST.BATCH_SIZE", "32", "TEST.ENABLE", "True", "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "100",
            "DATA.DECODING_BACKEND", "decord", "LOG_MODEL_INFO", "False", "TEST.CHECKPOINT_FILE_PATH", ckpt,
            "USE_TQDM", "True", "DATA.PATH_TO_DATA_DIR", f"{datapath}/pyslowfast_annotations/",
            "DATA.PATH_PREFIX", f"{datapath}/videos_320p", "TEST.NUM_SPATIAL_CROPS", str(s),
            "TEST.NUM_ENSEMBLE_VIEWS", str(t), "TEST.DATASET", dataset, "MODEL.NUM_CLASSES", str(num_class),
            "DATA.NUM_CLASSES", str(num_class), "TEST.ENABLE_SAVE", "False", "DATA.MODEL_DIFF_DATA", "False",
            "TRAIN.DATASET", dataset, "MODEL.MULTI_ADD_CROSS_PROJ", "False", "MODEL.USE_INF_LOSS", "False",
            *extra]


def _run(args, timeout=600):
    return subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_seed_inference_command_names_the_missing_annotation_file(tmp_path):
    r = _run(seed_inference_args("/data_nvme/datasets/kinetics400", "kinetics", 400, 1, 5,
                                 "../pretrained_models/multitrain_release.v1.pyth",
                                 ["OUTPUT_DIR", str(tmp_path)]))
    assert r.returncode == 1
    assert "/data_nvme/datasets/kinetics400/pyslowfast_annotations/test.csv" in r.stderr
    assert "Traceback" not in r.stderr


def test_misspelled_key_fails_with_its_name():
    r = _run([RUN_NET, "--cfg", MULTI, "TRAIN.GRAD_ACCU_NUM_BATCHES", "8"])
    assert r.returncode == 2
    assert "unknown config key TRAIN.GRAD_ACCU_NUM_BATCHES" in r.stderr


def test_config_is_written_to_output_dir(small_corpus, tmp_path):
    r = _run([RUN_NET, "--cfg", DEMO_CONFIG, "TRAIN.ENABLE", "False", "TEST.ENABLE", "False"]
             + [repr(o) if isinstance(o, list) else o for o in corpus_overrides(small_corpus, str(tmp_path))])
    assert r.returncode == 0, r.stderr[-2000:]
    from multitrain.config import load_config

    cfg = load_config(str(tmp_path / "config.yaml"))
    assert cfg.OUTPUT_DIR == str(tmp_path) and cfg.MODEL.MULTI_NUM_CLASSES == [6, 4, 4]


@pytest.mark.skipif(not os.path.isdir(CONFORMANCE), reason=f"conformance fixtures not found at {CONFORMANCE}")
def test_original_layout_checkpoint_loads_for_test(small_corpus, tmp_path):
    """The conformance fixture's weights (original key names) wrapped as {"model_state": ...}."""
    fx = torch.load(os.path.join(CONFORMANCE, "multitrain_tiny.pt"), weights_only=True)
    ckpt = tmp_path / "original.pyth"
    torch.save({"model_state": fx["model_state"], "epoch": 10}, ckpt)
    opts = fx["config_overrides"]
    over = [str(v) if not isinstance(v, list) else repr(v) for v in opts]
    ds = os.path.join(small_corpus, "moments_in_time")  # 4 classes, as the fixture's mit head
    r = _run([RUN_NET, "--cfg", MULTI, "NUM_GPUS", "0", "TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
              "TEST.DATASET", "mit", "DATA.NUM_CLASSES", "4", "TEST.NUM_ENSEMBLE_VIEWS", "1",
              "TEST.NUM_SPATIAL_CROPS", "1", "DATA.PATH_TO_DATA_DIR", os.path.join(ds, "pyslowfast_annotations"),
              "DATA.PATH_PREFIX", os.path.join(ds, "videos_320p"), "TEST.CHECKPOINT_FILE_PATH", str(ckpt),
              "DATA_LOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path / "out"), "LOG_MODEL_INFO", "False",
              "TEST.BATCH_SIZE", "4"] + over, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = open(tmp_path / "out" / "stdout.log").read()
    assert str(ckpt) in log and '"_type": "test"' in log
