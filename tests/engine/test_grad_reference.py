"""SOLVER.GRAD_REFERENCE: the clipping thresholds and the per-rank loss terms of the
original's recipes act as in the published runs, whose gathered-loss gradient was 1/W of
the global batch's."""
import re

import pytest
import torch

from multitrain.config import get_cfg
from multitrain.engine.grad_reference import clip_thresholds, original_grad_factor
from multitrain.models.losses import Criterion, MultiHeadLoss
from mt_testing import (DEMO_CONFIG, RUN_NET, assert_same_weights, final_state, free_port,
                        start_python, step_args, wait_all)


def _cfg(gather=True, ref="original", norm=None, value=None):
    cfg = get_cfg()
    cfg.TRAIN.GATHER_BEFORE_LOSS, cfg.SOLVER.GRAD_REFERENCE = gather, ref
    cfg.SOLVER.CLIP_GRAD_L2NORM, cfg.SOLVER.CLIP_GRAD_VAL = norm, value
    return cfg


def test_thresholds_refer_to_the_original_gradient_only_where_it_differed():
    assert clip_thresholds(_cfg(norm=1.0), 16) == (16.0, None)  # the README's 16-GPU run
    assert clip_thresholds(_cfg(norm=1.0, ref="global_batch"), 16) == (1.0, None)
    assert clip_thresholds(_cfg(norm=1.0, gather=False), 16) == (1.0, None)  # DDP average: no 1/W
    assert clip_thresholds(_cfg(norm=1.0), 1) == (1.0, None)
    assert original_grad_factor(_cfg(), 8) == 8.0


def test_value_clipping_wins_over_norm_clipping_as_in_the_original(caplog):
    assert clip_thresholds(_cfg(norm=1.0, value=0.5), 4) == (None, 2.0)
    assert "only CLIP_GRAD_VAL applies" in caplog.text
    assert clip_thresholds(_cfg(value=0.5, gather=False), 4) == (None, 0.5)


def _mtl_terms(grad_scale):
    torch.manual_seed(0)
    head = MultiHeadLoss(["a", "b"], ["soft_cross_entropy"] * 2, [1.0, 1.0], use_mtl_weight=True)
    proj = torch.nn.Parameter(torch.randn(3, 2))
    crit = Criterion(head, proj_weights=[proj], proj_sparsity_weight=0.01, grad_scale=grad_scale)
    logits = {"a": torch.randn(4, 3, requires_grad=True), "b": torch.randn(4, 2, requires_grad=True)}
    labels = {"a": torch.eye(3)[[0, 1, 2, 0]], "b": torch.eye(2)[[0, 1, 0, 1]]}
    masks = {"a": torch.tensor([1., 1, 0, 0]), "b": torch.tensor([0., 0, 1, 1])}
    sum(crit({"logits": logits}, labels, masks).values()).backward()
    return logits["a"].grad, head.log_sigma_sq.grad, proj.grad


def test_per_rank_terms_weigh_w_times_more_like_in_the_original():
    """Learned task weights and the L1 sparsity term are computed on every rank from
    parameters: their gradient was not divided by W in the original. With grad_scale W they
    are W times larger; the gathered terms' gradient (logits) is unchanged."""
    g_logits, g_sigma, g_proj = _mtl_terms(1.0)
    w_logits, w_sigma, w_proj = _mtl_terms(4.0)
    assert torch.equal(w_logits, g_logits)
    assert torch.allclose(w_sigma, 4 * g_sigma) and torch.allclose(w_proj, 4 * g_proj)


CLIP = 0.01  # far below the tiny model's gradient norm: clipping is active


@pytest.mark.slow
def test_two_gloo_ranks_clip_at_the_published_effective_threshold(small_corpus, tmp_path):
    """Two ranks, gather-before-loss, CLIP_GRAD_L2NORM c with the default reference: the
    original clipped its gradient G/2 at c; clip(G, 2c) = 2 clip(G/2, c). One process
    (true gradient G, no 1/W) clipping at 2c therefore takes the same SGD step."""
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    port = free_port()
    procs = [start_python([RUN_NET, "--cfg", DEMO_CONFIG, "--init_method", f"tcp://127.0.0.1:{port}",
                   "--num_shards", "2", "--shard_id", str(i)]
                  + step_args(small_corpus, two, ["SOLVER.CLIP_GRAD_L2NORM", str(CLIP)])) for i in range(2)]
    procs.append(start_python([RUN_NET, "--cfg", DEMO_CONFIG]
                      + step_args(small_corpus, one, ["SOLVER.CLIP_GRAD_L2NORM", str(2 * CLIP)])))
    wait_all(procs)
    with open(f"{two}/stdout.log") as f:
        log = f.read()
    assert f"CLIP_GRAD_L2NORM {CLIP:g} refers to the original gradient: effective threshold " \
           f"{2 * CLIP:g} on 2 processes" in log
    norms = [float(m) for m in re.findall(r'"grad_norm": ([0-9.e+-]+)', log)]
    assert norms and min(norms) > 4 * CLIP  # the step was clipped, at either threshold
    assert_same_weights(final_state(one), final_state(two), atol=2e-6)
