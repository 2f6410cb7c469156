"""One generic video dataset for every action-recognition set (K400, MiT, SSv2, ...).

Datasets differ only in their annotation files and two per-dataset settings that
default from the name: the temporal sampling kind ("clip" or "segment", SSv2 ->
segment) and whether horizontal flips are allowed (never for SSv2, whose classes say
left and right).

Items:
  * train/val: item ``i`` is video ``i``; one decoded clip per item, passed through
    ``transform`` ``num_samples`` times (train) or once (val).
  * test: item ``i`` is view ``i % V`` of video ``i // V`` with ``V = ensemble views x
    spatial crops``; view ``v`` is temporal view ``v // crops`` and spatial crop
    ``v % crops``. Nothing is dropped; a bad file is an error naming it.
    :meth:`VideoDataset.load_views` gives several views of one video from one decoding
    (the test loader of :mod:`multitrain.data.test_loader` uses it).

Randomness: every item draws from its own ``torch.Generator`` seeded from
``(seed, epoch, item, attempt)``, so an item is reproducible whatever worker loads it
and whatever came before it (exact resume). The epoch travels with the index when the
sampler yields :class:`SampleKey` (so persistent workers see it); a plain ``int`` index
uses the epoch of :meth:`VideoDataset.set_epoch`.

Bad files (train/val): tried ``decode_retries`` times, then replaced by a random video of
the same dataset; every replacement is logged with the path and reason, counted in
``num_failed`` (this process) and reported in the item as ``num_replaced`` (so the
trainer can sum it across loader workers).
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import parse_annotation_csv
from ..decoding.decoder import BACKENDS, VideoDecodeError, open_video
from .sampling import clip_indices, segment_indices

__all__ = ["VideoDataset", "SampleKey", "sample_seed", "recipe_generator",
           "default_temporal_sampling",
           "default_random_flip", "SEGMENT_DATASETS", "SPLITS"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SEGMENT_DATASETS = ("ssv2",)  # names whose defaults are segment sampling and no flip
Transform = Callable[..., torch.Tensor]


class SampleKey(NamedTuple):
    """What the samplers of :mod:`multitrain.data.loader` yield instead of a bare int."""

    index: int
    epoch: int = -1  # -1: use the dataset's set_epoch() value
    pad: bool = False  # a padding duplicate added to equalise shards (val)


def _unpack(key: Union[int, SampleKey, Tuple]) -> SampleKey:
    if isinstance(key, SampleKey):
        return key
    if isinstance(key, (tuple, list)):
        return SampleKey(*key)
    return SampleKey(int(key))


def sample_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. base seed, epoch, item, attempt)."""
    words = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2)
    return int((int(words[0]) << 31) ^ int(words[1])) & 0x7FFFFFFFFFFFFFFF


def recipe_generator(seed: int) -> torch.Generator:
    """The generator an item's clip recipe draws from, seeded from the item's recipe seed;
    the same in the loader workers and on the device (``AUG.ON_DEVICE``), so both make the
    same clips."""
    return torch.Generator().manual_seed(int(seed))


def default_temporal_sampling(dataset_name: str) -> str:
    """"segment" for SSv2-like datasets, "clip" otherwise."""
    return "segment" if dataset_name.lower() in SEGMENT_DATASETS else "clip"


def default_random_flip(dataset_name: str) -> bool:
    """Flips are allowed except for SSv2-like datasets."""
    return dataset_name.lower() not in SEGMENT_DATASETS


