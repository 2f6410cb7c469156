"""AUG.ON_DEVICE: the workers decode only and the recipe runs on the batch; with the same
seeds it must give exactly the clips the workers make when they apply it themselves."""
import pytest
import torch

from mt_testing import first_batches, recipe_cfg
from multitrain.engine.batch import prepare_eval_inputs, prepare_train_batch


def test_train_clips_identical_in_workers_and_on_device(small_corpus, tmp_path):
    worker_cfg, device_cfg = (recipe_cfg(small_corpus, tmp_path, m) for m in (False, True))
    for step, (w, raw) in enumerate(zip(first_batches(worker_cfg, "train"),
                                        first_batches(device_cfg, "train"))):
        assert isinstance(raw["inputs"], list) and raw["inputs"][0].dtype == torch.uint8
        d = prepare_train_batch(raw, device_cfg, seed=(0, 1, step))
        assert d["inputs"].shape == w["inputs"].shape == (12, 3, 8, 32, 32)
        assert torch.equal(d["inputs"], w["inputs"])  # bit-identical on the CPU
        assert d["datasets"] == w["datasets"]
        for name in w["labels"]:
            assert torch.equal(d["labels"][name], w["labels"][name])
            assert torch.equal(d["masks"][name], w["masks"][name])
        # Two samples per video, drawn differently (not one clip shipped twice).
        assert not torch.equal(d["inputs"][0], d["inputs"][1])


def test_mixup_sees_the_same_batch_in_both_modes(small_corpus, tmp_path):
    extra = ["MIXUP.ENABLE", "True"]
    worker_cfg = recipe_cfg(small_corpus, tmp_path, False, extra)
    device_cfg = recipe_cfg(small_corpus, tmp_path, True, extra)
    w = prepare_train_batch(first_batches(worker_cfg, "train", 1)[0], worker_cfg, seed=(3, 1, 0))
    d = prepare_train_batch(first_batches(device_cfg, "train", 1)[0], device_cfg, seed=(3, 1, 0))
    assert torch.equal(d["inputs"], w["inputs"])
    for name in w["labels"]:
        assert torch.equal(d["labels"][name], w["labels"][name])


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_views_identical_in_workers_and_on_device(small_corpus, tmp_path, split):
    worker_cfg, device_cfg = (recipe_cfg(small_corpus, tmp_path, m) for m in (False, True))
    w = first_batches(worker_cfg, split, 1)[0]
    raw = first_batches(device_cfg, split, 1)[0]
    views = prepare_eval_inputs(raw, device_cfg)
    assert views.shape == w["inputs"].shape and views.dtype == torch.float32
    assert torch.equal(views, w["inputs"])


def _sub_batch(raw: dict, rows: slice) -> dict:
    """Videos ``rows`` of a raw (one row per video) batch."""
    out = dict(raw, inputs=raw["inputs"][rows], datasets=raw["datasets"][rows])
    out["labels"] = {d: v[rows] for d, v in raw["labels"].items()}
    out["masks"] = {d: v[rows] for d, v in raw["masks"].items()}
    for key, v in raw.items():
        if torch.is_tensor(v) and v.dim() == 1 and len(v) == len(raw["inputs"]):
            out[key] = v[rows]
    return out


def test_device_clips_depend_on_the_video_not_on_its_batch(small_corpus, tmp_path):
    """A video's clips are a function of its frames and seed only: the same videos in a
    smaller batch get the same clips (so a resumed run draws the same numbers)."""
    cfg = recipe_cfg(small_corpus, tmp_path, True)
    raw = first_batches(cfg, "train", 1)[0]
    full = prepare_train_batch(raw, cfg, seed=(0, 0, 0))
    part = prepare_train_batch(_sub_batch(raw, slice(2, 4)), cfg, seed=(0, 0, 0))
    assert torch.equal(part["inputs"], full["inputs"][4:8])
    assert part["datasets"] == full["datasets"][4:8]
