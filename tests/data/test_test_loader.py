"""The decode-once multi-view test loader: same items, same batches, one decoding per video."""
import functools
import os

import pytest
import torch
from torch.utils.data import DataLoader

import multitrain.data.video_dataset as video_dataset
from multitrain.decoding.decoder import VideoDecodeError
from multitrain.data.loader import ShardSampler
from multitrain.data.multi_dataset import collate_multi
from multitrain.data.test_loader import DecodeOnceTestLoader, group_views
from multitrain.data.video_dataset import VideoDataset


def make(corpus, dataset="kinetics", **kw):
    kw.setdefault("num_frames", 8)
    kw.setdefault("sampling_rate", 4)
    return VideoDataset("test", os.path.join(corpus.ann, dataset, "test.csv"), corpus.prefix,
                        dataset, 3, **kw)


def crop_transform(clip, spatial_idx):
    """A spatial-index-dependent float clip [3, T, 16, 16] (crop position from the index)."""
    x = clip.permute(3, 0, 1, 2).float().div(255)
    return x[:, :, :16, 8 * spatial_idx:8 * spatial_idx + 16]


@pytest.fixture
def open_count(monkeypatch):
    """Counts the real open_video calls of the dataset module (it still opens the file)."""
    calls = []
    real = video_dataset.open_video

    def counting(path, *a, **k):
        calls.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(video_dataset, "open_video", counting)
    return calls


def assert_items_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_tensor(a[k]):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("dataset,views,crops,transform", [
    ("kinetics", 3, 2, crop_transform),  # clip sampling, several temporal views
    ("kinetics", 2, 3, None),  # raw frames (AUG.ON_DEVICE)
    ("ssv2", 1, 3, crop_transform),  # segment sampling
])
def test_load_views_equals_per_view_items_with_one_opening(video_corpus, open_count, backend,
                                                           dataset, views, crops, transform):
    ds = make(video_corpus, dataset, num_ensemble_views=views, num_spatial_crops=crops,
              use_offset_sampling=True, transform=transform, backend=backend)
    per_video = views * crops
    for video in range(ds.num_videos):
        del open_count[:]
        got = ds.load_views(video, list(range(per_video)))
        assert len(open_count) == 1
        del open_count[:]
        ref = [ds[video * per_video + v] for v in range(per_video)]
        assert len(open_count) == per_video  # the per-view path opens the file per view
        assert len(got) == per_video
        for a, b in zip(got, ref):
            assert_items_equal(a, b)
    part = ds.load_views(1, [per_video - 1])  # a subset (the views of a shard's edge)
    assert_items_equal(part[0], ds[2 * per_video - 1])


def test_group_views_keeps_order_and_splits_by_video():
    assert group_views([4, 5, 6, 7, 8, 9, 10, 11, 12], 6) == [(0, [4, 5]), (1, [0, 1, 2, 3, 4, 5]),
                                                            (2, [0])]
    assert group_views([], 3) == []


def batches_of(loader):
    return [b for b in loader]


@pytest.mark.parametrize("world,batch,workers", [(1, 4, 0), (2, 5, 2), (3, 6, 1)])
def test_loader_gives_the_per_view_loaders_batches(video_corpus, open_count, world, batch, workers):
    ds = make(video_corpus, num_ensemble_views=2, num_spatial_crops=3, transform=crop_transform)
    collate = functools.partial(collate_multi, dataset_names=["kinetics"], num_classes=[3])
    for rank in range(world):
        sampler = ShardSampler(ds, num_replicas=world, rank=rank, shuffle=False, batch_size=batch,
                               pad=False)
        ref = batches_of(DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=0,
                                    collate_fn=collate))
        del open_count[:]
        loader = DecodeOnceTestLoader(ds, sampler, batch, workers, collate)
        got = batches_of(loader)
        if workers == 0:  # one opening per video of this shard (counted in this process)
            videos = {k.index // 6 for k in sampler}
            assert sorted(open_count) == sorted(ds.video_path(v) for v in videos)
        assert len(got) == len(ref) == len(loader)
        for a, b in zip(got, ref):
            assert a.keys() == b.keys()
            for k in a:
                if torch.is_tensor(a[k]):
                    assert torch.equal(a[k], b[k]), k
                elif isinstance(a[k], dict):
                    assert all(torch.equal(a[k][d], b[k][d]) for d in a[k]), k
                else:
                    assert a[k] == b[k], k


def test_loader_bad_file_is_an_error_naming_it(video_corpus):
    ds = make(video_corpus, "broken", num_ensemble_views=1, num_spatial_crops=3,
              transform=crop_transform)
    collate = functools.partial(collate_multi, dataset_names=["broken"], num_classes=[3])
    sampler = ShardSampler(ds, shuffle=False, batch_size=4, pad=False)
    with pytest.raises(VideoDecodeError) as e:
        batches_of(DecodeOnceTestLoader(ds, sampler, 4, 0, collate))
    assert video_corpus.bad["zero.mp4"] in str(e.value)
