"""Video data: annotations, temporal sampling, datasets, the multi-dataset collate, loaders
and the clip recipes of raw batches on the training device.

Below it: ``multitrain.decoding`` (video readers) and ``multitrain.transforms`` (clip
transforms). Above it: ``multitrain.preparation`` (annotation files, resizing, the
synthetic corpus, the dataset checker) and ``multitrain.engine``.
"""
from .annotations import parse_annotation_csv
from .loader import ShardSampler, build_dataset, build_loader, per_process_batch_size
from .multi_dataset import MultiVideoDataset, collate_multi, expand_raw_batch
from .sampling import clip_indices, segment_indices, test_clip_indices, train_clip_indices
from .video_dataset import SampleKey, VideoDataset

__all__ = [
    "clip_indices", "train_clip_indices", "test_clip_indices", "segment_indices",
    "parse_annotation_csv", "VideoDataset", "SampleKey",
    "MultiVideoDataset", "collate_multi", "expand_raw_batch",
    "build_dataset", "build_loader", "ShardSampler", "per_process_batch_size",
]
