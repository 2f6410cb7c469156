"""Reading checkpoints of the original code: key adapter, weights-only load, the config
fallback, and refusal of files that pickle anything else (without running their code)."""
import os
import pickle

import pytest
import torch
from fvcore.common.config import CfgNode as FvcoreCfgNode
from yacs.config import CfgNode

from multitrain.checkpoint import CheckpointError, adapt_keys, read_checkpoint, read_model_state
from multitrain.models.model_info import count_parameters, gflops_one_view

from model_helpers import multitrain_tiny, official_tiny


def test_adapt_keys_strips_wrappers():
    w = torch.zeros(2)
    state = {"module.blocks.0._checkpoint_wrapped_module.attn.qkv.weight": w,
             "module._orig_mod.patch_embed.proj.weight": w,
             "module.head.heads_moco.kinetics.weight": w, "norm.bias": w}
    assert adapt_keys(state) == {"blocks.0.attn.qkv.weight": w, "patch_embed.proj.weight": w,
                                 "norm.bias": w}


@pytest.mark.parametrize("cfg_class", [CfgNode, FvcoreCfgNode])
def test_checkpoint_with_pickled_cfg_loads(tmp_path, cfg_class):
    model = multitrain_tiny()
    cfg = cfg_class({"MVIT": cfg_class({"DEPTH": 4, "POOL_KVQ_KERNEL": (3, 3, 3)})})
    path = tmp_path / "checkpoint_epoch_00001.pyth"
    # The original's layout, DDP prefix, pickled config (weights_only alone refuses it).
    torch.save({"epoch": 0, "cfg": cfg,
                "model_state": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    ckpt, state = read_model_state(str(path))
    assert isinstance(ckpt["cfg"], CfgNode) and ckpt["cfg"].MVIT.DEPTH == 4
    assert ckpt["cfg"].MVIT.POOL_KVQ_KERNEL == (3, 3, 3)
    fresh = multitrain_tiny()
    fresh.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


class _Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("where", ["top", "inside_cfg"])
def test_files_pickling_code_are_refused_without_running_it(tmp_path, where):
    marker = tmp_path / "code_ran"
    cfg = CfgNode({"TRAIN": CfgNode({"ENABLE": True})})
    ckpt = {"model_state": {"w": torch.zeros(1)}, "cfg": cfg}
    if where == "top":
        ckpt["x"] = _Payload(marker)
    else:
        dict.__setitem__(cfg.TRAIN, "HOOK", _Payload(marker))  # past CfgNode's type check
    path = tmp_path / "bad.pyth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(str(path), "TEST.CHECKPOINT_FILE_PATH")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "TEST.CHECKPOINT_FILE_PATH" in msg
    assert ".mkdir" in msg  # the refused global is named
    assert not marker.exists()


def test_plain_state_dict_file(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"a.weight": torch.ones(3)}, path)
    assert torch.equal(read_model_state(str(path))[1]["a.weight"], torch.ones(3))
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no model state"):
        read_model_state(str(path))
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        read_checkpoint(str(path))


def test_parameter_count_and_flop_handle():
    """The SDPA flop handle counts what fvcore counts for the explicit matmuls."""
    model = official_tiny()
    assert count_parameters(model) == sum(p.numel() for p in model.state_dict().values())
    fused = gflops_one_view(model, 8, 32)
    model.set_attention_impl("reference")
    assert fused == pytest.approx(gflops_one_view(model, 8, 32), rel=1e-9)
    assert fused > 0
