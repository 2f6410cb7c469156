"""Multi-dataset concatenation, the batch format, samplers and loaders from the config."""
import os

import pytest
import torch

from multitrain.config import get_cfg
from multitrain.data.loader import (ShardSampler, build_dataset, build_loader,
                                    per_process_batch_size)
from multitrain.data.multi_dataset import MultiVideoDataset, collate_multi, expand_raw_batch
from multitrain.data.video_dataset import SampleKey, VideoDataset


def vds(corpus, name, classes, split="train", **kw):
    kw.setdefault("num_frames", 4)
    return VideoDataset(split, os.path.join(corpus.ann, name, f"{split}.csv"), corpus.prefix,
                        name, classes, **kw)


def multi_cfg(corpus, **over):
    cfg = get_cfg()
    cfg.TRAIN.DATASET = "multi_dataset_seq"
    cfg.MODEL.MULTI_DATASETS = ["kinetics", "ssv2"]
    cfg.MODEL.MULTI_NUM_CLASSES = [3, 2]
    cfg.MODEL.MULTI_REPLICAS = [1, 2]
    cfg.MODEL.MULTI_PATH_TO_DATA_DIR = [os.path.join(corpus.ann, n) for n in ("kinetics", "ssv2")]
    cfg.MODEL.MULTI_PATH_PREFIX = [corpus.prefix] * 2
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.AUG.NUM_SAMPLE, cfg.AUG.ON_DEVICE = 2, True  # raw frames: no transform package needed
    cfg.TRAIN.BATCH_SIZE, cfg.NUM_GPUS, cfg.DATA_LOADER.NUM_WORKERS = 4, 0, 0
    for k, v in over.items():
        cfg.merge_from_list([k, v])
    return cfg


def test_replicas_and_locate(video_corpus):
    m = MultiVideoDataset([vds(video_corpus, "kinetics", 3), vds(video_corpus, "ssv2", 2)], [2, 3])
    assert len(m) == 4 * 2 + 3 * 3
    assert m.locate(0) == (0, 0) and m.locate(5) == (0, 1) and m.locate(8) == (1, 0)
    assert m.locate(16) == (1, 2)
    names = [m.locate(i)[0] for i in range(len(m))]
    assert names.count(0) == 8 and names.count(1) == 9
    with pytest.raises(ValueError, match="MULTI_REPLICAS"):
        MultiVideoDataset([vds(video_corpus, "kinetics", 3)], [1, 1])


def test_collate_labels_masks_and_sample_adjacency(video_corpus, offset_transform):
    kin = vds(video_corpus, "kinetics", 3, transform=offset_transform, num_samples=2)
    ssv2 = vds(video_corpus, "ssv2", 2, transform=offset_transform, num_samples=2)
    m = MultiVideoDataset([kin, ssv2])
    items = [m[SampleKey(i, 0)] for i in (0, 5, 2)]  # kinetics 0, ssv2 1, kinetics 2
    b = collate_multi(items, ["kinetics", "ssv2"], [3, 2])
    assert b["inputs"].shape == (6, 3, 4, 16, 16) and b["clips_per_video"] == 2
    assert b["datasets"] == ["kinetics"] * 2 + ["ssv2"] * 2 + ["kinetics"] * 2
    assert b["labels"]["kinetics"].shape == (6, 3) and b["labels"]["ssv2"].shape == (6, 2)
    assert b["labels"]["kinetics"].tolist() == [[1, 0, 0]] * 2 + [[0, 0, 0]] * 2 + [[0, 0, 1]] * 2
    assert b["labels"]["ssv2"].tolist() == [[0, 0]] * 2 + [[0, 1]] * 2 + [[0, 0]] * 2
    assert b["masks"]["kinetics"].tolist() == [1, 1, 0, 0, 1, 1]
    assert b["masks"]["ssv2"].tolist() == [0, 0, 1, 1, 0, 0]
    assert b["index"].tolist() == [0, 0, 1, 1, 2, 2] and b["item"].tolist() == [0, 0, 5, 5, 2, 2]
    assert b["flip"].tolist() == [True, True, False, False, True, True]
    # The two clips of a video are its own NUM_SAMPLE samples, in order.
    assert torch.equal(b["inputs"][0:2], items[0]["frames"])
    assert torch.equal(b["inputs"][2:4], items[1]["frames"])
    assert b["valid"].all() and b["num_replaced"] == 0


