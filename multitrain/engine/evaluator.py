"""Validation (per-dataset top-1/top-5 of single clips) and multi-view testing of one dataset."""
from __future__ import annotations

import logging
import os
from typing import Dict

import torch

from . import distributed as du
from .batch import move_batch, prepare_eval_inputs
from .meters import TestMeter
from .metrics import topk_correct

logger = logging.getLogger(__name__)


def _probs(model, x: torch.Tensor, dataset: str, multi_head: bool) -> torch.Tensor:
    """Eval-mode probabilities of `dataset`'s head: [B, K]."""
    return model(x, dataset_name=dataset if multi_head else None, output="probs")


@torch.no_grad()
def validate(model, loader, cfg, device) -> Dict[str, float]:
    """Top-1/top-5 per dataset (each sample through its own dataset's head) and their mean.

    A sample is correct at k if any of its positive labels is among its k best classes.
    """
    model.eval()
    multi = cfg.MODEL.USE_MULTI_HEAD
    counts: Dict[str, torch.Tensor] = {}  # dataset -> [correct@1, correct@5, n]
    for batch in loader:
        batch = move_batch(batch, device)
        x = prepare_eval_inputs(batch, cfg)
        for name, mask in batch["masks"].items():
            sel = mask > 0
            if not sel.any():
                continue
            probs = _probs(model, x[sel], name, multi)
            labels = batch["labels"][name][sel]
            c = counts.setdefault(name, torch.zeros(3, dtype=torch.float64))
            k5 = min(5, probs.shape[1])
            c[0] += float(topk_correct(probs, labels, 1))
            c[1] += float(topk_correct(probs, labels, k5))
            c[2] += int(sel.sum())
    model.train()
    stats: Dict[str, float] = {}
    names = list(cfg.MODEL.MULTI_DATASETS) if multi else list(counts)
    for name in names:
        c = du.all_reduce_sum(counts.get(name, torch.zeros(3, dtype=torch.float64)))
        if c[2] > 0:
            stats[f"{name}_top1_acc"] = 100.0 * float(c[0] / c[2])
            stats[f"{name}_top5_acc"] = 100.0 * float(c[1] / c[2])
    top1 = [v for k, v in stats.items() if k.endswith("_top1_acc")]
    if top1:
        stats["mean_top1_acc"] = sum(top1) / len(top1)
    logger.info("validation: %s", {k: round(v, 2) for k, v in stats.items()})
    return stats


def _multi_hot(labels, num_classes: int) -> torch.Tensor:
    """[V, K] 0/1 matrix from each video's list of positive classes."""
    out = torch.zeros(len(labels), num_classes)
    for i, positives in enumerate(labels):
        out[i, list(positives)] = 1.0
    return out


def test_dataset_head(cfg) -> str:
    """The head a test uses: TEST.DATASET's (TRAIN.DATASET's with DATA.MODEL_DIFF_DATA)."""
    return cfg.TRAIN.DATASET if cfg.DATA.MODEL_DIFF_DATA else cfg.TEST.DATASET


@torch.no_grad()
def multi_view_test(model, loader, cfg, device) -> Dict[str, float]:
    """Ensemble every view of every test video; top-1/top-5 over videos.

    Views are gathered from all ranks first; each (video, view) counts exactly once.
    """
    model.eval()
    head = test_dataset_head(cfg)
    dataset = loader.dataset
    meter = TestMeter(num_videos=dataset.num_videos, num_classes=dataset.num_classes,
                      num_views=cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS,
                      ensemble_method=cfg.DATA.ENSEMBLE_METHOD)
    parts = {"probs": [], "video": [], "view": []}
    for batch in loader:
        batch = move_batch(batch, device)
        probs = _probs(model, prepare_eval_inputs(batch, cfg), head, cfg.MODEL.USE_MULTI_HEAD)
        parts["probs"].append(probs.float().cpu())
        parts["video"].append(batch["video_index"].cpu())
        parts["view"].append(batch["view_index"].cpu())
    # Shards are unpadded and may differ by a batch: gather once, after the loop.
    empty = {"probs": torch.zeros(0, dataset.num_classes), "video": torch.zeros(0), "view": torch.zeros(0)}
    probs, video_idx, view_idx = (torch.cat(v) if v else empty[k] for k, v in parts.items())
    if du.get_world_size() > 1:
        probs, video_idx, view_idx = (du.all_gather(t.to(du.current_device(cfg))).cpu()
                                      for t in (probs, video_idx, view_idx))
    meter.update(probs, video_idx.long(), view_idx.long())
    meter.set_labels(_multi_hot(dataset.video_labels(), dataset.num_classes))
    stats = meter.finalize()
    if cfg.TEST.ENABLE_SAVE and du.is_main_process():
        name = cfg.TEST.SAVE_RESULTS_PATH or f"test_scores_{cfg.TEST.DATASET}.pt"
        path = os.path.join(cfg.OUTPUT_DIR, name)
        meter.save(path, paths=dataset.video_paths(), dataset=cfg.TEST.DATASET)
    model.train()
    return stats
