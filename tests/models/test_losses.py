"""Losses against straightforward hand-written formulas on small tensors."""
import math

import pytest
import torch

from multitrain.models.losses import (Criterion, InformativeLoss, MultiHeadLoss, l1_sparsity,
                                      per_sample_loss)

NAMES = ["a", "b"]


def _soft_ce(logits_row, target_row):
    z = [float(v) for v in logits_row]
    m = max(z)
    log_norm = m + math.log(sum(math.exp(v - m) for v in z))
    return -sum(float(t) * (v - log_norm) for v, t in zip(z, target_row))


def _bce(logits_row, target_row):
    out = 0.0
    for v, t in zip(logits_row.tolist(), target_row.tolist()):
        p = 1 / (1 + math.exp(-v))
        out += -(t * math.log(p) + (1 - t) * math.log(1 - p))
    return out / len(logits_row)


def _data(seed=0, batch=5):
    g = torch.Generator().manual_seed(seed)
    logits = {"a": torch.randn(batch, 4, generator=g), "b": torch.randn(batch, 3, generator=g)}
    proj = {"b_a": torch.randn(batch, 4, generator=g), "a_b": torch.randn(batch, 3, generator=g)}
    labels = {"a": torch.softmax(torch.randn(batch, 4, generator=g), -1),
              "b": torch.softmax(torch.randn(batch, 3, generator=g), -1)}
    masks = {"a": torch.tensor([1.0, 0, 1, 0, 1])[:batch], "b": torch.tensor([0.0, 1, 0, 1, 0])[:batch]}
    return logits, proj, labels, masks


def test_per_sample_losses():
    logits, _, labels, _ = _data()
    ce = per_sample_loss("soft_cross_entropy", logits["a"], labels["a"])
    assert torch.allclose(ce, torch.tensor([_soft_ce(l, t) for l, t in zip(logits["a"], labels["a"])]), atol=1e-6)
    bce = per_sample_loss("bce_logit", logits["a"], labels["a"])
    assert torch.allclose(bce, torch.tensor([_bce(l, t) for l, t in zip(logits["a"], labels["a"])]), atol=1e-6)
    idx = torch.tensor([0, 3, 1, 2, 2])
    assert torch.allclose(per_sample_loss("cross_entropy", logits["a"], idx),
                          torch.nn.functional.cross_entropy(logits["a"], idx, reduction="none"))


def test_multi_head_loss_with_projection():
    logits, proj, labels, masks = _data()
    weights, w_proj = {"a": 1.0, "b": 0.5}, 0.7
    loss = MultiHeadLoss(NAMES, ["soft_cross_entropy", "bce_logit"], [1.0, 0.5], w_proj)
    terms = loss(logits, labels, masks, proj)
    fn = {"a": _soft_ce, "b": _bce}
    total_cls = total_proj = 0.0
    for d, other in (("a", "b"), ("b", "a")):
        for i in range(5):
            if masks[d][i]:
                total_cls += weights[d] * fn[d](logits[d][i], labels[d][i])
                # one other dataset: the mean over sources is that single term
                total_proj += weights[d] * w_proj * _soft_ce(proj[f"{other}_{d}"][i], labels[d][i])
    assert abs(terms["loss_cls"].item() - total_cls / 5) < 1e-5
    assert abs(terms["loss_proj"].item() - total_proj / 5) < 1e-5


def test_projection_loss_averages_over_sources():
    g = torch.Generator().manual_seed(1)
    names = ["a", "b", "c"]
    logits = {n: torch.randn(2, 3, generator=g) for n in names}
    labels = {n: torch.softmax(torch.randn(2, 3, generator=g), -1) for n in names}
    masks = {n: torch.ones(2) for n in names}
    proj = {f"{s}_{t}": torch.randn(2, 3, generator=g) for t in names for s in names if s != t}
    terms = MultiHeadLoss(names, ["soft_cross_entropy"] * 3)(logits, labels, masks, proj)
    expected = sum(0.5 * (_soft_ce(proj[f"{s1}_{t}"][i], labels[t][i]) + _soft_ce(proj[f"{s2}_{t}"][i], labels[t][i]))
                   for t in names for s1, s2 in [[s for s in names if s != t]] for i in range(2)) / 2
    assert abs(terms["loss_proj"].item() - expected) < 1e-5


def test_learned_uncertainty_weights():
    logits, proj, labels, masks = _data()
    loss = MultiHeadLoss(NAMES, ["soft_cross_entropy"] * 2, use_mtl_weight=True)
    s = loss.log_sigma_sq.detach().exp()
    assert ((s >= 0.2) & (s <= 1.0)).all()
    terms = loss(logits, labels, masks, proj)
    expected = 0.0
    for k, (d, other) in enumerate((("a", "b"), ("b", "a"))):
        l_d = sum(_soft_ce(logits[d][i], labels[d][i]) + _soft_ce(proj[f"{other}_{d}"][i], labels[d][i])
                  for i in range(5) if masks[d][i])
        expected += l_d / (2 * s[k].item()) + 0.5 * math.log(s[k].item())
    assert abs(sum(terms.values()).item() - expected / 5) < 1e-5
    # Real parameters: in state_dict, and they receive a gradient.
    assert "log_sigma_sq" in loss.state_dict()
    sum(terms.values()).backward()
    assert loss.log_sigma_sq.grad is not None and loss.log_sigma_sq.grad.abs().min() > 0