def test_collate_multi_hot_and_unknown_dataset(video_corpus):
    item = {"frames": torch.zeros(1, 3, 2, 4, 4), "label": torch.tensor([0, 2]), "dataset": "mit",
            "index": 0}
    b = collate_multi([item], ["mit"], [4])
    assert b["labels"]["mit"].tolist() == [[1, 0, 1, 0]]
    with pytest.raises(KeyError, match="mit"):
        collate_multi([item], ["kinetics"], [4])


def test_raw_batches_keep_clips_and_seeds(video_corpus):
    m = MultiVideoDataset([vds(video_corpus, "kinetics", 3), vds(video_corpus, "ssv2", 2)])
    b = collate_multi([m[SampleKey(i, 0)] for i in (0, 4)], ["kinetics", "ssv2"], [3, 2])
    assert isinstance(b["inputs"], list) and b["inputs"][0].shape == (4, 64, 96, 3)
    assert b["inputs"][1].shape == (4, 60, 80, 3) and b["seeds"].shape == (2,)
    e = expand_raw_batch(b, 2)
    assert e["masks"]["ssv2"].tolist() == [0, 0, 1, 1] and e["datasets"][2] == "ssv2"
    assert e["labels"]["kinetics"].shape == (4, 3) and e["clips_per_video"] == 2


# --------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("n, world", [(17, 3), (24, 4), (5, 8)])
def test_unpadded_shards_cover_every_item_once(n, world):
    shards = [[k.index for k in ShardSampler(range(n), world, r, shuffle=False, pad=False)]
              for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n)) and max(map(len, shards)) - min(map(len, shards)) <= 1


