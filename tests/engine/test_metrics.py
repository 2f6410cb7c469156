"""Top-k metrics (single- and multi-label), multi-view test ensembling."""

import numpy as np
import pytest
import torch

from multitrain.engine.meters import TestMeter, ValMeter
from multitrain.engine.metrics import (accuracy_from_counts, per_dataset_topk_correct,
                                       topk_accuracy, topk_correct)

SCORES = torch.tensor([[0.1, 0.5, 0.2, 0.15, 0.05],   # ranking 1, 2, 3, 0, 4
                       [0.7, 0.1, 0.05, 0.1, 0.05],   # ranking 0, then 1/3 tie, ...
                       [0.0, 0.1, 0.2, 0.3, 0.4]])    # ranking 4, 3, 2, 1, 0


def test_topk_single_label():
    labels = torch.tensor([1, 3, 0])  # top-1 hit; in top-3; last place
    assert topk_correct(SCORES, labels, (1, 2, 5)) == [1, 1, 3]
    assert topk_correct(SCORES, labels, (1, 3)) == [1, 2]
    assert topk_correct(SCORES, labels, 1) == 1  # one int in, one int out
    assert topk_accuracy(SCORES, labels, (1, 5)) == pytest.approx([100 / 3, 100.0])
    assert topk_correct(SCORES, labels, (10,)) == [3]  # k above C counts as C


def test_topk_multi_label_any_positive():
    labels = torch.zeros(3, 5)
    labels[0, [3, 4]] = 1  # best positive (class 3) at rank 3
    labels[1, [0, 2]] = 1  # top-1
    labels[2, 1] = 1       # rank 4
    assert topk_correct(SCORES, labels, (1, 2, 3, 4)) == [1, 1, 2, 3]
    soft = labels * 0.3    # any non-zero entry is positive by default
    assert topk_correct(SCORES, soft, (1, 3)) == [1, 2]
    assert topk_correct(SCORES, soft, (1, 3), pos_threshold=0.5) == [0, 0]


def test_topk_errors_and_empty():
    with pytest.raises(ValueError, match="out of range"):
        topk_correct(SCORES, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match="3 score rows but 2 labels"):
        topk_correct(SCORES, torch.tensor([0, 1]))
    assert topk_correct(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) == [0, 0]


def test_per_dataset_counts_and_accuracy_dict():
    scores = {"k400": torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]),
              "ssv2": torch.tensor([[0.3, 0.3, 0.4], [0.5, 0.2, 0.3], [0.1, 0.8, 0.1]])}
    labels = {"k400": torch.tensor([[1.0, 0], [1.0, 0], [1.0, 0]]),
              "ssv2": torch.tensor([[0, 0, 1.0], [0, 1.0, 0], [0, 1.0, 0]])}
    masks = {"k400": torch.tensor([1, 1, 0]), "ssv2": torch.tensor([0, 0, 1])}
    counts = per_dataset_topk_correct(scores, labels, masks, ks=(1, 2))
    assert counts == {"k400": {"num": 2, "correct": [1, 2]}, "ssv2": {"num": 1, "correct": [1, 1]}}
    acc = accuracy_from_counts(counts, ks=(1, 2))
    assert acc == pytest.approx({"k400_top1_acc": 50.0, "k400_top2_acc": 100.0,
                                 "ssv2_top1_acc": 100.0, "ssv2_top2_acc": 100.0,
                                 "mean_top1_acc": 75.0})
    empty = accuracy_from_counts({"mit": {"num": 0, "correct": [0, 0]}})
    assert empty == {}


def test_val_meter_accumulates_batches():
    vm = ValMeter(ks=(1,))
    vm.update({"a": torch.tensor([[1.0, 0.0]])}, {"a": torch.tensor([0])})
    vm.update({"a": torch.tensor([[1.0, 0.0], [1.0, 0.0]])}, {"a": torch.tensor([1, 1])})
    vm.synchronize()  # single process: unchanged
    assert vm.summary() == pytest.approx({"a_top1_acc": 100 / 3, "mean_top1_acc": 100 / 3})
    assert vm.top1() == pytest.approx(100 / 3)
    named = ValMeter(ks=(1, 5), names=("a", "b"))  # "b" never seen: no keys, not in the mean
    named.update({"a": torch.tensor([[0.0, 1.0, 0.0]])}, {"a": torch.tensor([1])})
    assert named.counts["b"] == {"num": 0, "correct": [0, 0]}
    assert named.summary() == {"a_top1_acc": 100.0, "a_top5_acc": 100.0, "mean_top1_acc": 100.0}


