"""train_step: accumulation equals one big batch; NaN stops with a clear error; fp16 skips."""
import pytest
import torch

from multitrain.engine.train_step import NonFiniteLossError, train_step


def _mse(model, batch):
    x, y = batch
    return {"loss": ((model(x) - y) ** 2).mean(), "aux": torch.tensor(1.0)}


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt


def test_accumulation_matches_one_big_batch():
    torch.manual_seed(1)
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    m1, o1 = _setup()
    train_step(m1, [(x, y)], _mse, o1)
    m2, o2 = _setup()
    res = train_step(m2, [(x[:4], y[:4]), (x[4:], y[4:])], _mse, o2)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-7)
    assert res.losses["aux"] == pytest.approx(1.0)
    assert all(p.grad is None for p in m2.parameters())  # zeroed after the step


def test_lr_set_on_every_micro_batch():
    m, o = _setup()
    seen = []
    train_step(m, [(torch.randn(2, 5), torch.randn(2, 3))] * 3, _mse, o, set_lr=seen.append)
    assert seen == [0, 1, 2]


def test_clipping_reports_norm_and_clips():
    m, o = _setup()
    x, y = torch.randn(4, 5) * 100, torch.randn(4, 3)
    before = [p.detach().clone() for p in m.parameters()]
    res = train_step(m, [(x, y)], _mse, o, clip_norm=1e-3)
    assert res.grad_norm > 1e-3
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(m.parameters(), before)])
    assert step.norm() == pytest.approx(0.1 * 1e-3, rel=1e-3)  # lr x clipped norm


def test_nan_loss_is_a_clear_error():
    m, o = _setup()
    x = torch.full((2, 5), float("nan"))
    with pytest.raises(NonFiniteLossError, match="training loss is nan"):
        train_step(m, [(x, torch.zeros(2, 3))], _mse, o)


def test_inf_loss_under_grad_scaler_skips_the_step():
    m, o = _setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    before = [p.detach().clone() for p in m.parameters()]
    x = torch.full((2, 5), 1e30)
    res = train_step(m, [(x, torch.zeros(2, 3))], _mse, o, scaler=scaler)
    assert res.skipped
    for p, b in zip(m.parameters(), before):
        assert torch.equal(p.detach(), b)


@pytest.mark.parametrize("clip_norm", [1e-3, 1e3])
def test_fp16_grad_scaler_clips_the_unscaled_gradients(clip_norm):
    """fp16 autocast on the CPU with a GradScaler: the clip threshold and the reported norm
    apply to the true gradients (unscaled first), so the step matches the float32 one."""
    torch.manual_seed(2)
    x, y = torch.randn(8, 5) * 3, torch.randn(8, 3)
    m32, o32 = _setup()
    before = [p.detach().clone() for p in m32.parameters()]
    ref = train_step(m32, [(x, y)], _mse, o32, clip_norm=clip_norm)
    m16, o16 = _setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    res = train_step(m16, [(x, y)], _mse, o16, scaler=scaler, clip_norm=clip_norm, amp_dtype=torch.float16)
    assert not res.skipped and scaler.get_scale() == 2.0**8
    assert res.grad_norm == pytest.approx(ref.grad_norm, rel=1e-2)
    step32 = torch.cat([(p.detach() - b).flatten() for p, b in zip(m32.parameters(), before)])
    step16 = torch.cat([(p.detach() - b).flatten() for p, b in zip(m16.parameters(), before)])
    assert step16.norm().item() == pytest.approx(step32.norm().item(), rel=1e-2)
    assert torch.nn.functional.cosine_similarity(step16, step32, dim=0).item() > 0.999
    if clip_norm < ref.grad_norm:
        assert step16.norm().item() == pytest.approx(0.1 * clip_norm, rel=1e-2)
