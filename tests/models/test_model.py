"""The assembled model: layout, train/eval outputs, gradients, activation checkpointing."""
import copy

import pytest
import torch

from multitrain.models import build_loss, build_model, model_variant
from multitrain.models.losses import Criterion, InformativeLoss, MultiHeadLoss
from multitrain.models.mvit import block_layout, round_width

from model_helpers import (CLASSES, DATASETS, labels_and_masks, multitrain_tiny, official_tiny,
                           perturb_, tiny_cfg)


def test_round_width():
    assert round_width(96, 2.0) == 192
    assert round_width(96, 2.0, divisor=8) == 192
    assert round_width(100, 1.0, divisor=8) == 104  # 100 + 4 -> 104 (half up)
    assert round_width(10, 1.0, divisor=8) == 16    # 8 < 0.9 * 10 -> one more divisor


def test_mvitv2_b_layout():
    """MViTv2-B 32x3 (MultiTrain): widths/heads double at blocks 2, 5, 21; KV stride adapts."""
    specs = block_layout(
        depth=24, embed_dim=96, num_heads=1, patch_dims=[16, 56, 56],
        dim_mul=[[2, 2.0], [5, 2.0], [21, 2.0]], head_mul=[[2, 2.0], [5, 2.0], [21, 2.0]],
        pool_q_stride=[[2, 1, 2, 2], [5, 1, 2, 2], [21, 1, 2, 2]],
        pool_kv_stride_adaptive=[1, 8, 8], pool_kvq_kernel=[3, 3, 3], q_pool_all=True,
        expand="front", drop_path_rate=0.1)
    assert [(s.dim, s.dim_out, s.num_heads) for s in specs[1:4]] == [(96, 96, 1), (96, 192, 2), (192, 192, 2)]
    assert (specs[21].dim, specs[21].dim_out, specs[21].num_heads) == (384, 768, 8)
    assert specs[-1].dim_out == 768
    assert specs[0].stride_q == [1, 1, 1] and specs[2].stride_q == [1, 2, 2]  # Q_POOL_ALL
    assert specs[0].stride_kv == [1, 8, 8] and specs[2].stride_kv == [1, 4, 4]
    assert specs[5].stride_kv == [1, 2, 2] and specs[21].stride_kv == [1, 1, 1]
    assert specs[21].input_size == [16, 14, 14] and specs[23].input_size == [16, 7, 7]
    assert specs[0].drop_path == 0.0 and abs(specs[-1].drop_path - 0.1) < 1e-7


def test_train_forward_outputs():
    model = multitrain_tiny().train()
    out = model(torch.randn(3, 3, 8, 32, 32))
    assert set(out["logits"]) == set(DATASETS)
    assert [out["logits"][d].shape[1] for d in DATASETS] == CLASSES
    assert set(out["proj"]) == {f"{a}_{b}" for a in DATASETS for b in DATASETS if a != b}
    assert out["proj"]["mit_kinetics"].shape == (3, 5)  # mit logits mapped to kinetics classes
    assert out["inf_feature"].shape == (3, 64)
    bare = multitrain_tiny(cross_proj=False, expander=False, use_mlp=False).train()
    out = bare(torch.randn(2, 3, 8, 32, 32))
    assert out["proj"] == {} and "inf_feature" not in out


@pytest.mark.parametrize("build", [multitrain_tiny, official_tiny])
def test_eval_returns_probabilities(build):
    model = perturb_(build()).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        name = "mit" if build is multitrain_tiny else "kinetics"
        probs = model(x, dataset_name=name, output="probs")
    assert probs.ndim == 2 and (probs >= 0).all()
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-6)
    if build is multitrain_tiny:
        with torch.no_grad():
            every = model(x, output="probs")
        assert set(every) == set(DATASETS) and torch.allclose(every["mit"], probs)
        with pytest.raises(KeyError, match="no head"):
            model(x, dataset_name="ucf101", output="probs")


def test_output_is_chosen_by_the_caller_not_the_mode():
    """model.eval() switches dropout and drop path only: each output has one type in both
    modes, and an unknown output or a head name for the training dict is refused."""
    model = multitrain_tiny().eval()  # no dropout, no drop path
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        eval_train, eval_probs = model(x), model(x, output="probs")
        model.train()
        train_train, train_probs = model(x), model(x, output="probs")
    assert set(eval_train) == set(train_train) == {"logits", "proj", "inf_feature"}
    for d in DATASETS:
        assert torch.allclose(eval_train["logits"][d], train_train["logits"][d], atol=1e-6)
        assert torch.allclose(eval_probs[d], train_probs[d], atol=1e-6)
    with pytest.raises(ValueError, match="not in"):
        model(x, output="logits")
    with pytest.raises(ValueError, match="output='probs'"):
        model(x, dataset_name="mit")