def test_train_shards_are_padded_shuffled_and_a_function_of_seed_and_epoch():
    def epoch_keys(rank, epoch, seed=0):
        s = ShardSampler(range(10), 3, rank, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    shards = [epoch_keys(r, 1) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    flat = [k.index for s in shards for k in s]
    assert set(flat) == set(range(10)) and sum(k.pad for s in shards for k in s) == 2
    assert all(k.epoch == 1 for s in shards for k in s)
    assert epoch_keys(0, 1) == shards[0]  # a fresh sampler gives the same order
    assert [k.index for k in epoch_keys(0, 2)] != [k.index for k in shards[0]] or \
        [k.index for k in epoch_keys(1, 2)] != [k.index for k in shards[1]]


def test_set_start_iter_skips_whole_batches():
    s = ShardSampler(range(20), 2, 1, shuffle=True, seed=3, batch_size=3)
    s.set_epoch(4)
    full = list(s)
    s.set_start_iter(2)
    assert list(s) == full[6:] and len(s) == len(full)
    s.set_epoch(5)
    assert len(list(s)) == len(full)  # a new epoch starts from the beginning


def test_set_start_position_reshards_the_rest_of_the_epoch_over_any_world():
    def keys(world, rank, position=None, start_iter=None, bs=2):
        s = ShardSampler(range(23), world, rank, shuffle=True, seed=5, batch_size=bs)
        s.set_epoch(3)
        if position is not None:
            s.set_start_position(position)
        if start_iter is not None:
            s.set_start_iter(start_iter)
        return list(s)

    order = torch.randperm(23, generator=torch.Generator().manual_seed(5 + 3)).tolist()
    # an aligned position is the same as skipping whole batches (unchanged world: exact resume)
    for r in range(2):
        assert keys(2, r, position=8) == keys(2, r, start_iter=2)
    # after 6 videos consumed by 2 ranks, 3 ranks share the other 17 (+1 padding), each once
    rest = [keys(3, r, position=6) for r in range(3)]
    real = [k.index for s in rest for k in s if not k.pad]
    assert sorted(real) == sorted(order[6:]) and len(real) == len(set(real))
    assert [len(s) for s in rest] == [6, 6, 6] and sum(k.pad for s in rest for k in s) == 1
    # the same position, one rank: the rest of the order, in order
    assert [k.index for k in keys(1, 0, position=7)] == order[7:]
    with pytest.raises(ValueError):
        ShardSampler(range(4), 1, 0, pad=False).set_start_position(2)


# --------------------------------------------------------------------------- from the config
def test_per_process_batch_size():
    cfg = get_cfg()
    cfg.TRAIN.BATCH_SIZE, cfg.NUM_GPUS, cfg.NUM_SHARDS = 64, 8, 2
    assert per_process_batch_size(cfg, "train") == 4
    cfg.TEST.BATCH_SIZE = 32
    assert per_process_batch_size(cfg, "test") == 2
    cfg.NUM_GPUS = 0  # CPU: one process per shard
    assert per_process_batch_size(cfg, "train") == 32
    cfg.TRAIN.BATCH_SIZE = 1
    with pytest.raises(ValueError, match="TRAIN.BATCH_SIZE"):
        per_process_batch_size(cfg, "train")


def test_build_dataset_multi_and_single(video_corpus):
    cfg = multi_cfg(video_corpus)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert train.dataset_names == ["kinetics", "ssv2"] and len(train) == 4 + 2 * 3
    assert val.replicas == [1, 1] and len(val) == 4 + 3
    assert [d.temporal_sampling for d in train.datasets] == ["clip", "segment"]
    assert [d.random_flip for d in train.datasets] == [True, False]
    cfg.DATA.VAL_SKIP = 2
    assert len(build_dataset(cfg, "val")) == 2 + 2
    cfg.TRAIN.DATASET, cfg.DATA.PATH_TO_DATA_DIR = "kinetics", os.path.join(video_corpus.ann, "kinetics")
    cfg.DATA.PATH_PREFIX, cfg.DATA.NUM_CLASSES = video_corpus.prefix, 3
    single = build_dataset(cfg, "train")
    assert single.dataset_names == ["kinetics"] and len(single) == 4
    cfg.TEST.DATASET, cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = "kinetics", 2, 3
    test = build_dataset(cfg, "test")
    assert isinstance(test, VideoDataset) and len(test) == 4 * 6
    cfg.MODEL.MULTI_NUM_CLASSES = [3]
    cfg.TRAIN.DATASET = "multi_dataset_seq"
    with pytest.raises(ValueError, match="MULTI_NUM_CLASSES"):
        build_dataset(cfg, "train")


def test_train_loader_batches(video_corpus):
    cfg = multi_cfg(video_corpus)
    loader = build_loader(cfg, "train")
    assert loader.batch_size == 4 and loader.drop_last and len(loader) == 10 // 4
    loader.sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert len(b["inputs"]) == 4 and b["seeds"].shape == (4,)
    assert set(b["labels"]) == {"kinetics", "ssv2"}
    assert (b["masks"]["kinetics"] + b["masks"]["ssv2"]).tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="world_size"):
        build_loader(cfg, "train", rank=0, world_size=2)


def test_test_loader_every_view_once_across_ranks(video_corpus):
    cfg = multi_cfg(video_corpus, **{"TEST.DATASET": "kinetics", "TEST.NUM_ENSEMBLE_VIEWS": 2,
                                     "TEST.NUM_SPATIAL_CROPS": 1, "TEST.BATCH_SIZE": 4,
                                     "NUM_SHARDS": 3})
    cfg.DATA.PATH_TO_DATA_DIR = os.path.join(video_corpus.ann, "kinetics")
    cfg.DATA.PATH_PREFIX, cfg.DATA.NUM_CLASSES = video_corpus.prefix, 3
    seen = []
    for rank in range(3):
        for b in build_loader(cfg, "test", rank=rank, world_size=3):
            assert b["inputs"][0].dtype == torch.uint8
            seen += list(zip(b["video_index"].tolist(), b["view_index"].tolist()))
    assert sorted(seen) == [(v, k) for v in range(4) for k in range(2)]


def test_worker_processes_follow_the_epoch_and_report_replacements(video_corpus, offset_transform):
    """Persistent workers: the epoch rides in the sampler keys; num_replaced comes back."""
    cfg = get_cfg()
    cfg.TRAIN.DATASET, cfg.NUM_GPUS, cfg.TRAIN.BATCH_SIZE = "broken", 0, 2
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = os.path.join(video_corpus.ann, "broken"), video_corpus.prefix
    cfg.DATA.NUM_CLASSES, cfg.DATA.NUM_FRAMES, cfg.DATA_LOADER.NUM_WORKERS = 2, 4, 2
    ds = build_dataset(cfg, "train", transform=offset_transform)
    loader = build_loader(cfg, "train", dataset=ds)
    runs = {}
    for epoch in (0, 1, 0):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert sum(b["num_replaced"] for b in batches) >= 4  # 5 bad of 7, 6 items seen
        runs.setdefault(epoch, []).append(torch.cat([b["inputs"] for b in batches]))
    assert torch.equal(runs[0][0], runs[0][1])
    assert not torch.equal(runs[0][0], runs[1][0])
    # Same items loaded in this process (no workers) give the same tensors.
    loader.sampler.set_epoch(1)
    keys = list(loader.sampler)[:2]
    local = torch.cat([ds[k]["frames"] for k in keys])
    assert torch.equal(local, runs[1][0][: local.shape[0]])
