"""Reading original checkpoints: key map, weights-only load, the CfgNode fallback."""
import os
import pickle

import pytest
import torch
from yacs.config import CfgNode

from multitrain.models.checkpoint_keys import (convert_state_dict, load_checkpoint_file,
                                               load_state_dict_file)
from multitrain.models.model_info import count_parameters, gflops_one_view

from model_helpers import multitrain_tiny, official_tiny


def test_convert_state_dict_strips_wrappers():
    w = torch.zeros(2)
    state = {"module.blocks.0._checkpoint_wrapped_module.attn.qkv.weight": w,
             "module.head.heads_moco.kinetics.weight": w, "norm.bias": w}
    assert convert_state_dict(state) == {"blocks.0.attn.qkv.weight": w, "norm.bias": w}


def test_pyslowfast_checkpoint_with_pickled_cfg_loads(tmp_path):
    model = multitrain_tiny()
    cfg = CfgNode({"MVIT": CfgNode({"DEPTH": 4, "POOL_KVQ_KERNEL": (3, 3, 3)})})
    path = tmp_path / "checkpoint_epoch_00001.pyth"
    # PySlowFast layout, DDP prefix, pickled yacs cfg (not loadable with weights_only alone).
    torch.save({"epoch": 0, "cfg": cfg,
                "model_state": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    ckpt = load_checkpoint_file(str(path))
    assert isinstance(ckpt["cfg"], CfgNode) and ckpt["cfg"].MVIT.DEPTH == 4
    fresh = multitrain_tiny()
    fresh.load_state_dict(load_state_dict_file(str(path)), strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_unlisted_globals_are_refused(tmp_path):
    path = tmp_path / "bad.pyth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "x": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_checkpoint_file(str(path))


def test_plain_state_dict_file(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"a.weight": torch.ones(3)}, path)
    assert torch.equal(load_state_dict_file(str(path))["a.weight"], torch.ones(3))
    torch.save({"epoch": 3}, path)
    with pytest.raises(KeyError, match="no model state"):
        load_state_dict_file(str(path))


def test_parameter_count_and_flop_handle():
    """The SDPA flop handle counts what fvcore counts for the explicit matmuls."""
    model = official_tiny()
    assert count_parameters(model) == sum(p.numel() for p in model.state_dict().values())
    fused = gflops_one_view(model, 8, 32)
    model.set_attention_impl("reference")
    assert fused == pytest.approx(gflops_one_view(model, 8, 32), rel=1e-9)
    assert fused > 0
