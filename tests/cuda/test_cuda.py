"""On a CUDA device: the model, the device-side clip recipe and a training run give what the
CPU gives. Skipped where torch sees no GPU (CI has none); run with ``pytest -m cuda``.

Tolerances: CPU and GPU kernels sum in different orders, cuDNN convolutions use TF32 by
default (torch's ``cudnn.allow_tf32``), and bf16 keeps 8 bits of mantissa.
"""
import pytest
import torch

from model_helpers import multitrain_tiny, official_tiny, perturb_
from mt_testing import (DEMO_CONFIG, RUN_NET, final_state, first_batches, recipe_cfg,
                        start_python, step_args, train_losses, wait_all)
from multitrain.engine.batch import move_batch, prepare_eval_inputs, prepare_train_batch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")


def _rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture
def exact_fp32():
    """fp32 without TF32 in convolutions, so CPU and GPU differ by summation order only."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("build", [multitrain_tiny, official_tiny], ids=["multitrain", "official"])
def test_model_on_cuda_matches_cpu(build, exact_fp32):
    torch.manual_seed(0)
    model = perturb_(build()).train()
    x = torch.randn(2, 3, 8, 32, 32)
    ref = model.forward_features(x)
    ref.pow(2).sum().backward()
    ref_grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad()
    gpu = model.to(CUDA)
    out = gpu.forward_features(x.to(CUDA))
    out.pow(2).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in gpu.parameters() if p.grad is not None])
    print(f"fp32 cuda vs cpu: features {_rel_err(out, ref):.2e}, grads {_rel_err(grads, ref_grads):.2e}")
    assert _rel_err(out, ref) < 1e-5
    assert _rel_err(grads, ref_grads) < 1e-4


@pytest.mark.parametrize("build", [multitrain_tiny, official_tiny], ids=["multitrain", "official"])
def test_bf16_sdpa_on_cuda_matches_fp32_reference_attention(build):
    """The fused kernels under bf16 autocast against the plain attention in fp32."""
    torch.manual_seed(0)
    model = perturb_(build()).eval().to(CUDA)
    x = torch.randn(4, 3, 8, 32, 32, device=CUDA)
    with torch.no_grad():
        model.set_attention_impl("reference")
        ref = model.forward_features(x)
        model.set_attention_impl("sdpa")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fused = model.forward_features(x)
    err = _rel_err(fused.float(), ref)
    print(f"bf16 sdpa vs fp32 reference: {err:.2e}")
    assert torch.isfinite(fused).all() and err < 3e-2


def _assert_clips_close(gpu, cpu, what):
    """Normalised clips: one grey level is ~0.017. Rounding to uint8 between the ops can
    flip a pixel by a level where CPU and GPU interpolation differ in the last bits."""
    diff = (gpu.cpu() - cpu).abs()
    level = 1 / 255 / 0.225
    frac = (diff > 1.5 * level).float().mean().item()
    print(f"{what}: mean |diff| {diff.mean().item() / level:.4f} levels, "
          f"max {diff.max().item() / level:.1f} levels, {frac:.2e} beyond 1.5 levels")
    assert diff.mean().item() < 0.05 * level
    assert frac < 1e-3


def test_train_recipe_on_cuda_matches_cpu(small_corpus, tmp_path):
    cfg = recipe_cfg(small_corpus, tmp_path, on_device=True)
    raw = first_batches(cfg, "train", 1)[0]
    cpu = prepare_train_batch(raw, cfg, seed=(0, 1, 0))
    gpu = prepare_train_batch(move_batch(raw, CUDA), cfg, seed=(0, 1, 0))
    assert gpu["inputs"].device.type == "cuda" and gpu["inputs"].shape == cpu["inputs"].shape
    _assert_clips_close(gpu["inputs"], cpu["inputs"], "train clips")
    for name in cpu["labels"]:
        assert torch.equal(gpu["labels"][name].cpu(), cpu["labels"][name])


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_views_on_cuda_match_cpu(small_corpus, tmp_path, split):
    cfg = recipe_cfg(small_corpus, tmp_path, on_device=True)
    raw = first_batches(cfg, split, 1)[0]
    cpu = prepare_eval_inputs(raw, cfg)
    gpu = prepare_eval_inputs(move_batch(raw, CUDA), cfg)
    _assert_clips_close(gpu, cpu, f"{split} views")


def _train(corpus, out, extra):
    wait_all([start_python([RUN_NET, "--cfg", DEMO_CONFIG] + step_args(corpus, out, extra))])


def test_one_gpu_takes_the_cpu_training_step(small_corpus, tmp_path):
    """NUM_GPUS 1 (fp32, recipe on the GPU) vs NUM_GPUS 0: same loss and updated weights
    to within TF32 convolution and kernel rounding."""
    cpu_out, gpu_out = str(tmp_path / "cpu"), str(tmp_path / "gpu")
    _train(small_corpus, cpu_out, [])
    _train(small_corpus, gpu_out, ["NUM_GPUS", "1", "AUG.ON_DEVICE", "True"])
    ref, got = train_losses(cpu_out), train_losses(gpu_out)
    a, b = final_state(cpu_out), final_state(gpu_out)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"1 GPU vs CPU: loss {got} vs {ref}, max weight difference {worst:.2e}")
    assert got == pytest.approx(ref, rel=2e-3)
    assert worst < 1e-3


def test_bf16_gpu_training_writes_cpu_loadable_checkpoints(small_corpus, tmp_path):
    out = str(tmp_path / "bf16")
    _train(small_corpus, out, ["NUM_GPUS", "1", "AUG.ON_DEVICE", "True",
                               "TRAIN.MIXED_PRECISION", "True",
                               "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16"])
    losses = train_losses(out)
    state = final_state(out)  # weights_only=True, map_location="cpu"
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert all(v.device.type == "cpu" and torch.isfinite(v.float()).all() for v in state.values())
