"""The multi-view test loader that decodes each video once.

A test item of :class:`VideoDataset` is one view (temporal view x spatial crop) of one
video; loading items one by one decodes a video once per view (6 times for 2 x 3
views). :class:`DecodeOnceTestLoader` gives the same batches, in the same order, as a
``DataLoader`` over those items with the same :class:`ShardSampler` and batch size, but
its workers load whole videos (:meth:`VideoDataset.load_views`: every temporal span in
one decoder pass, then every crop) and the main process cuts the views into batches.
A video split between two ranks' shards is decoded by both, for its own views only.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, List, Sequence, Tuple

from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.pin_memory import pin_memory

from .video_dataset import VideoDataset

__all__ = ["DecodeOnceTestLoader", "group_views"]


def group_views(items: Sequence[int], views_per_video: int) -> List[Tuple[int, List[int]]]:
    """Consecutive test items as ``(video, [views])`` runs, in the items' order."""
    groups: List[Tuple[int, List[int]]] = []
    for item in items:
        video, view = divmod(int(item), views_per_video)
        if groups and groups[-1][0] == video:
            groups[-1][1].append(view)
        else:
            groups.append((video, [view]))
    return groups


class _VideoGroups(Dataset):
    """Item ``g``: the list of test items of group ``g`` (one video, several views)."""

    def __init__(self, dataset: VideoDataset, groups: List[Tuple[int, List[int]]]):
        self.dataset, self.groups = dataset, groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, g: int) -> List[dict]:
        video, views = self.groups[g]
        return self.dataset.load_views(video, views)


def _as_list(items: List[dict]) -> List[dict]:
    return items


class DecodeOnceTestLoader:
    """Batches of ``batch_size`` test views of ``sampler``'s items (the last may be
    shorter), collated by ``collate_fn``; ``num_workers`` processes decode whole videos.

    Exposes ``dataset``, ``sampler`` and ``batch_size`` like a ``DataLoader``.
    """

    def __init__(self, dataset: VideoDataset, sampler, batch_size: int, num_workers: int,
                 collate_fn: Callable[[List[dict]], dict], pin_memory: bool = False):
        self.dataset, self.sampler, self.batch_size = dataset, sampler, int(batch_size)
        self.num_workers, self.collate_fn, self.pin_memory = int(num_workers), collate_fn, pin_memory

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def _items(self) -> List[int]:
        keys = list(iter(self.sampler))
        if any(k.pad for k in keys):
            raise ValueError("DecodeOnceTestLoader: the test sampler must not pad")
        return [k.index for k in keys]

    def __iter__(self) -> Iterator[dict]:
        groups = group_views(self._items(), self.dataset.views_per_video)
        videos = DataLoader(_VideoGroups(self.dataset, groups), batch_size=None, shuffle=False,
                            num_workers=self.num_workers, collate_fn=_as_list)
        pending: List[dict] = []
        for items in videos:
            pending.extend(items)
            while len(pending) >= self.batch_size:
                yield self._collate(pending[:self.batch_size])
                pending = pending[self.batch_size:]
        if pending:
            yield self._collate(pending)

    def _collate(self, items: List[dict]) -> dict:
        batch = self.collate_fn(items)
        return pin_memory(batch) if self.pin_memory else batch  # as DataLoader pins
