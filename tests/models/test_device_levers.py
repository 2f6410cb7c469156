"""The speed options of multitrain.engine.device_levers and SOLVER.FUSED_ADAMW keep the numbers."""
import pytest
import torch

from model_helpers import labels_and_masks, multitrain_tiny, official_tiny, perturb_, tiny_cfg
from multitrain.engine.device_levers import apply_device_levers, pooling_to_channels_last
from multitrain.engine.optim import build_optimizer
from multitrain.models import build_loss


def loss_and_grads(model, cfg, x):
    model.zero_grad(set_to_none=True)
    labels, masks = labels_and_masks(x.shape[0])
    loss = sum(build_loss(cfg, model)(model(x), labels, masks).values())
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def assert_same_step(a, b, rtol=1e-4):
    """Same loss and gradients within ``rtol``: per parameter in relative norm, floored at
    1e-3 of the whole gradient's norm (some gradients are zero in exact arithmetic, e.g.
    the bias of the key LayerNorm, which shifts every logit of a row alike: their float
    noise has no scale of its own, and a reordered sum changes it entirely)."""
    assert a[0] == pytest.approx(b[0], rel=rtol)
    assert a[1].keys() == b[1].keys()
    total = torch.cat([g.flatten() for g in b[1].values()]).norm()
    errs = {n: float((a[1][n] - b[1][n]).norm() / torch.maximum(b[1][n].norm(), 1e-3 * total))
            for n in a[1]}
    worst = max(errs, key=errs.get)
    assert errs[worst] < rtol, f"gradient of {worst}: relative error {errs[worst]:.2e}"


def test_pooling_weights_get_channels_last_strides_and_keep_their_values():
    model = multitrain_tiny()
    pools = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d) and m.groups > 1]
    before = [m.weight.detach().clone() for m in pools]
    assert pools and all(m.weight.stride(1) != 1 for m in pools)  # NCDHW strides
    assert pooling_to_channels_last(model) == len(pools)
    for m, b in zip(pools, before):
        assert m.weight.stride(1) == 1 and m.weight.is_contiguous(memory_format=torch.channels_last_3d)
        assert torch.equal(m.weight, b)
    assert model.patch_embed.proj.weight.is_contiguous()  # not a pooling convolution
    assert pooling_to_channels_last(model) == 0  # already done


@pytest.mark.parametrize("build", [multitrain_tiny, official_tiny])
def test_channels_last_pooling_gives_the_same_loss_and_grads(build):
    torch.manual_seed(0)
    model = perturb_(build())
    cfg = tiny_cfg() if build is multitrain_tiny else None
    if cfg is None:
        from multitrain.config import get_cfg
        cfg = get_cfg()
        cfg.MODEL.NUM_CLASSES = 5
        cfg.MODEL.USE_MULTI_HEAD = False
    x = torch.randn(2, 3, 8, 32, 32)
    ref = loss_and_grads(model, cfg, x)
    assert pooling_to_channels_last(model) > 0
    assert_same_step(loss_and_grads(model, cfg, x), ref)


def test_levers_leave_a_cpu_model_as_it_is():
    cfg = tiny_cfg()
    model = multitrain_tiny()
    apply_device_levers(model, cfg, torch.device("cpu"))  # POOL_CHANNELS_LAST is CUDA only
    assert cfg.MODEL.POOL_CHANNELS_LAST
    assert all(m.weight.stride(1) != 1 for m in model.modules()
               if isinstance(m, torch.nn.Conv3d) and m.groups > 1)
    opt = build_optimizer(model, cfg)
    assert cfg.SOLVER.FUSED_ADAMW and not opt.defaults.get("fused")  # CPU: the default kernel


def _compiled_step(backend: str):
    cfg = tiny_cfg()
    cfg.MODEL.COMPILE, cfg.MODEL.COMPILE_BACKEND = True, backend
    torch.manual_seed(0)
    model = perturb_(multitrain_tiny())
    x = torch.randn(2, 3, 8, 32, 32)
    ref = loss_and_grads(model, cfg, x)
    apply_device_levers(model, cfg, torch.device("cpu"))
    try:
        got = loss_and_grads(model, cfg, x)
    except Exception as e:  # noqa: BLE001 - inductor needs a working C++ toolchain
        pytest.skip(f"torch.compile ({backend}) cannot run here: {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}")
    assert {n for n, _ in model.named_parameters()} == set(ref[1])  # in place: names stay
    return got, ref


@pytest.mark.slow
def test_compiled_tiny_model_traced_gives_the_same_loss_and_grads():
    """MODEL.COMPILE with the aot_eager backend: dynamo's graphs and AOT autograd, no
    code generation (what the compiled path computes, without a C++ toolchain)."""
    got, ref = _compiled_step("aot_eager")
    assert_same_step(got, ref, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_compiled_tiny_model_gives_the_same_loss_and_grads():
    """MODEL.COMPILE with inductor on the CPU: generated C++ kernels (fused, reordered sums)."""
    got, ref = _compiled_step("inductor")
    assert_same_step(got, ref, rtol=1e-4)
