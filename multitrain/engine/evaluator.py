"""Validation (per-dataset top-1/top-5 of single clips, mAP of multi-label sets) and
multi-view testing of one dataset."""
from __future__ import annotations

import logging
import os
from typing import Dict

import torch

from ..config import ConfigError
from ..utils.progress import progress, set_postfix
from . import distributed as du
from .batch import move_batch, prepare_eval_inputs
from .meters import TestMeter, ValMeter
from .metrics import mean_average_precision

logger = logging.getLogger(__name__)


def _probs(model, x: torch.Tensor, dataset: str, multi_head: bool) -> torch.Tensor:
    """Eval-mode probabilities of `dataset`'s head: [B, K]."""
    return model(x, dataset_name=dataset if multi_head else None, output="probs")


@torch.no_grad()
def validate(model, loader, cfg, device) -> Dict[str, float]:
    """Top-1/top-5 per dataset (each sample through its own dataset's head) and their mean;
    also the mAP of multi-label datasets (see :func:`is_multi_label`).

    A sample is correct at k if any of its positive labels is among its k best classes.
    """
    model.eval()
    multi = cfg.MODEL.USE_MULTI_HEAD
    meter = ValMeter((1, 5), list(cfg.MODEL.MULTI_DATASETS) if multi else ())
    kept: Dict[str, list] = {}  # multi-label dataset -> [(probs, labels)] for the mAP
    bar = progress(loader, cfg, "val")
    for batch in bar:
        batch = move_batch(batch, device)
        x = prepare_eval_inputs(batch, cfg)
        for name, mask in batch["masks"].items():
            sel = mask > 0
            if not sel.any():
                continue
            probs = _probs(model, x[sel], name, multi)
            labels = batch["labels"][name][sel]
            meter.update({name: probs}, {name: labels})
            if is_multi_label(cfg, name):
                kept.setdefault(name, []).append((probs.float().cpu(), labels.float().cpu()))
        set_postfix(bar, top1=meter.top1())
    model.train()
    meter.synchronize()
    stats = meter.summary()
    for name in meter.counts:
        if is_multi_label(cfg, name):
            k = head_classes(cfg, name)
            probs, labels = (_gather_rows([p[i] for p in kept.get(name, [])], torch.zeros(0, k), cfg)
                             for i in (0, 1))
            if probs.shape[0]:
                stats[f"{name}_mAP"] = mean_average_precision(probs, labels)
    logger.info("validation: %s", {k: round(v, 2) for k, v in stats.items()})
    return stats


def _gather_rows(parts, empty: torch.Tensor, cfg) -> torch.Tensor:
    """Concatenate this rank's parts (`empty` when it has none), then those of all ranks
    (rank order)."""
    rows = torch.cat(parts) if parts else empty
    if du.get_world_size() > 1:  # every rank takes part, with or without rows
        rows = du.all_gather(rows.to(du.current_device(cfg))).cpu()
    return rows


def head_classes(cfg, name: str) -> int:
    """Classes of dataset `name`'s head (the single head's for a single-head model)."""
    m = cfg.MODEL
    if m.USE_MULTI_HEAD:
        return int(m.MULTI_NUM_CLASSES[list(m.MULTI_DATASETS).index(name)])
    return int(m.NUM_CLASSES)


def is_multi_label(cfg, name: str) -> bool:
    """Whether dataset `name` is scored as multi-label (mAP reported): its head's eval
    activation is sigmoid."""
    m = cfg.MODEL
    if m.USE_MULTI_HEAD:
        names = list(m.MULTI_DATASETS)
        return name in names and m.MULTI_HEAD_ACT[names.index(name)] == "sigmoid"
    return m.HEAD_ACT == "sigmoid"


def _multi_hot(labels, num_classes: int) -> torch.Tensor:
    """[V, K] 0/1 matrix from each video's list of positive classes."""
    out = torch.zeros(len(labels), num_classes)
    for i, positives in enumerate(labels):
        out[i, list(positives)] = 1.0
    return out


