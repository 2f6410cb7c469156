"""On a CUDA device: the speed options (MODEL.POOL_CHANNELS_LAST, SOLVER.FUSED_ADAMW,
MODEL.COMPILE) give the plain path's loss, gradients, update and loss curve within bf16
tolerance. Skipped where torch sees no GPU; run with ``pytest -m cuda``."""
import copy
import os
import sys

import pytest
import torch

from mt_testing import DEMO_CONFIG, REPO

sys.path[:0] = [os.path.join(REPO, "tests", d) for d in ("models", "engine")]
from model_helpers import labels_and_masks, multitrain_tiny, perturb_, tiny_cfg  # noqa: E402
from test_training_e2e import RUN_NET, _opts, _run, _train_losses, _wait_all  # noqa: E402
from multitrain.engine.device_levers import apply_device_levers  # noqa: E402
from multitrain.engine.optim import build_optimizer  # noqa: E402
from multitrain.models import build_loss  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
LEVERS = ("MODEL.POOL_CHANNELS_LAST", "SOLVER.FUSED_ADAMW", "MODEL.COMPILE")


def _compile_error():
    """Why torch.compile cannot run on this machine (e.g. no triton or no C compiler), or ''."""
    try:
        torch.compile(lambda t: t * 2 + 1)(torch.ones(4, device=CUDA))
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return ""


def _rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def _cfg(on: bool, compile_model: bool):
    cfg = tiny_cfg()
    cfg.MODEL.POOL_CHANNELS_LAST = cfg.SOLVER.FUSED_ADAMW = on
    cfg.MODEL.COMPILE = on and compile_model
    return cfg


def _bf16_step(model, cfg, x):
    """Loss, gradients and the weights after one AdamW step (bf16 autocast)."""
    labels, masks = labels_and_masks(x.shape[0])
    labels = {k: v.to(CUDA) for k, v in labels.items()}
    masks = {k: v.to(CUDA) for k, v in masks.items()}
    optimizer = build_optimizer(model, cfg)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = sum(build_loss(cfg, model)(model(x), labels, masks).values())
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    optimizer.step()
    weights = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    return float(loss.detach()), grads, weights, optimizer


@pytest.mark.parametrize("compile_model", [False, True], ids=["eager", "compiled"])
def test_optimised_step_matches_the_plain_step(compile_model):
    if compile_model and _compile_error():
        pytest.skip(f"torch.compile does not work here: {_compile_error()}")
    torch.manual_seed(0)
    base = perturb_(multitrain_tiny()).train()
    x = torch.randn(4, 3, 8, 32, 32, device=CUDA)
    plain = copy.deepcopy(base).to(CUDA)
    ref = _bf16_step(apply_device_levers(plain, _cfg(False, False), CUDA), _cfg(False, False), x)
    cfg = _cfg(True, compile_model)
    fast = apply_device_levers(copy.deepcopy(base).to(CUDA), cfg, CUDA)
    assert any(m.weight.is_contiguous(memory_format=torch.channels_last_3d) and not m.weight.is_contiguous()
               for m in fast.modules() if isinstance(m, torch.nn.Conv3d))
    got = _bf16_step(fast, cfg, x)
    assert got[3].defaults.get("fused") and not ref[3].defaults.get("fused")
    errs = (abs(got[0] - ref[0]) / abs(ref[0]), _rel_err(got[1], ref[1]), _rel_err(got[2], ref[2]))
    print(f"optimised ({'compiled' if compile_model else 'eager'}) vs plain, bf16: loss {errs[0]:.2e}, "
          f"grads {errs[1]:.2e}, weights after AdamW {errs[2]:.2e}")
    assert errs[0] < 1e-2 and errs[1] < 3e-2 and errs[2] < 1e-3


def test_optimised_training_run_has_the_plain_loss_curve(small_corpus, tmp_path):
    """run_net, one GPU, bf16, AdamW, 8 steps: every option on vs every option off
    (MODEL.COMPILE only where torch.compile works)."""
    levers = LEVERS if not _compile_error() else LEVERS[:2]
    common = ["NUM_GPUS", "1", "AUG.ON_DEVICE", "True", "TRAIN.MIXED_PRECISION", "True",
              "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16", "TRAIN.GRAD_ACCU_NUM_BATCH", "1",
              "TRAIN.MAX_ITERS_PER_EPOCH", "8", "SOLVER.OPTIMIZING_METHOD", "adamw",
              "SOLVER.BASE_LR", "0.001"]
    outs = {on: str(tmp_path / ("on" if on else "off")) for on in (False, True)}
    procs = [_run([RUN_NET, "--cfg", DEMO_CONFIG] + _opts(small_corpus, outs[on], common + [
        x for k in levers for x in (k, str(on))])) for on in (False, True)]
    _wait_all(procs, timeout=400)
    ref, got = _train_losses(outs[False]), _train_losses(outs[True])
    print(f"loss curve, options off: {[round(v, 4) for v in ref]}\n"
          f"            options on:  {[round(v, 4) for v in got]}")
    assert len(got) == len(ref) == 8
    assert got == pytest.approx(ref, rel=3e-2)
