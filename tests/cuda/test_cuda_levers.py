"""On a CUDA device: the speed options (MODEL.POOL_CHANNELS_LAST, SOLVER.FUSED_ADAMW,
MODEL.COMPILE) give the plain path's loss, gradients, update and loss curve within bf16
tolerance. Skipped where torch sees no GPU; run with ``pytest -m cuda``."""
import copy

import pytest
import torch

from model_helpers import labels_and_masks, multitrain_tiny, perturb_, tiny_cfg
from mt_testing import DEMO_CONFIG, RUN_NET, start_python, step_args, train_losses, wait_all
from multitrain.engine.device_levers import apply_device_levers
from multitrain.engine.optim import build_optimizer
from multitrain.models import build_loss

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
    """Loss and gradients of one bf16 autocast step."""
    labels, masks = labels_and_masks(x.shape[0])
    labels = {k: v.to(CUDA) for k, v in labels.items()}
    masks = {k: v.to(CUDA) for k, v in masks.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = sum(build_loss(cfg, model)(model(x), labels, masks).values())
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads


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
    assert all(m.weight.stride(1) == 1 for m in fast.modules()
               if isinstance(m, torch.nn.Conv3d) and m.groups > 1)
    got = _bf16_step(fast, cfg, x)
    errs = (abs(got[0] - ref[0]) / abs(ref[0]), _rel_err(got[1], ref[1]))
    print(f"optimised ({'compiled' if compile_model else 'eager'}) vs plain, bf16: "
          f"loss {errs[0]:.2e}, grads {errs[1]:.2e}")
    assert errs[0] < 1e-2 and errs[1] < 3e-2


def test_fused_adamw_takes_the_default_steps():
    """SOLVER.FUSED_ADAMW on CUDA parameters: the fused kernel, the same updates."""
    torch.manual_seed(0)
    base = perturb_(multitrain_tiny()).to(CUDA)
    models = {on: copy.deepcopy(base) for on in (False, True)}
    opts = {}
    for on, m in models.items():
        cfg = _cfg(False, False)
        cfg.SOLVER.FUSED_ADAMW = on
        opts[on] = build_optimizer(m, cfg)
    assert opts[True].defaults.get("fused") and not opts[False].defaults.get("fused")
    g = torch.Generator(device=CUDA).manual_seed(1)
    for _ in range(3):
        grads = [torch.randn(p.shape, device=CUDA, generator=g) for p in base.parameters()]
        for on, m in models.items():
            for p, gr in zip(m.parameters(), grads):
                p.grad = gr.clone()
            opts[on].step()
    a = torch.cat([p.detach().flatten() for p in models[True].parameters()])
    b = torch.cat([p.detach().flatten() for p in models[False].parameters()])
    moved = torch.cat([p.detach().flatten() for p in base.parameters()])
    print(f"fused vs default AdamW, 3 steps: {_rel_err(a, b):.2e} (update size {_rel_err(b, moved):.2e})")
    assert _rel_err(b, moved) > 1e-4  # the steps moved the weights
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimised_training_run_has_the_plain_loss_curve(small_corpus, tmp_path):
    """run_net, one GPU, bf16, AdamW, 8 steps: every option on vs every option off
    (MODEL.COMPILE only where torch.compile works)."""
    levers = LEVERS if not _compile_error() else LEVERS[:2]
    common = ["NUM_GPUS", "1", "AUG.ON_DEVICE", "True", "TRAIN.MIXED_PRECISION", "True",
              "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16", "TRAIN.GRAD_ACCU_NUM_BATCH", "1",
              "TRAIN.MAX_ITERS_PER_EPOCH", "8", "SOLVER.OPTIMIZING_METHOD", "adamw",
              "SOLVER.BASE_LR", "0.001"]
    outs = {on: str(tmp_path / ("on" if on else "off")) for on in (False, True)}
    procs = [start_python([RUN_NET, "--cfg", DEMO_CONFIG] + step_args(small_corpus, outs[on], common + [
        x for k in levers for x in (k, str(on))])) for on in (False, True)]
    wait_all(procs, timeout=400)
    ref, got = train_losses(outs[False]), train_losses(outs[True])
    print(f"loss curve, options off: {[round(v, 4) for v in ref]}\n"
          f"            options on:  {[round(v, 4) for v in got]}")
    assert len(got) == len(ref) == 8
    assert got == pytest.approx(ref, rel=3e-2)
