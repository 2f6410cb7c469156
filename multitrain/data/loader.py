"""Datasets and DataLoaders from the config: the only place of multitrain.data that reads cfg.

* ``build_dataset(cfg, split)``: train/val -> :class:`MultiVideoDataset` (the datasets of
  ``MODEL.MULTI_DATASETS`` with ``TRAIN.DATASET multi_dataset_seq``, else the one dataset
  ``TRAIN.DATASET`` from ``DATA.PATH_TO_DATA_DIR``); test -> the :class:`VideoDataset`
  of ``TEST.DATASET`` from ``DATA.PATH_TO_DATA_DIR`` / ``DATA.PATH_PREFIX``.
* ``build_loader(cfg, split, rank, world_size)``: per-process batch of
  ``int(BATCH_SIZE / max(1, NUM_GPUS) / NUM_SHARDS)`` videos (test: views), a
  :class:`ShardSampler` and :func:`collate_multi`; test with ``TEST.DECODE_ONCE``: the
  same batches from a :class:`~multitrain.data.test_loader.DecodeOnceTestLoader`.

Sampler contract (used by the trainer for exact resume): the order of an epoch is a pure
function of ``(RNG_SEED, epoch)``; ``set_epoch(e)`` selects it (and resets the start),
``set_start_iter(i)`` then skips the first ``i`` batches of this epoch, and
``set_start_position(p)`` the first ``p`` items of the epoch's global order, whatever the
number of ranks that consumed them (the rest is re-sharded over this run's ranks). ``len(loader)``
stays the full epoch length. Train shards are padded to equal length (as
DistributedSampler does; the loader drops the last partial batch); val and test shards
are contiguous and unpadded, so every item is seen exactly once across ranks (ranks may
differ by one batch: evaluation must gather after the loop, not per step).
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Iterator, List

import torch
from torch.utils.data import DataLoader, DistributedSampler

from .multi_dataset import MultiVideoDataset, collate_multi
from .video_dataset import (SampleKey, VideoDataset, default_random_flip,
                            default_temporal_sampling)

__all__ = ["build_dataset", "build_loader", "ShardSampler", "per_process_batch_size",
           "build_transform", "MULTI_DATASET_NAME"]

logger = logging.getLogger(__name__)

MULTI_DATASET_NAME = "multi_dataset_seq"  # TRAIN.DATASET value for MODEL.MULTI_DATASETS


class ShardSampler(DistributedSampler):
    """A DistributedSampler whose epoch order is a pure function of (seed, epoch), that
    can start mid-epoch, and that yields :class:`SampleKey` (index, epoch, pad) so the
    dataset's per-item randomness follows the epoch even in persistent workers.

    Args:
        batch_size: per-process batch size, the unit of :meth:`set_start_iter`.
        pad: True = DistributedSampler layout (order padded with its own head to a
            multiple of ``num_replicas``, rank r takes positions r, r+W, ...); False =
            contiguous unpadded shards (rank r takes ``[r*N//W, (r+1)*N//W)``).
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, batch_size: int = 1, pad: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.batch_size, self.pad, self.start_iter, self.start_position = int(batch_size), pad, 0, 0
        n = len(dataset)
        if not pad:
            self.num_samples = (rank + 1) * n // num_replicas - rank * n // num_replicas
            self.total_size = n

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s order and start it from the beginning."""
        super().set_epoch(epoch)
        self.start_iter, self.start_position = 0, 0

    def set_start_iter(self, start_iter: int) -> None:
        """Skip the first ``start_iter`` batches of the current epoch (call after set_epoch)."""
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.start_iter = int(start_iter)

    def set_start_position(self, position: int) -> None:
        """Start the current epoch after the first ``position`` items of its global order,
        consumed by any number of ranks; the rest is sharded over this sampler's ranks
        (padded with the order's head). For a ``position`` that is a multiple of
        ``batch_size * num_replicas`` this equals ``set_start_iter(position //
        (batch_size * num_replicas))``. Train (padded) samplers only; call after set_epoch."""
        if position < 0 or not self.pad:
            raise ValueError(f"set_start_position({position}): needs a position >= 0 and a "
                             "padded (train) sampler")
        self.start_iter, self.start_position = 0, int(position)

    def global_order(self) -> List[int]:
        """The current epoch's order of all items, a function of (seed, epoch) only."""
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        g = torch.Generator().manual_seed(int(self.seed) + int(self.epoch))
        return torch.randperm(n, generator=g).tolist()

    def epoch_keys(self, start: int = 0) -> List[SampleKey]:
        """This rank's keys for the current epoch after the first ``start`` items of the
        global order (ignores start_iter and start_position)."""
        order = self.global_order()
        n = len(order)
        if not self.pad:
            lo, hi = self.rank * n // self.num_replicas, (self.rank + 1) * n // self.num_replicas
            return [SampleKey(i, self.epoch, False) for i in order[lo:hi]]
        rest = order[min(start, n):]
        flags = [False] * len(rest)
        extra = -len(rest) % self.num_replicas
        while extra > 0:  # repeat the head of the order, as DistributedSampler does
            take = min(extra, n)
            rest += order[:take]
            flags += [True] * take
            extra -= take
        return [SampleKey(rest[p], self.epoch, flags[p])
                for p in range(self.rank, len(rest), self.num_replicas)]

    def __iter__(self) -> Iterator[SampleKey]:
        keys = self.epoch_keys(self.start_position)
        return iter(keys[self.start_iter * self.batch_size:])

    def __len__(self) -> int:
        return self.num_samples


def per_process_batch_size(cfg, split: str) -> int:
    """Videos (test: views) per process: int(global / max(1, NUM_GPUS) / NUM_SHARDS)."""
    key = "TEST.BATCH_SIZE" if split == "test" else "TRAIN.BATCH_SIZE"
    total = cfg.TEST.BATCH_SIZE if split == "test" else cfg.TRAIN.BATCH_SIZE
    bs = int(total / max(1, cfg.NUM_GPUS) / cfg.NUM_SHARDS)
    if bs < 1:
        raise ValueError(f"{key} {total} gives {bs} per process with NUM_GPUS {cfg.NUM_GPUS} "
                         f"and NUM_SHARDS {cfg.NUM_SHARDS}; it counts all processes together")
    return bs


# ---------------------------------------------------------------------------- datasets
def _dataset_specs(cfg, split: str) -> List[dict]:
    """(name, csv folder, prefix, classes) of each dataset the split reads."""
    if split == "test":
        return [dict(name=cfg.TEST.DATASET, dir=cfg.DATA.PATH_TO_DATA_DIR,
                     prefix=cfg.DATA.PATH_PREFIX, classes=cfg.DATA.NUM_CLASSES, replicas=1)]
    if cfg.TRAIN.DATASET != MULTI_DATASET_NAME:
        return [dict(name=cfg.TRAIN.DATASET, dir=cfg.DATA.PATH_TO_DATA_DIR,
                     prefix=cfg.DATA.PATH_PREFIX, classes=cfg.DATA.NUM_CLASSES, replicas=1)]
    m = cfg.MODEL
    names = list(m.MULTI_DATASETS)
    if not names:
        raise ValueError(f"TRAIN.DATASET {MULTI_DATASET_NAME} needs MODEL.MULTI_DATASETS")
    replicas = list(m.MULTI_REPLICAS) or [1] * len(names)
    for key in ("MULTI_PATH_TO_DATA_DIR", "MULTI_PATH_PREFIX", "MULTI_NUM_CLASSES"):
        if len(m[key]) != len(names):
            raise ValueError(f"MODEL.{key} has {len(m[key])} entries but MODEL.MULTI_DATASETS "
                             f"has {len(names)} ({names})")
    if len(replicas) != len(names):
        raise ValueError(f"MODEL.MULTI_REPLICAS has {len(replicas)} entries for {len(names)} datasets")
    return [dict(name=n, dir=d, prefix=p, classes=int(k), replicas=int(r) if split == "train" else 1)
            for n, d, p, k, r in zip(names, m.MULTI_PATH_TO_DATA_DIR, m.MULTI_PATH_PREFIX,
                                     m.MULTI_NUM_CLASSES, replicas)]


def _random_flip(cfg, name: str) -> bool:
    return bool(cfg.DATA.RANDOM_FLIP) and default_random_flip(name)


def build_transform(cfg, split: str, dataset_name: str):
    """The clip transform of one dataset and split (None = raw frames, augmented on the
    device with ``AUG.ON_DEVICE``). Signatures: see :class:`VideoDataset`."""
    if cfg.AUG.ON_DEVICE:
        return None
    from .. import transforms as T
    return T.build_clip_transform(cfg, split, dataset_name, random_flip=_random_flip(cfg, dataset_name))


def build_video_dataset(cfg, split: str, spec: dict, transform="auto") -> VideoDataset:
    d = cfg.DATA
    csv_path = os.path.join(spec["dir"], f"{split}.csv")
    if transform == "auto":
        transform = build_transform(cfg, split, spec["name"])
    return VideoDataset(
        split, csv_path, spec["prefix"], spec["name"], spec["classes"],
        num_frames=d.NUM_FRAMES, sampling_rate=d.SAMPLING_RATE, target_fps=d.TARGET_FPS,
        num_ensemble_views=cfg.TEST.NUM_ENSEMBLE_VIEWS, num_spatial_crops=cfg.TEST.NUM_SPATIAL_CROPS,
        use_offset_sampling=d.USE_OFFSET_SAMPLING,
        temporal_sampling=d.TEMPORAL_SAMPLING or default_temporal_sampling(spec["name"]),
        random_flip=_random_flip(cfg, spec["name"]), transform=transform,
        num_samples=cfg.AUG.NUM_SAMPLE if split == "train" else 1, backend=d.DECODING_BACKEND,
        separator=d.PATH_LABEL_SEPARATOR, multi_label=d.MULTI_LABEL,
        val_skip=d.VAL_SKIP if split == "val" else 1, decode_retries=d.DECODE_RETRIES,
        seed=cfg.RNG_SEED)


def build_dataset(cfg, split: str, transform="auto"):
    """train/val: MultiVideoDataset (one or several datasets); test: VideoDataset.

    ``transform="auto"`` builds each dataset's transform from the config; pass a callable
    (or None for raw frames) to override it for every dataset (tests, tools).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    specs = _dataset_specs(cfg, split)
    datasets = [build_video_dataset(cfg, split, s, transform) for s in specs]
    if split == "test":
        return datasets[0]
    return MultiVideoDataset(datasets, [s["replicas"] for s in specs])


# ---------------------------------------------------------------------------- loader
def _check_world(cfg, world_size: int) -> None:
    expected = max(1, cfg.NUM_GPUS) * cfg.NUM_SHARDS
    if world_size != expected:
        raise ValueError(f"build_loader: world_size {world_size} but NUM_GPUS {cfg.NUM_GPUS} x "
                         f"NUM_SHARDS {cfg.NUM_SHARDS} means {expected} processes")


def build_loader(cfg, split: str, rank: int = 0, world_size: int = 1,
                 dataset=None) -> DataLoader:
    """DataLoader of ``split`` for process ``rank`` of ``world_size``.

    Batches are :func:`collate_multi` dicts. ``loader.sampler`` is a :class:`ShardSampler`
    (call ``set_epoch`` each epoch, ``set_start_iter`` to resume mid-epoch).
    """
    _check_world(cfg, world_size)
    dataset = build_dataset(cfg, split) if dataset is None else dataset
    bs = per_process_batch_size(cfg, split)
    train = split == "train"
    sampler = ShardSampler(dataset, num_replicas=world_size, rank=rank, shuffle=train,
                           seed=cfg.RNG_SEED, batch_size=bs, pad=train)
    if isinstance(dataset, MultiVideoDataset):
        names, classes = dataset.dataset_names, dataset.num_classes
    else:
        names, classes = [dataset.dataset_name], [dataset.num_classes]
    if train and len(sampler) < bs:
        raise ValueError(f"{split}: {len(sampler)} items per process < batch size {bs}; "
                         f"every batch would be dropped")
    workers = int(cfg.DATA_LOADER.NUM_WORKERS)
    collate = functools.partial(collate_multi, dataset_names=names, num_classes=classes)
    pin = bool(cfg.DATA_LOADER.PIN_MEMORY) and torch.cuda.is_available()
    if split == "test" and cfg.TEST.DECODE_ONCE:
        from .test_loader import DecodeOnceTestLoader

        return DecodeOnceTestLoader(dataset, sampler, bs, workers, collate, pin)
    return DataLoader(
        dataset, batch_size=bs, sampler=sampler, num_workers=workers,
        collate_fn=collate, pin_memory=pin,
        drop_last=train,
        # Epochs travel inside SampleKey, so persistent workers stay correct; test runs once.
        persistent_workers=workers > 0 and split != "test",
    )
