"""Several VideoDatasets as one, and the collate that builds per-head labels and masks.

``MultiVideoDataset`` concatenates the datasets of ``MODEL.MULTI_DATASETS`` (dataset
``i`` repeated ``replicas[i]`` times); every item keeps its dataset name, so the collate
can build, for the per-dataset heads,

    labels[d]: [N, K_d] float one-/multi-hot (zero rows for samples of other datasets)
    masks[d]:  [N] float, 1 where the sample comes from dataset d.

The single-dataset case is the same thing with one dataset, so the trainer sees one
batch format.
"""
from __future__ import annotations

import bisect
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from .video_dataset import SampleKey, VideoDataset, _unpack

__all__ = ["MultiVideoDataset", "collate_multi", "expand_raw_batch"]


class MultiVideoDataset(Dataset):
    """Concatenation of ``datasets``, dataset ``i`` repeated ``replicas[i]`` times.

    Item ``g`` maps to (dataset ``i``, local item ``(g - offset_i) % len(dataset_i)``);
    the local dataset seeds its randomness with ``g``, so replicas differ.
    """

    def __init__(self, datasets: Sequence[VideoDataset], replicas: Optional[Sequence[int]] = None):
        if not datasets:
            raise ValueError("MultiVideoDataset needs at least one dataset")
        replicas = [1] * len(datasets) if replicas is None or len(replicas) == 0 else list(replicas)
        names = [d.dataset_name for d in datasets]
        if len(replicas) != len(datasets):
            raise ValueError(f"MODEL.MULTI_REPLICAS has {len(replicas)} entries for "
                             f"{len(datasets)} datasets {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"MODEL.MULTI_DATASETS has duplicate names: {names}")
        if any(int(r) < 1 for r in replicas):
            raise ValueError(f"MODEL.MULTI_REPLICAS must be >= 1, got {list(replicas)}")
        self.datasets = list(datasets)
        self.replicas = [int(r) for r in replicas]
        self.dataset_names = names
        self.num_classes = [d.num_classes for d in datasets]
        self._ends: List[int] = []
        total = 0
        for d, r in zip(self.datasets, self.replicas):
            total += len(d) * r
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1]

    def locate(self, item: int) -> Tuple[int, int]:
        """Global item -> (dataset position, local item)."""
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} outside [0, {len(self)})")
        i = bisect.bisect_right(self._ends, item)
        start = self._ends[i - 1] if i else 0
        return i, (item - start) % len(self.datasets[i])

    def __getitem__(self, key: Union[int, SampleKey]) -> dict:
        k = _unpack(key)
        i, local = self.locate(k.index)
        out = self.datasets[i].load(local, epoch=k.epoch, seed_item=k.index, pad=k.pad)
        out["item"] = int(k.index)
        return out

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    @property
    def num_failed(self) -> int:
        """Files replaced in THIS process (workers keep their own; sum ``num_replaced``)."""
        return sum(d.num_failed for d in self.datasets)

    def __repr__(self) -> str:
        parts = ", ".join(f"{d!r} x{r}" for d, r in zip(self.datasets, self.replicas))
        return f"MultiVideoDataset([{parts}], items={len(self)})"


def collate_multi(batch: Sequence[dict], dataset_names: Sequence[str],
                  num_classes: Sequence[int]) -> dict:
    """Collate items of (Multi)VideoDataset into one batch.

    Each item holds ``frames`` ``[K, 3, T, S, S]`` (K clips of one video: ``AUG.NUM_SAMPLE``
    in train, 1 in val/test); the K clips stay adjacent, so N = sum of K.

    Returns:
        inputs: ``[N, 3, T, S, S]`` float (raw items: list of B uint8 ``[T, H, W, 3]``).
        labels: ``{dataset: [N, K_d] float}`` one-/multi-hot; masks: ``{dataset: [N] float}``.
        datasets: list of N names; index (= video_index, the video's row in its
        dataset), item (sampler index), view (= view_index), spatial_idx, temporal_idx
        (test; -1 otherwise): ``[N]`` long;
        valid: ``[N]`` bool (False for sampler padding duplicates); flip: ``[N]`` bool;
        clips_per_video: K (raw items: 1); num_replaced: int, bad files replaced to make
        this batch (sum it for the epoch's count).
        Raw items (transform None) also give ``seeds``: ``[B]`` long, one per video.
    """
    if len(dataset_names) != len(num_classes):
        raise ValueError(f"collate_multi: {len(dataset_names)} names but {len(num_classes)} class counts")
    if not batch:
        raise ValueError("collate_multi: empty batch")
    col = {d: j for j, d in enumerate(dataset_names)}
    raw = "seed" in batch[0]
    reps = [1 if raw else int(b["frames"].shape[0]) for b in batch]
    n = sum(reps)
    labels = {d: torch.zeros(n, int(k)) for d, k in zip(dataset_names, num_classes)}
    masks = {d: torch.zeros(n) for d in dataset_names}
    row = 0
    for b, r in zip(batch, reps):
        name = b["dataset"]
        if name not in col:
            raise KeyError(f"collate_multi: item of dataset {name!r} not in {list(dataset_names)}")
        labels[name][row:row + r, b["label"]] = 1.0
        masks[name][row:row + r] = 1.0
        row += r

    def per_row(key: str, default: int = -1, dtype=torch.long) -> torch.Tensor:
        vals = torch.tensor([b.get(key, default) for b in batch], dtype=dtype)
        return vals.repeat_interleave(torch.tensor(reps))

    out = {
        "inputs": [b["frames"] for b in batch] if raw else torch.cat([b["frames"] for b in batch]),
        "labels": labels,
        "masks": masks,
        "datasets": [b["dataset"] for b, r in zip(batch, reps) for _ in range(r)],
        "index": per_row("index"),
        "video_index": per_row("index"),  # alias of index (test meters)
        "item": per_row("item"),
        "view": per_row("view"),
        "view_index": per_row("view"),  # alias of view (test meters)
        "spatial_idx": per_row("spatial_idx"),
        "temporal_idx": per_row("temporal_idx"),
        "valid": ~per_row("pad", False, torch.bool),
        "flip": per_row("flip", True, torch.bool),
        "clips_per_video": reps[0] if len(set(reps)) == 1 else reps,
        "num_replaced": int(sum(int(b.get("num_replaced", 0)) for b in batch)),
    }
    if raw:
        out["seeds"] = torch.tensor([int(b["seed"]) for b in batch], dtype=torch.long)
    return out


def expand_raw_batch(batch: dict, k: int) -> dict:
    """Repeat each per-video row of a raw batch ``k`` times (after on-device augmentation
    turned each video into ``k`` clips), keeping the clips of a video adjacent."""
    out = dict(batch)
    out["labels"] = {d: v.repeat_interleave(k, 0) for d, v in batch["labels"].items()}
    out["masks"] = {d: v.repeat_interleave(k, 0) for d, v in batch["masks"].items()}
    out["datasets"] = [d for d in batch["datasets"] for _ in range(k)]
    for key in ("index", "video_index", "item", "view", "view_index", "spatial_idx",
                "temporal_idx", "valid", "flip"):
        out[key] = batch[key].repeat_interleave(k, 0)
    out["clips_per_video"] = k
    return out
