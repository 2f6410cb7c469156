"""What `tools/run_net.py` runs: write the config, start the processes, train, then test."""
from __future__ import annotations

import logging
import os
import sys
from typing import Dict

import torch

from ..utils import paths
from ..utils.logging import setup_logging
from ..utils.rng import seed_everything
from . import distributed as du

logger = logging.getLogger(__name__)


def _user_errors():
    from ..checkpoint.checkpointer import CheckpointError
    from ..config import ConfigError
    from ..decoding.decoder import VideoDecodeError
    from .train_step import NonFiniteLossError

    return (ConfigError, CheckpointError, VideoDecodeError, NonFiniteLossError, FileNotFoundError)


USER_ERRORS = _user_errors()


def run(cfg, init_method=None) -> int:
    """Start the job (spawned, torchrun or SLURM) and return the exit status."""
    paths.mkdirs(cfg.OUTPUT_DIR)
    if cfg.SHARD_ID == 0 and not os.environ.get("RANK", "0").strip("0"):
        with paths.open_path(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(cfg.dump())
    try:
        du.launch(main_worker, cfg, init_method=init_method,
                  num_shards=cfg.NUM_SHARDS, shard_id=cfg.SHARD_ID)
    except USER_ERRORS as e:  # a problem of the inputs: say what, without a traceback
        logger.debug("details", exc_info=True)
        print(f"Error ({type(e).__name__}): {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of the step in progress
        print("Interrupted: stopped without a checkpoint of the step in progress; a resume "
              "starts from the newest checkpoint in OUTPUT_DIR/checkpoints", file=sys.stderr)
        return 130
    return 0


def main_worker(cfg) -> Dict[str, Dict[str, float]]:
    """One process of the job (distributed already initialised when world size > 1)."""
    rank = du.get_rank()
    setup_logging(cfg.OUTPUT_DIR, rank)
    seed_everything(cfg.RNG_SEED + rank)
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    if cfg.NUM_GPUS == 0 and "OMP_NUM_THREADS" not in os.environ:  # share the cores between ranks
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, du.get_local_size())))
    logger.info("command line: %s", " ".join(sys.argv))
    results: Dict[str, Dict[str, float]] = {}
    if cfg.TEST.ENABLE:  # a test that cannot run should fail before training, not after
        from .evaluator import check_test_config

        check_test_config(cfg)
    if cfg.TRAIN.ENABLE:
        from .trainer import Trainer

        trainer = Trainer(cfg)
        if cfg.LOG_MODEL_INFO and rank == 0:
            from ..models.model_info import log_model_info

            log_model_info(trainer.model, cfg)
        trainer.resume_or_init()
        results["val"] = trainer.train()
        if trainer.stopping:  # agreed by all ranks: a stop signal skips the test phase
            return results
    if cfg.TEST.ENABLE:
        results["test"] = run_test(cfg)
    return results


def run_test(cfg) -> Dict[str, float]:
    """Multi-view test of TEST.DATASET with the checkpoint TEST/TRAIN settings select."""
    from ..checkpoint import Checkpointer
    from ..data.loader import build_loader
    from ..models import build_model
    from .evaluator import multi_view_test

    device = du.current_device(cfg)
    # The annotations first: a wrong data path fails in a second, not after loading weights.
    loader = build_loader(cfg, "test", du.get_rank(), du.get_world_size())
    model = build_model(cfg).to(device)
    ckpt = Checkpointer(cfg.OUTPUT_DIR, model, rank=du.get_rank())
    ckpt.load_for_test(cfg)
    if cfg.LOG_MODEL_INFO and du.is_main_process() and not cfg.TRAIN.ENABLE:
        from ..models.model_info import log_model_info

        log_model_info(model, cfg)
    stats = multi_view_test(model, loader, cfg, device)
    logger.info("test %s (%d x %d views): %s", cfg.TEST.DATASET, cfg.TEST.NUM_ENSEMBLE_VIEWS,
                cfg.TEST.NUM_SPATIAL_CROPS, {k: round(v, 2) for k, v in stats.items()})
    if du.is_main_process():
        from .writers import write_json_stats

        write_json_stats("test", {"dataset": cfg.TEST.DATASET, **stats})
    return stats
