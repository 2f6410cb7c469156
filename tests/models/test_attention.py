"""Pooling attention: fused SDPA path vs the plain reference, and the relative-position bias."""
import pytest
import torch

from multitrain.models.attention import (MultiScaleAttention, _rel_index, _resize_table,
                                         attention_pool, rel_pos_bias)

from model_helpers import multitrain_tiny, official_tiny, perturb_


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("build", [
    lambda: multitrain_tiny(),
    lambda: official_tiny(),
    lambda: official_tiny(temporal_stride=True),
    lambda: official_tiny(rel_pos=(True, False)),
    lambda: official_tiny(rel_pos=(False, True)),
], ids=["multitrain", "official-relpos", "official-temporal-stride", "spatial-only", "temporal-only"])
def test_sdpa_equals_reference(build):
    torch.manual_seed(0)
    model = perturb_(build()).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        fused = model.forward_features(x)
        model.set_attention_impl("reference")
        ref = model.forward_features(x)
    assert _rel_err(fused, ref) < 1e-5


def test_sdpa_equals_reference_gradients():
    torch.manual_seed(0)
    model = perturb_(official_tiny(temporal_stride=True)).train()
    x = torch.randn(2, 3, 8, 32, 32)
    grads = []
    for impl in ("sdpa", "reference"):
        model.zero_grad()
        model.set_attention_impl(impl)
        model.forward_features(x).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    flat = [torch.cat([g[n].flatten() for n in sorted(g)]) for g in grads]
    assert _rel_err(flat[0], flat[1]) < 1e-5
    # Per parameter, against the overall gradient scale: some (e.g. norm_k.bias) are ~0 by
    # construction and only carry rounding noise.
    scale = flat[1].abs().max()
    for name in grads[0]:
        assert (grads[0][name] - grads[1][name]).abs().max() <= 1e-5 * scale, name


def _naive_bias(q, q_thw, k_thw, rh, rw, rt):
    """Loop over every (query, key) pair: q . (R_h[ih] + R_w[iw] + R_t[it])."""
    qt, qh, qw = q_thw
    kt, kh, kw = k_thw
    b, n, _, d = q.shape
    out = torch.zeros(b, n, qt * qh * qw, kt * kh * kw)
    ih, iw, it = _rel_index(qh, kh), _rel_index(qw, kw), _rel_index(qt, kt)
    for a, (t, h, w) in enumerate((t, h, w) for t in range(qt) for h in range(qh) for w in range(qw)):
        for c, (t2, h2, w2) in enumerate((t, h, w) for t in range(kt) for h in range(kh) for w in range(kw)):
            r = rh[ih[h, h2]] + rw[iw[w, w2]] + rt[it[t, t2]]
            out[:, :, a, c] = (q[:, :, a] * r).sum(-1)
    return out


def test_rel_pos_bias_matches_pairwise_definition():
    torch.manual_seed(0)
    q_thw, k_thw, d = (2, 4, 4), (1, 2, 2), 5
    q = torch.randn(2, 3, 32, d)
    rh, rw, rt = torch.randn(7, d), torch.randn(7, d), torch.randn(3, d)
    bias = rel_pos_bias(q, q_thw, k_thw, False, rh, rw, rt)
    assert torch.allclose(bias, _naive_bias(q, q_thw, k_thw, rh, rw, rt), atol=1e-5)
    # Class token: zero row and column, the rest unchanged.
    q_cls = torch.cat([torch.randn(2, 3, 1, d), q], dim=2)
    bias_cls = rel_pos_bias(q_cls, q_thw, k_thw, True, rh, rw, rt)
    assert bias_cls.shape == (2, 3, 33, 5)
    assert bias_cls[:, :, 0].abs().max() == 0 and bias_cls[:, :, :, 0].abs().max() == 0
    assert torch.allclose(bias_cls[:, :, 1:, 1:], bias)


def test_rel_index_stretches_the_coarser_grid():
    # Same sizes: k - q + (K - 1), i.e. 0 .. 2K-2.
    assert _rel_index(3, 3).tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]
    # Keys twice coarser: key positions count double.
    assert _rel_index(4, 2).tolist() == [[2, 0], [3, 1], [4, 2], [5, 3]]


def test_resize_table_is_linear_interpolation():
    table = torch.tensor([[0.0], [3.0], [6.0]])
    assert torch.equal(_resize_table(table, 3), table)
    # align_corners=False: output j samples input position (j + 0.5) * 3/5 - 0.5, clamped.
    expected = [0.0, 3 * 0.4, 3.0, 3 * 1.6, 6.0]
    assert torch.allclose(_resize_table(table, 5)[:, 0], torch.tensor(expected), atol=1e-6)


def test_attention_pool_keeps_cls_token_unpooled():
    pool = torch.nn.MaxPool3d(1, (1, 2, 2))
    x = torch.arange(2 * (1 + 16) * 3, dtype=torch.float32).reshape(2, 17, 3)
    out, thw = attention_pool(x, pool, [1, 4, 4], has_cls=True)
    assert thw == [1, 2, 2] and out.shape == (2, 5, 3)
    assert torch.equal(out[:, 0], x[:, 0])
    grid = x[:, 1:].reshape(2, 4, 4, 3)
    assert torch.equal(out[:, 1:], grid[:, ::2, ::2].reshape(2, 4, 3))


def test_residual_pooling_adds_the_pooled_query():
    torch.manual_seed(0)
    kwargs = dict(input_size=[2, 4, 4], kernel_q=[3, 3, 3], stride_q=[1, 2, 2],
                  kernel_kv=[3, 3, 3], stride_kv=[1, 2, 2])
    plain = MultiScaleAttention(8, 8, 2, **kwargs)
    resid = MultiScaleAttention(8, 8, 2, residual_pooling=True, **kwargs)
    resid.load_state_dict(plain.state_dict())
    x = torch.randn(1, 32, 8)
    # Zero output projection except identity: the difference is then exactly the pooled q.
    for m in (plain, resid):
        torch.nn.init.eye_(m.proj.weight)
        torch.nn.init.zeros_(m.proj.bias)
    diff = resid(x, [2, 4, 4])[0] - plain(x, [2, 4, 4])[0]
    q = plain.qkv(x).reshape(1, 32, 3, 2, 4).permute(2, 0, 3, 1, 4)[0]
    q, _ = attention_pool(q, plain.pool_q, [2, 4, 4], False, plain.norm_q)
    assert torch.allclose(diff, q.transpose(1, 2).reshape(1, -1, 8), atol=1e-6)
