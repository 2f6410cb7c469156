"""Mixup / CutMix on multi-dataset batches: inputs, label sums, per-head smoothing, masks."""
import numpy as np
import pytest
import torch

from multitrain.transforms.mixup import (MixParams, MixUp, draw_mix_params, mix_inputs,
                                         mix_labels, mixup_from_cfg, one_hot, smooth_labels)

CLASSES = {"kinetics": 5, "mit": 4, "ssv2": 3}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def multi_batch(B=6):
    """Sample i belongs to dataset i mod 3; one-hot labels, zero rows elsewhere."""
    names = list(CLASSES)
    labels = {n: torch.zeros(B, k) for n, k in CLASSES.items()}
    masks = {n: torch.zeros(B) for n in CLASSES}
    for i in range(B):
        n = names[i % 3]
        labels[n][i, (2 * i + 1) % CLASSES[n]] = 1.0
        masks[n][i] = 1.0
    x = torch.randn(B, 3, 2, 8, 10)
    return x, labels, masks


def test_one_hot():
    y = one_hot(torch.tensor([0, 3, 1]), 4)
    assert torch.equal(y, torch.tensor([[1., 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        one_hot(torch.tensor([4]), 4)


def test_smoothing_uses_each_heads_own_class_count():
    _, labels, masks = multi_batch()
    out = mix_labels(labels, 1.0, 0.1)
    for name, k in CLASSES.items():
        m = masks[name].bool()
        assert torch.allclose(out[name][m].sum(1), torch.ones(int(m.sum())))  # rows sum to 1
        assert torch.allclose(out[name][m].min(1).values, torch.full((int(m.sum()),), 0.1 / k))
        assert torch.allclose(out[name][m].max(1).values, torch.full((int(m.sum()),), 0.9 + 0.1 / k))
        # other datasets' rows are smoothed too, as in the original: s / K everywhere
        assert torch.allclose(out[name][~m], torch.full_like(out[name][~m], 0.1 / k))


@pytest.mark.parametrize("lam", [0.3, 0.77])
def test_mixed_label_sums_and_values(lam):
    """Row i of head d = lam * smooth(y_i) + (1 - lam) * smooth(y_{B-1-i}), every row
    smoothed (a row of another dataset's sample sums to s): it sums to 1 when both samples
    come from d, lam + (1 - lam) s when only i does (smoothing mass s, as in the original
    with each head's own K); masks are not mixed (the loss only uses head d for samples of d)."""
    x, labels, masks = multi_batch(6)
    masks_before = {k: v.clone() for k, v in masks.items()}
    out = mix_labels(labels, lam, 0.1)
    for name, k in CLASSES.items():
        m = masks[name]
        partner = m.flip(0)
        expected_sum = lam * (m + (1 - m) * 0.1) + (1 - lam) * (partner + (1 - partner) * 0.1)
        assert torch.allclose(out[name].sum(1), expected_sum, atol=1e-6)
        every = torch.ones_like(m, dtype=torch.bool)
        smooth = smooth_labels(labels[name], 0.1, every)
        assert torch.allclose(out[name], lam * smooth + (1 - lam) * smooth.flip(0))
        own = m.bool() & ~partner.bool()  # partner from another dataset: the original's target
        y = labels[name][own]
        assert torch.allclose(out[name][own], lam * (0.9 * y + 0.1 / k) + (1 - lam) * 0.1 / k)
    assert all(torch.equal(masks[k], masks_before[k]) for k in masks)


def test_mixup_and_cutmix_inputs():
    x, _, _ = multi_batch()
    mixed = mix_inputs(x, MixParams(0.7))
    assert torch.allclose(mixed, 0.7 * x + 0.3 * x.flip(0))
    cut = mix_inputs(x, MixParams(0.5, (2, 6, 3, 8)))
    assert torch.equal(cut[..., 2:6, 3:8], x.flip(0)[..., 2:6, 3:8])
    outside = torch.ones(8, 10, dtype=torch.bool)
    outside[2:6, 3:8] = False
    assert torch.equal(cut[..., outside], x[..., outside])
    assert torch.equal(mix_inputs(x, MixParams(1.0)), x)


def test_cutmix_lambda_is_corrected_to_the_box():
    for seed in range(200):
        p = draw_mix_params(gen(seed), (8, 10), alpha=0.0, cutmix_alpha=1.0)
        assert p.box is not None
        y0, y1, x0, x1 = p.box
        assert 0 <= y0 <= y1 <= 8 and 0 <= x0 <= x1 <= 10
        assert p.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 80)


def test_draw_statistics_and_determinism():
    draws = [draw_mix_params(gen(s), (224, 224), 0.8, 1.0, prob=1.0, switch_prob=0.5)
             for s in range(2000)]
    cut = np.mean([d.box is not None for d in draws])
    assert 0.45 < cut < 0.55
    lams = np.array([d.lam for d in draws if d.box is None])
    assert abs(lams.mean() - 0.5) < 0.03 and 0 <= lams.min() and lams.max() <= 1  # Beta(.8,.8)
    assert draw_mix_params(gen(3), (224, 224)) == draw_mix_params(gen(3), (224, 224))
    never = [draw_mix_params(gen(s), (224, 224), prob=0.0) for s in range(20)]
    assert all(d.lam == 1.0 for d in never)


def test_mixup_from_cfg_on_a_multi_dataset_batch():
    from multitrain.config import get_cfg

    cfg = get_cfg()
    cfg.MIXUP.ENABLE, cfg.MIXUP.LABEL_SMOOTH_VALUE = True, 0.1
    x, labels, masks = multi_batch()
    out_x, out_y = mixup_from_cfg(x, labels, cfg, gen(0), masks=masks)
    again_x, again_y = MixUp.from_cfg(cfg)(x, labels, gen(0), masks)
    assert torch.equal(out_x, again_x) and all(torch.equal(out_y[k], again_y[k]) for k in out_y)
    assert out_x.shape == x.shape and set(out_y) == set(CLASSES)
    for name in CLASSES:
        assert out_y[name].shape == labels[name].shape
        assert (out_y[name].sum(1) <= 1 + 1e-6).all()
    # masks change nothing: every row is smoothed
    _, no_mask = mixup_from_cfg(x, labels, cfg, gen(0))
    assert all(torch.allclose(no_mask[k], out_y[k]) for k in out_y)


@pytest.mark.parametrize("alpha,cutmix_alpha", [(0.2, 5.0), (5.0, 0.2)])
def test_each_mode_draws_lambda_from_its_own_alpha(alpha, cutmix_alpha):
    """Mixup lambda ~ Beta(alpha, alpha): variance 1 / (4 (2 alpha + 1)); CutMix's comes from
    cutmix_alpha (peaked near 0.5 for 5.0, spread to the ends for 0.2). A mean of 0.5 holds
    for any symmetric Beta, so the spread is what tells the alphas apart."""
    mix = np.array([draw_mix_params(gen(s), (224, 224), alpha, cutmix_alpha, 1.0, 0.0).lam
                    for s in range(1000)])
    assert abs(mix.var() - 1 / (4 * (2 * alpha + 1))) < 0.03, mix.var()
    cut = np.array([draw_mix_params(gen(s), (224, 224), alpha, cutmix_alpha, 1.0, 1.0).lam
                    for s in range(1000)])
    assert (cut.var() < 0.03) if cutmix_alpha > 1 else (cut.var() > 0.045), cut.var()
