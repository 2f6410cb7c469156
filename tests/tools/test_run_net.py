"""tools/run_net.py as users type it: the original README's command lines."""
import os

import pytest
import torch

from model_helpers import multitrain_first_clip_fixture
from mt_testing import (DEMO_CONFIG, FIXTURES, REPO, RUN_NET, TINY_MVIT, corpus_args,
                        free_port, run_python, start_python, wait_all)
MULTI = os.path.join(REPO, "configs", "Multi_dataset", "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml")


def original_inference_args(datapath, dataset, num_class, s, t, ckpt, extra=()):
    """The original README's inference command, with our config path and NUM_GPUS 0."""
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


def test_original_inference_command_names_the_missing_annotation_file(tmp_path):
    r = run_python(original_inference_args("/data_nvme/datasets/kinetics400", "kinetics", 400, 1, 5,
                                 "../pretrained_models/multitrain_release.v1.pyth",
                                 ["OUTPUT_DIR", str(tmp_path)]))
    assert r.returncode == 1
    assert "/data_nvme/datasets/kinetics400/pyslowfast_annotations/test.csv" in r.stderr
    assert "Traceback" not in r.stderr


def test_misspelled_key_fails_with_its_name():
    r = run_python([RUN_NET, "--cfg", MULTI, "TRAIN.GRAD_ACCU_NUM_BATCHES", "8"])
    assert r.returncode == 2
    assert "unknown config key TRAIN.GRAD_ACCU_NUM_BATCHES" in r.stderr


def test_config_is_written_to_output_dir(small_corpus, tmp_path):
    r = run_python([RUN_NET, "--cfg", DEMO_CONFIG, "TRAIN.ENABLE", "False", "TEST.ENABLE", "False"]
             + corpus_args(small_corpus, str(tmp_path)))
    assert r.returncode == 0, r.stderr[-2000:]
    from multitrain.config import load_config

    cfg = load_config(str(tmp_path / "config.yaml"))
    assert cfg.OUTPUT_DIR == str(tmp_path) and cfg.MODEL.MULTI_NUM_CLASSES == [6, 4, 4]


def test_original_layout_checkpoint_loads_for_test(small_corpus, tmp_path):
    """The original's weights (original key names, every tensor of its model; see
    `multitrain_first_clip_fixture`) wrapped as {"model_state": ...}."""
    fx = multitrain_first_clip_fixture(os.path.join(FIXTURES, "conformance"))
    ckpt = tmp_path / "original.pyth"
    torch.save({"model_state": fx["model_state"], "epoch": 10}, ckpt)
    opts = fx["config_overrides"]
    over = [str(v) if not isinstance(v, list) else repr(v) for v in opts]
    ds = os.path.join(small_corpus, "moments_in_time")  # 4 classes, as the fixture's mit head
    r = run_python([RUN_NET, "--cfg", MULTI, "NUM_GPUS", "0", "TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
              "TEST.DATASET", "mit", "DATA.NUM_CLASSES", "4", "TEST.NUM_ENSEMBLE_VIEWS", "1",
              "TEST.NUM_SPATIAL_CROPS", "1", "DATA.PATH_TO_DATA_DIR", os.path.join(ds, "pyslowfast_annotations"),
              "DATA.PATH_PREFIX", os.path.join(ds, "videos_320p"), "TEST.CHECKPOINT_FILE_PATH", str(ckpt),
              "DATA_LOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path / "out"), "LOG_MODEL_INFO", "False",
              "TEST.BATCH_SIZE", "4"] + over, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = open(tmp_path / "out" / "stdout.log").read()
    n = len(fx["model_state"])
    assert f"loaded {n}/{n} model tensors from {ckpt}" in log and '"_type": "test"' in log


@pytest.mark.slow
def test_original_inference_command_full_size_model_on_synthetic_videos(tmp_path):
    """The README's inference command end to end: MViTv2-B 32x3 (random weights: no file),
    multi-view testing of a few synthetic videos on the CPU."""
    from multitrain.preparation.synthetic import make_synthetic_corpus

    root = tmp_path / "corpus"
    make_synthetic_corpus(str(root), {"train": 1, "val": 1, "test": 1}, num_workers=2)
    ann = root / "kinetics400" / "pyslowfast_annotations" / "test.csv"
    ann.write_text("".join(ann.read_text().splitlines(keepends=True)[:2]))  # 2 videos
    r = run_python(original_inference_args(str(root / "kinetics400"), "kinetics", 6, 1, 2, "",
                                 ["OUTPUT_DIR", str(tmp_path / "out"), "TEST.BATCH_SIZE", "2",
                                  "MODEL.MULTI_NUM_CLASSES", "[6, 4, 4]"]), timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    log = open(tmp_path / "out" / "stdout.log").read()
    assert '"_type": "test"' in log and '"num_videos": 2' in log


@pytest.mark.slow
def test_original_training_command_two_shards_on_loopback(small_corpus, tmp_path):
    """The README's training command with NUM_GPUS 0, a smaller model and two shards."""
    port = free_port()
    cluster = os.path.join(REPO, "configs", "Multi_dataset",
                           "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_cluster_example.yaml")
    original = ["TRAIN.ENABLE", "True", "TRAIN.BATCH_SIZE", "4", "TRAIN.GRAD_ACCU_NUM_BATCH", "2", "NUM_GPUS", "0",
            "LOG_PERIOD", "1", "TRAIN.MIXED_PRECISION", "True", "DATA.DECODING_BACKEND", "decord",
            "MODEL.ACT_CHECKPOINT", "False", "LOG_MODEL_INFO", "False", "TRAIN.CHECKPOINT_FILE_PATH", "",
            "TRAIN.AUTO_RESUME", "True", "TRAIN.CHECKPOINT_EPOCH_RESET", "True", "TENSORBOARD.ENABLE", "True",
            "TENSORBOARD.LOG_DIR", "tb_log", "USE_TQDM", "True"]
    smaller = TINY_MVIT + ["DATA.NUM_FRAMES", "8", "DATA.SAMPLING_RATE", "2",
               "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
               "MODEL.MULTI_NUM_CLASSES", "[6, 4, 4]", "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0.5",
               "TRAIN.MAX_ITERS_PER_EPOCH", "2",
               "DATA_LOADER.NUM_WORKERS", "0", "DATA.VAL_SKIP", "4"]
    paths = corpus_args(small_corpus, str(tmp_path))
    wait_all([start_python([RUN_NET, "--cfg", cluster] + original + smaller + paths
                           + ["--init_method", f"tcp://127.0.0.1:{port}", "--num_shards", "2",
                              "--shard_id", str(i)]) for i in range(2)], timeout=600)
    assert os.listdir(tmp_path / "checkpoints")
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(tmp_path / "tb_log") for f in fs)
