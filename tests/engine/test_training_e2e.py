"""End-to-end training with real processes, real videos and real checkpoints.

- two gloo ranks (the original's launch, and two torchrun "nodes") take the same step as one
  process on the same global batch, with gather-before-loss, both losses and accumulation;
- the clip recipe on the trainer's side (AUG.ON_DEVICE) takes the same step as in the workers;
- a run killed after an epoch auto-resumes to the weights of an uninterrupted run;
- a checkpoint in the original layout loads for test and for init.
"""
import os
import re
import signal
import time

import pytest

from mt_testing import (DEMO_CONFIG, RUN_NET, assert_same_weights, final_state, free_port, start_python, step_args,
                        train_losses, wait_all)


@pytest.fixture(scope="module")
def single_process_run(small_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("single"))
    wait_all([start_python([RUN_NET, "--cfg", DEMO_CONFIG] + step_args(small_corpus, out))])
    return out


def test_two_gloo_ranks_equal_one_process(small_corpus, single_process_run, tmp_path):
    out = str(tmp_path / "two")
    port = free_port()
    procs = [start_python([RUN_NET, "--cfg", DEMO_CONFIG, "--init_method", f"tcp://127.0.0.1:{port}",
                   "--num_shards", "2", "--shard_id", str(i)] + step_args(small_corpus, out))
             for i in range(2)]
    wait_all(procs)
    ref, two = train_losses(single_process_run), train_losses(out)
    assert len(ref) == len(two) == 1
    assert two[0] == pytest.approx(ref[0], rel=1e-5)
    assert_same_weights(final_state(single_process_run), final_state(out), atol=2e-6)


def test_recipe_on_device_trains_to_the_same_weights(small_corpus, single_process_run, tmp_path):
    """AUG.ON_DEVICE: workers ship raw frames, the trainer applies the recipe; same clips,
    so the same loss and the same updated weights as the workers applying it."""
    out = str(tmp_path / "on_device")
    wait_all([start_python([RUN_NET, "--cfg", DEMO_CONFIG]
                    + step_args(small_corpus, out, ["AUG.ON_DEVICE", "True"]))])
    assert train_losses(out) == pytest.approx(train_losses(single_process_run), rel=1e-6)
    assert_same_weights(final_state(single_process_run), final_state(out), atol=1e-7)


@pytest.mark.slow
def test_two_torchrun_nodes_equal_one_process(small_corpus, single_process_run, tmp_path):
    out = str(tmp_path / "torchrun")
    port = free_port()
    procs = [start_python(["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--node_rank", str(i), "--master_addr", "127.0.0.1", "--master_port", str(port),
                   RUN_NET, "--cfg", DEMO_CONFIG] + step_args(small_corpus, out)) for i in range(2)]
    wait_all(procs)
    assert train_losses(out)[0] == pytest.approx(train_losses(single_process_run)[0], rel=1e-5)
    assert_same_weights(final_state(single_process_run), final_state(out), atol=2e-6)


RESUME_OPTS = ["SOLVER.MAX_EPOCH", "3", "TRAIN.MAX_ITERS_PER_EPOCH", "4", "TRAIN.CHECKPOINT_PERIOD", "1",
               "TRAIN.AUTO_RESUME", "True", "MIXUP.ENABLE", "True", "DATA_LOADER.NUM_WORKERS", "1"]


def test_killed_run_auto_resumes_to_the_same_weights(small_corpus, tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    wait_all([start_python([RUN_NET, "--cfg", DEMO_CONFIG] + step_args(small_corpus, full, RESUME_OPTS))])

    p = start_python([RUN_NET, "--cfg", DEMO_CONFIG] + step_args(small_corpus, killed, RESUME_OPTS))
    first = os.path.join(killed, "checkpoints", "checkpoint_epoch_00001.pyth")
    deadline = time.time() + 240
    while not os.path.exists(first) and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(first), p.communicate()[0][-3000:]
    p.send_signal(signal.SIGKILL)  # preempted somewhere in epoch 2
    p.wait()
    wait_all([start_python([RUN_NET, "--cfg", DEMO_CONFIG] + step_args(small_corpus, killed, RESUME_OPTS))])
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
    assert_same_weights(final_state(full), final_state(killed), atol=2e-6)