def _naive_informative(z, std_w, cov_w):
    b, c = len(z), len(z[0])
    mean = [sum(z[i][j] for i in range(b)) / b for j in range(c)]
    zc = [[z[i][j] - mean[j] for j in range(c)] for i in range(b)]
    std = [math.sqrt(sum(zc[i][j] ** 2 for i in range(b)) / (b - 1) + 1e-4) for j in range(c)]
    l_std = sum(max(0.0, 1 - s) for s in std) / c
    l_cov = 0.0
    for j in range(c):
        for k in range(c):
            if j != k:
                l_cov += (sum(zc[i][j] * zc[i][k] for i in range(b)) / (b - 1)) ** 2
    return std_w * l_std + cov_w * l_cov / c


def test_informative_loss():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 4, generator=g) * torch.tensor([0.3, 2.0, 0.9, 1.1])
    got = InformativeLoss(25.0, 1.0)(z).item()
    assert abs(got - _naive_informative(z.tolist(), 25.0, 1.0)) < 1e-4
    with pytest.raises(ValueError, match=">= 2"):
        InformativeLoss()(torch.randn(1, 4))
    learned = InformativeLoss(learn_weight=True)
    c = learned.components(z)
    s = learned.log_sigma_sq.detach().exp()
    expected = (c["std"] / (2 * s[0]) + 0.5 * s[0].log() + c["cov"] / (2 * s[1]) + 0.5 * s[1].log())
    assert torch.allclose(learned(z), expected, atol=1e-6)


def test_l1_sparsity():
    w = [torch.tensor([[1.0, -2.0]]), torch.tensor([[-0.5], [0.25]])]
    assert l1_sparsity(w).item() == pytest.approx(3.75)


def test_criterion_float32_under_autocast():
    logits, proj, labels, masks = _data()
    z = torch.randn(5, 8)
    crit = Criterion(MultiHeadLoss(NAMES, ["soft_cross_entropy"] * 2), inf_loss=InformativeLoss(),
                     inf_loss_weight=0.1)
    outputs = {"logits": {k: v.bfloat16() for k, v in logits.items()},
               "proj": {k: v.bfloat16() for k, v in proj.items()}, "inf_feature": z.bfloat16()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = crit(outputs, labels, masks)
    assert all(t.dtype == torch.float32 for t in terms.values())
    ref = crit({"logits": {k: v.bfloat16().float() for k, v in logits.items()},
                "proj": {k: v.bfloat16().float() for k, v in proj.items()},
                "inf_feature": z.bfloat16().float()}, labels, masks)
    for k in terms:
        assert torch.equal(terms[k], ref[k]), k
    assert terms["loss_inf"].item() == pytest.approx(0.1 * InformativeLoss()(z.bfloat16().float()).item())


def test_single_head_criterion():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g)
    target = torch.softmax(torch.randn(4, 6, generator=g), -1)
    crit = Criterion(single_loss_func="soft_cross_entropy")
    got = crit({"logits": {"kinetics": logits}}, target)["loss_cls"].item()
    assert got == pytest.approx(sum(_soft_ce(l, t) for l, t in zip(logits, target)) / 4, abs=1e-5)


def test_l1_sparsity_term_is_weighted():
    """loss_proj_l1 = MULTI_PROJ_SPARSITY_LOSS_WEIGHT * sum |W| over the projection matrices."""
    w = [torch.tensor([[1.0, -2.0]]), torch.tensor([[-0.5], [0.25]])]
    crit = Criterion(single_loss_func="soft_cross_entropy", proj_weights=w, proj_sparsity_weight=0.003)
    terms = crit({"logits": {"kinetics": torch.zeros(2, 3)}}, torch.tensor([0, 2]))
    assert terms["loss_proj_l1"].item() == pytest.approx(0.003 * 3.75)


def test_build_loss_weights_the_l1_term_from_the_config():
    from multitrain.models import build_model
    from multitrain.models.losses import build_loss

    from model_helpers import labels_and_masks, tiny_cfg

    cfg = tiny_cfg()
    cfg.MODEL.MULTI_PROJ_SPARSITY_LOSS_TYPE, cfg.MODEL.MULTI_PROJ_SPARSITY_LOSS_WEIGHT = "l1", 0.02
    model = build_model(cfg)
    crit = build_loss(cfg, model)
    labels, masks = labels_and_masks(2)
    with torch.no_grad():
        terms = crit(model.train()(torch.randn(2, 3, 8, 32, 32)), labels, masks)
    proj = [p for n, p in model.named_parameters() if n.startswith("head.cross_dataset_heads.")]
    assert len(proj) == 6
    expected = 0.02 * sum(float(p.abs().sum()) for p in proj)
    assert terms["loss_proj_l1"].item() == pytest.approx(expected, rel=1e-5)
