"""Video data: decoding, temporal sampling, datasets, the multi-dataset collate, loaders.

The clip transforms (RandAugment, crops, erasing, Mixup) live in ``multitrain.data.transforms``.
"""
from .annotations import parse_annotation_csv
from .decoder import VideoDecodeError, VideoReader, open_video
from .loader import ShardSampler, build_dataset, build_loader, per_process_batch_size
from .multi_dataset import MultiVideoDataset, collate_multi, expand_raw_batch
from .sampling import clip_indices, segment_indices, test_clip_indices, train_clip_indices
from .video_dataset import SampleKey, VideoDataset

__all__ = [
    "VideoDecodeError", "VideoReader", "open_video",
    "clip_indices", "train_clip_indices", "test_clip_indices", "segment_indices",
    "parse_annotation_csv", "VideoDataset", "SampleKey",
    "MultiVideoDataset", "collate_multi", "expand_raw_batch",
    "build_dataset", "build_loader", "ShardSampler", "per_process_batch_size",
]