class VideoDataset(Dataset):
    """Videos of one annotation CSV.

    Args:
        split: "train", "val" or "test".
        csv_path: the split file (``relative/path<SEP>label`` lines).
        path_prefix: folder the CSV's paths are relative to.
        dataset_name: e.g. "kinetics", "mit", "ssv2"; tags every item.
        num_classes: labels must lie in ``[0, num_classes)``.
        num_frames, sampling_rate, target_fps: clip ``T`` and spacing (clip sampling).
        num_ensemble_views, num_spatial_crops, use_offset_sampling: test views.
        temporal_sampling: "clip" | "segment" | None (from the name).
        random_flip: None (from the name) or a bool; exposed for the transform builder
            and reported per item as ``flip`` (on-device augmentation needs it).
        transform: train/val ``transform(clip_uint8 [T,H,W,3], generator) -> [3,T,S,S]``;
            test ``transform(clip_uint8, spatial_idx) -> [3,T,S,S]``; None returns the
            raw uint8 frames plus a per-item ``seed`` for augmenting elsewhere.
        num_samples: train clips per decoded video (``AUG.NUM_SAMPLE``).
        backend: decoder, "decord" or "pyav".
        separator, multi_label: annotation format (``DATA.PATH_LABEL_SEPARATOR``,
            ``DATA.MULTI_LABEL``).
        val_skip: val keeps every ``val_skip``-th line.
        decode_retries: tries of one file before it is replaced (train/val).
        max_replacements: replacements per item before giving up (all files bad).
        seed: base seed of the per-item generators.
    """

    def __init__(self, split: str, csv_path: str, path_prefix: str, dataset_name: str,
                 num_classes: int, *, num_frames: int = 8, sampling_rate: int = 8,
                 target_fps: float = 30, num_ensemble_views: int = 1,
                 num_spatial_crops: int = 1, use_offset_sampling: bool = False,
                 temporal_sampling: Optional[str] = None, random_flip: Optional[bool] = None,
                 transform: Optional[Transform] = None, num_samples: int = 1,
                 backend: str = "decord", separator: str = " ", multi_label: bool = False,
                 val_skip: int = 1, decode_retries: int = 3, max_replacements: int = 100,
                 seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        kind = temporal_sampling or default_temporal_sampling(dataset_name)
        if kind not in ("clip", "segment"):
            raise ValueError(f"DATA.TEMPORAL_SAMPLING: expected 'clip', 'segment' or '', "
                             f"got {temporal_sampling!r}")
        if str(backend).lower() not in BACKENDS:
            raise ValueError(f"DATA.DECODING_BACKEND: unknown backend {backend!r}; expected one "
                             f"of {sorted(BACKENDS)}")
        if num_samples < 1 or num_ensemble_views < 1 or num_spatial_crops < 1:
            raise ValueError(f"{dataset_name}: num_samples, num_ensemble_views and "
                             f"num_spatial_crops must be >= 1")
        self.split, self.dataset_name, self.num_classes = split, dataset_name, num_classes
        self.path_prefix, self.csv_path = path_prefix, csv_path
        self.num_frames, self.sampling_rate, self.target_fps = num_frames, sampling_rate, target_fps
        self.num_ensemble_views, self.num_spatial_crops = num_ensemble_views, num_spatial_crops
        self.use_offset_sampling = use_offset_sampling
        self.temporal_sampling = kind
        self.random_flip = default_random_flip(dataset_name) if random_flip is None else bool(random_flip)
        self.transform, self.num_samples, self.backend = transform, num_samples, backend
        self.decode_retries, self.max_replacements = max(1, decode_retries), max_replacements
        self.seed, self.epoch = seed, 0
        rows = parse_annotation_csv(csv_path, separator, num_classes, multi_label)
        if split == "val" and val_skip > 1:
            rows = rows[::val_skip]
        self.videos: List[str] = [r[0] for r in rows]
        self.labels: List[List[int]] = [r[1] for r in rows]
        self.num_failed = 0  # files replaced in this process (see num_replaced per item)
        self.failed_paths: Dict[str, str] = {}  # path -> reason, this process

    # ------------------------------------------------------------------ sizes, epochs
    @property
    def views_per_video(self) -> int:
        """Items per video: 1 in train/val, ensemble views x spatial crops in test."""
        return self.num_ensemble_views * self.num_spatial_crops if self.split == "test" else 1

    def __len__(self) -> int:
        return len(self.videos) * self.views_per_video

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by items requested with a plain int index."""
        self.epoch = int(epoch)

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    def video_path(self, video: int) -> str:
        return os.path.join(self.path_prefix, self.videos[video])

    def video_paths(self) -> List[str]:
        """Full paths of the videos, in CSV order (after VAL_SKIP)."""
        return [self.video_path(v) for v in range(len(self.videos))]

    def video_labels(self) -> List[List[int]]:
        """Positive class indices of each video, in CSV order."""
        return [list(l) for l in self.labels]

    def __getitem__(self, key: Union[int, SampleKey]) -> dict:
        k = _unpack(key)
        return self.load(k.index, epoch=k.epoch, pad=k.pad)

    def load(self, item: int, epoch: int = -1, seed_item: Optional[int] = None,
             pad: bool = False) -> dict:
        """Item ``item`` of this dataset; ``seed_item`` (default ``item``) keys its RNG
        (a wrapping dataset passes its own global index so replicas differ)."""
        if not 0 <= item < len(self):
            raise IndexError(f"{self.dataset_name} {self.split}: item {item} outside [0, {len(self)})")
        epoch = self.epoch if epoch < 0 else epoch
        seed_item = item if seed_item is None else seed_item
        out = self._test_item(item) if self.split == "test" else \
            self._train_item(item, epoch, seed_item)
        return self._tag(out, item, pad)

    def _tag(self, out: dict, item: int, pad: bool = False) -> dict:
        out.update(dataset=self.dataset_name, item=int(item), pad=bool(pad),
                   flip=self.random_flip)
        return out

    # ------------------------------------------------------------------ decoding
    def _frame_indices(self, reader, view: int, generator: Optional[torch.Generator]) -> List[int]:
        if self.temporal_sampling == "segment":
            return segment_indices(reader.num_frames, self.num_frames,
                                   train=self.split == "train", generator=generator)
        return clip_indices(reader.num_frames, reader.fps, self.num_frames, self.sampling_rate,
                            self.target_fps, view=view, num_views=self.num_ensemble_views,
                            use_offset=self.use_offset_sampling, generator=generator)

    def decode(self, video: int, view: int = -1,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decode the clip of ``video``: ``view`` -1 = random (train/val), else test view.

        Returns:
            uint8 ``[num_frames, H, W, 3]`` at the decoded size.
        """
        with open_video(self.video_path(video), self.backend) as reader:
            return reader.get_frames(self._frame_indices(reader, view, generator))

    def _label(self, video: int) -> torch.Tensor:
        return torch.tensor(self.labels[video], dtype=torch.long)

    # ------------------------------------------------------------------ train / val
    def _decode_robust(self, video: int, epoch: int, seed_item: int
                       ) -> Tuple[int, torch.Tensor, torch.Generator, int]:
        """Decode ``video``, replacing it by random videos of this dataset while it fails.

        Returns ``(video actually used, frames [T,H,W,3], its generator, replacements)``.
        """
        # Seeds depend only on (item, epoch, replacements so far, retry), never on what
        # this process happened to learn earlier (its known-bad list), so an item is the
        # same in any worker, on any run, as long as the files fail the same way.
        replaced = 0
        while True:
            path = self.video_path(video)
            reason = self.failed_paths.get(path)
            if reason is None:  # not known bad in this process: try it
                for retry in range(self.decode_retries):
                    g = torch.Generator().manual_seed(
                        sample_seed(self.seed, epoch, seed_item, replaced, retry))
                    try:
                        return video, self.decode(video, -1, g), g, replaced
                    except VideoDecodeError as e:
                        reason = e.reason
                self.failed_paths[path] = reason
            replaced += 1
            self.num_failed += 1
            logger.warning("%s %s: skipping bad video %s (%s); replaced by another video of "
                           "the same dataset [%d replaced in this worker]", self.dataset_name,
                           self.split, path, reason, self.num_failed)
            if replaced > self.max_replacements:
                raise RuntimeError(f"{self.dataset_name} {self.split}: {replaced} bad videos in a "
                                   f"row (last: {path}: {reason}); check {self.csv_path} and "
                                   f"{self.path_prefix}")
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, seed_item, replaced, -1, 1))
            video = int(torch.randint(len(self.videos), (1,), generator=g))

    def _train_item(self, video: int, epoch: int, seed_item: int) -> dict:
        video, frames, g, replaced = self._decode_robust(video, epoch, seed_item)
        out = {"label": self._label(video), "index": video, "num_replaced": replaced}
        # The clip recipe draws from its own generator seeded here, in both modes, so the
        # workers (transform given) and the device (AUG.ON_DEVICE: seed shipped) make the
        # same clips from the same decoded frames.
        aug_seed = int(torch.randint(2**62, (1,), generator=g))
        if self.transform is None:
            out["frames"] = frames  # uint8 [T, H, W, 3]
            out["seed"] = aug_seed
        else:
            k = self.num_samples if self.split == "train" else 1
            g_aug = recipe_generator(aug_seed)
            many = getattr(self.transform, "sample", None)  # TrainClipRecipe: no stacking copy
            out["frames"] = (many(frames, g_aug, k) if many is not None else
                             torch.stack([self.transform(frames, g_aug) for _ in range(k)]))
        return out

    # ------------------------------------------------------------------ test
    def _test_item(self, item: int) -> dict:
        video, view = divmod(item, self.views_per_video)
        frames = self.decode(video, view=view // self.num_spatial_crops)  # names a bad file
        return self._test_view(video, view, frames)

    def _test_view(self, video: int, view: int, frames: torch.Tensor) -> dict:
        """The test item of ``view`` of ``video`` from its temporal view's frames."""
        temporal, spatial = divmod(view, self.num_spatial_crops)
        item = video * self.views_per_video + view
        out = {"label": self._label(video), "index": video, "view": view,
               "temporal_idx": temporal, "spatial_idx": spatial, "num_replaced": 0}
        if self.transform is None:
            out["frames"] = frames
            out["seed"] = sample_seed(self.seed, item)
        else:
            out["frames"] = self.transform(frames, spatial).unsqueeze(0)
        return out

    def decode_views(self, video: int, temporal_views: Sequence[int]) -> List[torch.Tensor]:
        """The frames of several test temporal views of ``video`` from one opened reader
        and one ``get_frames`` call over all their indices (each frame decoded once).

        Returns:
            one uint8 ``[num_frames, H, W, 3]`` per entry of ``temporal_views``.
        """
        with open_video(self.video_path(video), self.backend) as reader:
            spans = [self._frame_indices(reader, int(t), None) for t in temporal_views]
            frames = reader.get_frames([i for span in spans for i in span])
        return list(torch.split(frames, [len(span) for span in spans]))

    def load_views(self, video: int, views: Sequence[int]) -> List[dict]:
        """Test items of ``views`` of ``video``, equal to ``load(video * V + view)`` for
        each, with the video opened and decoded once for all of them."""
        if self.split != "test":
            raise ValueError(f"{self.dataset_name} {self.split}: load_views is for the test split")
        if not 0 <= video < self.num_videos:
            raise IndexError(f"{self.dataset_name} test: video {video} outside [0, {self.num_videos})")
        temporal = sorted({int(v) // self.num_spatial_crops for v in views})
        frames = dict(zip(temporal, self.decode_views(video, temporal)))
        out = []
        for view in views:
            d = self._test_view(video, int(view), frames[int(view) // self.num_spatial_crops])
            out.append(self._tag(d, video * self.views_per_video + int(view)))
        return out

    def __repr__(self) -> str:
        return (f"VideoDataset({self.dataset_name!r}, split={self.split!r}, videos="
                f"{len(self.videos)}, items={len(self)}, sampling={self.temporal_sampling!r}, "
                f"flip={self.random_flip}, backend={self.backend!r})")