def test_dataset_head(cfg) -> str:
    """The head a test uses: TEST.DATASET's (TRAIN.DATASET's with DATA.MODEL_DIFF_DATA)."""
    return cfg.TRAIN.DATASET if cfg.DATA.MODEL_DIFF_DATA else cfg.TEST.DATASET


def check_test_config(cfg) -> None:
    """Raise ConfigError (one line, naming the keys) when the tested head does not exist or
    its class count differs from DATA.NUM_CLASSES (without DATA.MODEL_DIFF_DATA)."""
    head, m = test_dataset_head(cfg), cfg.MODEL
    if m.USE_MULTI_HEAD and head not in m.MULTI_DATASETS:
        raise ConfigError(f"TRAIN.DATASET {head!r} (the head DATA.MODEL_DIFF_DATA tests through) is not "
                          f"among MODEL.MULTI_DATASETS {list(m.MULTI_DATASETS)}")
    k = head_classes(cfg, head)
    if not cfg.DATA.MODEL_DIFF_DATA and cfg.DATA.NUM_CLASSES != k:
        key = (f"MODEL.MULTI_NUM_CLASSES[{list(m.MULTI_DATASETS).index(head)}]" if m.USE_MULTI_HEAD
               else "MODEL.NUM_CLASSES")
        raise ConfigError(f"DATA.NUM_CLASSES = {cfg.DATA.NUM_CLASSES} (labels of TEST.DATASET {head!r}) "
                          f"differs from {key} = {k} of its head; set DATA.NUM_CLASSES {k}, or "
                          "DATA.MODEL_DIFF_DATA True to score it with TRAIN.DATASET's head")


@torch.no_grad()
def multi_view_test(model, loader, cfg, device) -> Dict[str, float]:
    """Ensemble every view of every test video; top-1/top-5 (and mAP for a multi-label
    set) over videos. With DATA.MODEL_DIFF_DATA the videos are scored by TRAIN.DATASET's
    head: scores only, no accuracy (the label spaces differ).

    Views are gathered from all ranks first; each (video, view) counts exactly once.
    """
    model.eval()
    head = test_dataset_head(cfg)
    own_labels = head == cfg.TEST.DATASET
    dataset = loader.dataset
    num_classes = head_classes(cfg, head)
    meter = TestMeter(num_videos=dataset.num_videos, num_classes=num_classes,
                      num_views=cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS,
                      ensemble_method=cfg.DATA.ENSEMBLE_METHOD,
                      multi_label=cfg.DATA.MULTI_LABEL or is_multi_label(cfg, head))
    parts = {"probs": [], "video": [], "view": []}
    for batch in progress(loader, cfg, "test"):
        batch = move_batch(batch, device)
        probs = _probs(model, prepare_eval_inputs(batch, cfg), head, cfg.MODEL.USE_MULTI_HEAD)
        parts["probs"].append(probs.float().cpu())
        parts["video"].append(batch["video_index"].cpu())
        parts["view"].append(batch["view_index"].cpu())
    # Shards are unpadded and may differ by a batch: gather once, after the loop.
    empty = {"probs": torch.zeros(0, num_classes), "video": torch.zeros(0), "view": torch.zeros(0)}
    probs, video_idx, view_idx = (_gather_rows(v, empty[k], cfg) for k, v in parts.items())
    meter.update(probs, video_idx.long(), view_idx.long())
    if own_labels:
        meter.set_labels(_multi_hot(dataset.video_labels(), dataset.num_classes))
    else:
        logger.info("DATA.MODEL_DIFF_DATA: %s videos scored by the %s head; no accuracy",
                    cfg.TEST.DATASET, head)
    stats = meter.finalize(with_accuracy=own_labels)
    if cfg.TEST.ENABLE_SAVE and du.is_main_process():
        path = cfg.TEST.SAVE_RESULTS_PATH or os.path.join(cfg.OUTPUT_DIR, f"test_scores_{cfg.TEST.DATASET}.npy")
        meter.save(path, paths=dataset.video_paths(), dataset=cfg.TEST.DATASET, head=head)
    model.train()
    return stats