def _views(num_videos=3, num_views=4, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(num_videos, num_views, classes, generator=g), -1)
    vid = torch.arange(num_videos).repeat_interleave(num_views)
    view = torch.arange(num_views).repeat(num_videos)
    return probs, vid, view


@pytest.mark.parametrize("method", ["sum", "max"])
def test_test_meter_ensembles_each_view_once(method):
    probs, vid, view = _views()
    labels = torch.tensor([2, 0, 4])
    expected = probs.sum(1) if method == "sum" else probs.max(1).values
    tm = TestMeter(3, 5, 4, ensemble_method=method)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    flat = probs.reshape(12, 5)
    tm.update(flat[order[:7]], vid[order[:7]], view[order[:7]], labels=labels[vid[order[:7]]])
    tm.update(flat[order[7:]], vid[order[7:]], view[order[7:]])
    tm.update(flat[order[:3]], vid[order[:3]], view[order[:3]])  # sampler padding repeats
    tm.set_labels(labels)
    res = tm.finalize()
    assert torch.allclose(tm.scores(), expected, atol=1e-6)
    assert res["duplicate_views"] == 3 and res["missing_views"] == 0 and res["num_videos"] == 3
    correct = (expected.argmax(1) == labels).sum().item()
    assert res["top1"] == pytest.approx(100.0 * correct / 3)
    assert res["top5"] == 100.0


def test_test_meter_missing_views_and_save(tmp_path):
    probs, vid, view = _views()
    tm = TestMeter(3, 5, 4)
    keep = vid < 2  # video 2 never tested
    tm.update(probs.reshape(12, 5)[keep], vid[keep], view[keep], labels=torch.tensor([1, 1, 1, 1, 3, 3, 3, 3]))
    res = tm.finalize()
    assert res["missing_views"] == 4 and res["num_videos"] == 2
    assert torch.equal(tm.scores()[2], torch.zeros(5))
    # the original's file: np.save of the [videos, classes] scores (".npy" appended by numpy)
    assert tm.save(str(tmp_path / "scores"), paths=["a.mp4", "b.mp4", "c.mp4"]) == str(tmp_path / "scores.npy")
    scores = np.load(tmp_path / "scores.npy")
    assert scores.dtype == np.float32 and np.array_equal(scores, tm.scores().numpy())
    saved = torch.load(tmp_path / "scores.details.pt", weights_only=True)
    assert saved["seen"].shape == (3, 4) and saved["paths"][2] == "c.mp4"
    assert torch.equal(saved["labels"][:2], torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="view index"):
        tm.update(probs[0, :1], torch.tensor([0]), torch.tensor([4]))
    with pytest.raises(ValueError, match="ENSEMBLE_METHOD"):
        TestMeter(1, 1, 1, ensemble_method="mean")


def test_mean_average_precision_by_hand():
    from multitrain.engine.metrics import mean_average_precision

    scores = torch.tensor([[.9, .1, .5], [.8, .7, .5], [.3, .2, .5], [.1, .6, .5]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])  # class 2: no positive
    # class 0: positives ranked 1st and 3rd -> (1/1 + 2/3) / 2; class 1: ranked 1st -> 1
    assert mean_average_precision(scores, labels) == pytest.approx(100 * (5 / 6 + 1) / 2)
    # ties form one threshold: all four tied, 2 positives -> precision 2/4 at recall 1
    assert mean_average_precision(torch.ones(4, 1), labels[:, :1]) == pytest.approx(50.0)
    assert mean_average_precision(scores, torch.tensor([0, 1, 0, 0])) == pytest.approx(
        100 * ((1 + 2 / 3 + 3 / 4) / 3 + 1) / 2)


def test_test_meter_reports_map_for_multi_label_sets():
    labels = torch.tensor([[1., 0, 1], [0, 1, 0]])
    tm = TestMeter(2, 3, 1, multi_label=True)
    tm.update(torch.tensor([[.9, .2, .1], [.1, .8, .3]]), torch.tensor([0, 1]), torch.tensor([0, 0]),
              labels=labels)
    res = tm.finalize()
    # class 0 AP 1, class 1 AP 1, class 2: the positive video ranks 2nd -> 1/2
    assert res["mAP"] == pytest.approx(100 * (1 + 1 + 0.5) / 3) and res["top1"] == 100.0
    no_acc = tm.finalize(with_accuracy=False)
    assert "top1" not in no_acc and "mAP" not in no_acc and no_acc["num_videos"] == 2
