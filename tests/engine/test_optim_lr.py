"""Optimizer groups (weight-decay exemptions) and the warm-up + cosine schedule."""
import math

import pytest
import torch
from torch import nn

from multitrain.config import get_cfg
from multitrain.engine.lr_schedule import LRSchedule, get_lr_at_epoch, lr_schedule_from_cfg, set_lr
from multitrain.engine.optim import build_optimizer, param_groups


def seed_solver_cfg():
    """SOLVER of the original code's multi-dataset YAML (reference/configs/Multi_dataset)."""
    cfg = get_cfg()
    s = cfg.SOLVER
    s.BASE_LR, s.COSINE_END_LR, s.WARMUP_START_LR = 2e-4, 2e-6, 2e-6
    s.WARMUP_EPOCHS, s.MAX_EPOCH, s.COSINE_AFTER_WARMUP = 10.0, 50, True
    s.LR_POLICY, s.OPTIMIZING_METHOD, s.WEIGHT_DECAY, s.ZERO_WD_1D_PARAM = "cosine", "adamw", 0.05, True
    s.BASE_LR_SCALE_NUM_SHARDS = True
    return cfg


# ------------------------------------------------------------------ schedule
def test_warmup_then_cosine_values():
    cfg = seed_solver_cfg()
    lr = lr_schedule_from_cfg(cfg)
    assert lr(0.0) == pytest.approx(2e-6)
    assert lr(5.0) == pytest.approx((2e-6 + 2e-4) / 2)  # linear half way
    assert lr(10.0) == pytest.approx(2e-4)  # cosine starts at BASE_LR after warm-up
    assert lr(9.9999) == pytest.approx(2e-4, rel=1e-4)  # continuous at the junction
    assert lr(30.0) == pytest.approx(2e-6 + (2e-4 - 2e-6) / 2)  # cosine half way
    assert lr(50.0) == pytest.approx(2e-6)
    after = [lr(10 + i * 0.5) for i in range(81)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert get_lr_at_epoch(cfg, 5.0) == lr(5.0)


def test_cosine_from_zero_without_cosine_after_warmup():
    cfg = seed_solver_cfg()
    cfg.SOLVER.COSINE_AFTER_WARMUP = False
    lr = lr_schedule_from_cfg(cfg)
    end_of_warmup = 2e-6 + (2e-4 - 2e-6) * 0.5 * (1 + math.cos(math.pi * 10 / 50))
    assert lr(10.0) == pytest.approx(end_of_warmup)
    assert lr(5.0) == pytest.approx((2e-6 + end_of_warmup) / 2)


def test_no_warmup():
    lr = LRSchedule(base_lr=1.0, end_lr=0.0, warmup_start_lr=0.5, warmup_epochs=0.0, max_epoch=4)
    assert lr(0.0) == pytest.approx(1.0) and lr(2.0) == pytest.approx(0.5)


def test_num_shards_scaling():
    cfg = seed_solver_cfg()
    cfg.NUM_SHARDS = 4
    lr = lr_schedule_from_cfg(cfg)
    assert (lr(0.0), lr(10.0), lr(50.0)) == pytest.approx((8e-6, 8e-4, 8e-6))
    cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
    assert lr_schedule_from_cfg(cfg)(10.0) == pytest.approx(2e-4)


def test_bad_schedules_fail_clearly():
    cfg = seed_solver_cfg()
    cfg.SOLVER.LR_POLICY = "steps_with_relative_lrs"
    with pytest.raises(ValueError, match="SOLVER.LR_POLICY"):
        lr_schedule_from_cfg(cfg)
    with pytest.raises(ValueError, match="MAX_EPOCH"):
        LRSchedule(1.0, 0.0, 0.1, warmup_epochs=5.0, max_epoch=5)
    with pytest.raises(ValueError, match="COSINE_END_LR"):
        LRSchedule(1.0, 2.0, 0.1, warmup_epochs=0.0, max_epoch=5)


def test_set_lr_on_every_group():
    p1, p2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p1]}, {"params": [p2], "lr_scale": 0.5}], lr=1.0)
    set_lr(opt, 0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.05])


# ------------------------------------------------------------------ optimizer
class PosModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed_spatial = nn.Parameter(torch.randn(1, 4, 3))
        self.proj = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self):
        return {"pos_embed_spatial"}


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_groups_exempt_1d_bias_and_model_names():
    cfg = seed_solver_cfg()
    cfg.MVIT.ZERO_DECAY_POS_CLS = True
    model = PosModel()
    opt = build_optimizer(nn.DataParallel(model), cfg)  # wrapper is unwrapped
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert _names(model, decay) == ["proj.weight"] and decay["weight_decay"] == 0.05
    assert _names(model, no_decay) == ["norm.bias", "norm.weight", "pos_embed_spatial", "proj.bias"]
    assert no_decay["weight_decay"] == 0.0
    assert decay["betas"] == (0.9, 0.999) and decay["lr"] == 2e-4

    wrapper = nn.ModuleDict({"model": model, "criterion": nn.Linear(1, 1, bias=False)})
    _, no_decay = build_optimizer(wrapper, cfg).param_groups  # found on the submodule too
    assert "model.pos_embed_spatial" in _names(wrapper, no_decay)

    cfg.MVIT.ZERO_DECAY_POS_CLS = False
    decay, _ = build_optimizer(model, cfg).param_groups
    assert _names(model, decay) == ["pos_embed_spatial", "proj.weight"]
    cfg.SOLVER.ZERO_WD_1D_PARAM = False
    groups = param_groups(model, 0.05, zero_wd_1d=False)
    assert len(groups) == 1 and len(groups[0]["params"]) == 5  # frozen ones left out


def test_no_decay_parameters_are_not_shrunk():
    cfg = seed_solver_cfg()
    cfg.SOLVER.WEIGHT_DECAY = 0.5
    model = PosModel()
    opt = build_optimizer(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only weight decay can move a parameter
    opt.step()
    assert torch.equal(model.norm.weight, before["norm.weight"])
    assert torch.equal(model.pos_embed_spatial, before["pos_embed_spatial"])
    assert torch.allclose(model.proj.weight, before["proj.weight"] * (1 - 2e-4 * 0.5))


def test_sgd_and_unknown_method():
    cfg = seed_solver_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"
    cfg.SOLVER.MOMENTUM, cfg.SOLVER.NESTEROV = 0.8, True
    opt = build_optimizer(PosModel(), cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.8 and opt.param_groups[0]["nesterov"]
    cfg.SOLVER.OPTIMIZING_METHOD = "lamb"
    with pytest.raises(ValueError, match="OPTIMIZING_METHOD 'lamb'"):
        build_optimizer(PosModel(), cfg)
