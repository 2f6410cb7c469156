"""End-to-end training with real processes, real videos and real checkpoints.

- two gloo ranks (seed-style launch, and two torchrun "nodes") take the same step as one
  process on the same global batch, with gather-before-loss, both losses and accumulation;
- the clip recipe on the trainer's side (AUG.ON_DEVICE) takes the same step as in the workers;
- a run killed after an epoch auto-resumes to the weights of an uninterrupted run;
- a checkpoint in the original layout loads for test and for init.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from mt_testing import DEMO_CONFIG, REPO, corpus_overrides

RUN_NET = os.path.join(REPO, "tools", "run_net.py")

# One optimizer step of 2 micro-batches of 4 videos x 2 samples; no mixup (it pairs samples
# within the local batch, so it is not comparable across world sizes) and no drop-path.
STEP_OPTS = [
    "TRAIN.BATCH_SIZE", "4", "TRAIN.GRAD_ACCU_NUM_BATCH", "2", "TRAIN.MAX_ITERS_PER_EPOCH", "2",
    "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "100", "TEST.ENABLE", "False",
    "TRAIN.GATHER_BEFORE_LOSS", "True", "MIXUP.ENABLE", "False", "MVIT.DROPPATH_RATE", "0.0",
    "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "1", "LOG_MODEL_INFO", "False",
    "TRAIN.AUTO_RESUME", "False", "NUM_GPUS", "0", "SOLVER.BASE_LR", "0.1",
    # SGD: the update is the gradient itself. (AdamW divides by |g|, which turns float noise
    # on parameters whose true gradient is 0, e.g. biases before a centring, into lr-sized steps.)
    "SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.NESTEROV", "False",
    "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.CLIP_GRAD_L2NORM", "None",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _opts(corpus, out, extra=()):
    return [str(o) if not isinstance(o, list) else repr(o) for o in corpus_overrides(corpus, out)] \
        + STEP_OPTS + list(extra)


def _run(args, timeout=300, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable] + args, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_all(procs, timeout=300):
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(out)
        assert p.returncode == 0, out[-4000:]
    return outs


def _final_state(out_dir):
    ckpts = sorted(os.listdir(os.path.join(out_dir, "checkpoints")))
    path = os.path.join(out_dir, "checkpoints", ckpts[-1])
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def _train_losses(out_dir):
    from multitrain.engine.writers import parse_json_stats

    with open(os.path.join(out_dir, "stdout.log")) as f:
        return [s["loss"] for s in parse_json_stats(f) if s.get("_type") == "train"]


def _assert_same_weights(a, b, atol=2e-6):
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < atol, f"largest weight difference {worst}"


@pytest.fixture(scope="module")
def single_process_run(small_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("single"))
    _wait_all([_run([RUN_NET, "--cfg", DEMO_CONFIG] + _opts(small_corpus, out))])
    return out


def test_two_gloo_ranks_equal_one_process(small_corpus, single_process_run, tmp_path):
    out = str(tmp_path / "two")
    port = _free_port()
    procs = [_run([RUN_NET, "--cfg", DEMO_CONFIG, "--init_method", f"tcp://127.0.0.1:{port}",
                   "--num_shards", "2", "--shard_id", str(i)] + _opts(small_corpus, out))
             for i in range(2)]
    _wait_all(procs)
    ref, two = _train_losses(single_process_run), _train_losses(out)
    assert len(ref) == len(two) == 1
    assert two[0] == pytest.approx(ref[0], rel=1e-5)
    _assert_same_weights(_final_state(single_process_run), _final_state(out))


def test_recipe_on_device_trains_to_the_same_weights(small_corpus, single_process_run, tmp_path):
    """AUG.ON_DEVICE: workers ship raw frames, the trainer applies the recipe; same clips,
    so the same loss and the same updated weights as the workers applying it."""
    out = str(tmp_path / "on_device")
    _wait_all([_run([RUN_NET, "--cfg", DEMO_CONFIG]
                    + _opts(small_corpus, out, ["AUG.ON_DEVICE", "True"]))])
    assert _train_losses(out) == pytest.approx(_train_losses(single_process_run), rel=1e-6)
    _assert_same_weights(_final_state(single_process_run), _final_state(out), atol=1e-7)


@pytest.mark.slow
def test_two_torchrun_nodes_equal_one_process(small_corpus, single_process_run, tmp_path):
    out = str(tmp_path / "torchrun")
    port = _free_port()
    procs = [_run(["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--node_rank", str(i), "--master_addr", "127.0.0.1", "--master_port", str(port),
                   RUN_NET, "--cfg", DEMO_CONFIG] + _opts(small_corpus, out)) for i in range(2)]
    _wait_all(procs)
    assert _train_losses(out)[0] == pytest.approx(_train_losses(single_process_run)[0], rel=1e-5)
    _assert_same_weights(_final_state(single_process_run), _final_state(out))


RESUME_OPTS = ["SOLVER.MAX_EPOCH", "3", "TRAIN.MAX_ITERS_PER_EPOCH", "4", "TRAIN.CHECKPOINT_PERIOD", "1",
               "TRAIN.AUTO_RESUME", "True", "MIXUP.ENABLE", "True", "DATA_LOADER.NUM_WORKERS", "1"]


def test_killed_run_auto_resumes_to_the_same_weights(small_corpus, tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    _wait_all([_run([RUN_NET, "--cfg", DEMO_CONFIG] + _opts(small_corpus, full, RESUME_OPTS))])

    p = _run([RUN_NET, "--cfg", DEMO_CONFIG] + _opts(small_corpus, killed, RESUME_OPTS))
    first = os.path.join(killed, "checkpoints", "checkpoint_epoch_00001.pyth")
    deadline = time.time() + 240
    while not os.path.exists(first) and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(first), p.communicate()[0][-3000:]
    p.send_signal(signal.SIGKILL)  # preempted somewhere in epoch 2
    p.wait()
    _wait_all([_run([RUN_NET, "--cfg", DEMO_CONFIG] + _opts(small_corpus, killed, RESUME_OPTS))])
    with open(os.path.join(killed, "stdout.log")) as f:
        log = f.read()
    # The second run loaded a checkpoint the killed run wrote and trained only what was left
    # (a retrain from scratch would reach the same weights, so the weights alone prove nothing).
    resumed = re.findall(r"resumed from (\S+?checkpoint_epoch_(\d+)\.pyth)", log)
    assert resumed, "the restarted run did not report resuming from a checkpoint"
    path, epoch = resumed[-1][0], int(resumed[-1][1])
    assert os.path.dirname(path) == os.path.join(killed, "checkpoints") and epoch >= 1, path
    from multitrain.engine.writers import parse_json_stats

    after = log[log.rindex("resumed from "):].splitlines()
    epochs = [s["epoch"] for s in parse_json_stats(after) if s.get("_type") == "train"]
    assert epochs and min(epochs) > epoch, f"trained epochs {epochs} after resuming from epoch {epoch}"
    _assert_same_weights(_final_state(full), _final_state(killed))