def test_sigmoid_head_at_eval():
    from multitrain.models.heads import MultiDatasetHead
    head = MultiDatasetHead(8, ["a", "b"], [4, 3], ["sigmoid", "softmax"]).eval()
    feat = torch.randn(5, 8)
    assert torch.allclose(head.predict(feat, "a"), torch.sigmoid(head.heads["a"](feat)))


def _full_loss(model, x, labels, masks):
    criterion = Criterion(MultiHeadLoss(DATASETS, ["soft_cross_entropy"] * 3, use_mtl_weight=True),
                          inf_loss=InformativeLoss(), proj_weights=model.head.projection_weights(),
                          proj_sparsity_weight=1e-3)
    return criterion, sum(criterion(model(x), labels, masks).values())


@pytest.mark.parametrize("build", [multitrain_tiny, official_tiny])
def test_every_parameter_gets_a_gradient(build):
    torch.manual_seed(0)
    model = perturb_(build()).train()
    x = torch.randn(3, 3, 8, 32, 32)
    labels, masks = labels_and_masks(3)
    if build is multitrain_tiny:
        criterion, loss = _full_loss(model, x, labels, masks)
        params = list(model.named_parameters()) + [("criterion." + n, p) for n, p in criterion.named_parameters()]
    else:
        loss = torch.nn.functional.cross_entropy(model(x)["logits"]["kinetics"], torch.arange(3))
        params = list(model.named_parameters())
    loss.backward()
    missing = {n for n, p in params if p.grad is None or p.grad.abs().sum() == 0}
    expected = set()
    if build is official_tiny:
        # The class-token output reads only the last block's cls query, which is never
        # pooled and gets no relative-position term: those parameters are dead there, as in
        # the original.
        expected = {f"blocks.2.attn.{n}" for n in ("rel_pos_h", "rel_pos_w", "rel_pos_t",
                                                   "pool_q.weight")}
    assert missing == expected, f"no gradient: {sorted(missing)}"
    assert len(params) > 50


@pytest.mark.parametrize("build", [multitrain_tiny, official_tiny])
def test_activation_checkpointing_same_gradients(build):
    torch.manual_seed(0)
    plain = perturb_(build(drop_path=0.3)).train()
    ckpt = copy.deepcopy(plain)
    ckpt.act_checkpoint = True
    x = torch.randn(2, 3, 8, 32, 32)
    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(123)  # same drop-path draws; checkpoint must replay them on recompute
        model.forward_features(x).pow(2).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-7), name


def test_build_model_and_loss_from_config():
    cfg = tiny_cfg()
    model = build_model(cfg).train()
    assert sorted(k for k in model.state_dict() if k.startswith("expander.")) == [
        "expander.fc1.bias", "expander.fc1.weight", "expander.fc2.bias", "expander.fc2.weight"]
    criterion = build_loss(cfg, model)
    labels, masks = labels_and_masks(4)
    terms = criterion(model(torch.randn(4, 3, 8, 32, 32)), labels, masks)
    assert set(terms) == {"loss_cls", "loss_proj", "loss_inf", "loss_proj_l1"}
    assert all(t.dtype == torch.float32 and t.ndim == 0 for t in terms.values())
    # README inference command: projections and informative loss off -> neither module built.
    cfg.MODEL.MULTI_ADD_CROSS_PROJ = cfg.MODEL.USE_INF_LOSS = False
    keys = build_model(cfg).state_dict().keys()
    assert not any(k.startswith(("expander.", "head.cross_dataset_heads.")) for k in keys)


def test_mixed_variant_keys_are_rejected():
    cfg = tiny_cfg()
    assert model_variant(cfg) == "multitrain"
    cfg.MVIT.REL_POS_SPATIAL = True
    with pytest.raises(ValueError, match="MVIT.REL_POS_SPATIAL"):
        build_model(cfg)


def test_position_tables_reject_other_input_sizes():
    model = multitrain_tiny().eval()
    with pytest.raises(ValueError, match="DATA.TRAIN_CROP_SIZE"):
        model(torch.randn(1, 3, 8, 64, 64))
