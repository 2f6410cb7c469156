"""Preemption: a run killed (SIGKILL) or stopped (SIGTERM / SIGUSR1) at a random step
and auto-resumed ends with the weights of an uninterrupted run, and replays exactly the
steps after its checkpoint (no batch of the epoch seen twice, none skipped)."""
import os
import random
import signal
import time

import pytest

from .helpers import (assert_same_weights, assert_steps_replay, checkpoints, console_of,
                      final_state, kill, net_args, read_text, start, stats, step_ids,
                      steps_done, train_net, wait, wait_for, wait_for_steps)

TOTAL_STEPS = 6  # helpers.TINY_OPTS: 2 epochs x 3 steps


def _interrupt_at_step(corpus, out, sig, k, group=False):
    """Start (or restart) a run, let it log step k in total, send ``sig`` (to the run's
    whole process group, loader workers included, with ``group``); return its exit status."""
    p = start(net_args(corpus, out), console_of(out), new_session=group)
    wait_for_steps(out, p, k)
    kill(p, sig, group=group)
    return wait(p, 120)


def _check_resumed(reference, out, n_before, done):
    """The steps logged after the restart are exactly those after the newest checkpoint
    (``done`` steps) that survived the interruption, each with the reference run's loss."""
    records = stats(out)
    before, after = records[:n_before], records[n_before:]
    ref = stats(reference)
    assert step_ids(ref) == [round(e / 3, 4) for e in range(1, TOTAL_STEPS + 1)]
    # every step the interrupted run logged was the reference's step (same batch and weights)
    assert_steps_replay(ref, before)
    # the restart ran exactly the steps its checkpoint had not covered, each once, each
    # on the reference's batch: nothing seen twice, nothing skipped
    assert step_ids(after) == step_ids(ref)[done:]
    assert_steps_replay(ref, after)
    assert_same_weights(final_state(reference), final_state(out))


def _newest_done(out):
    names = checkpoints(out)
    return steps_done(names[-1], 3) if names else 0


def _stopped_cleanly(out, rc, why):
    """A stop signal: exit 0 right after a checkpoint of the step in progress."""
    why = f"{why}, exit {rc}:\n{read_text(console_of(out))[-3000:]}"
    assert rc == 0, why  # a requested stop is a clean exit
    assert "stopping after a checkpoint" in read_text(os.path.join(out, "stdout.log")), why
    assert _newest_done(out) == len(stats(out)), why


def _killed(out, rc, k, why):
    """A SIGKILL after step k was logged: the newest checkpoint holds step k-1 or k."""
    assert rc == -signal.SIGKILL
    assert k - 1 <= _newest_done(out) <= len(stats(out)), f"{why}: {checkpoints(out)}"


def test_preempted_twice_resumes_exactly(small_corpus, reference_run, tmp_path):
    """A SIGTERM to the whole process group (as SLURM sends before preemption) at a random
    step, a restart, a SIGKILL at a later random step, a restart: the final weights are
    the uninterrupted run's and every step ran on the uninterrupted run's batch."""
    out = str(tmp_path / "preempted")
    seed = int.from_bytes(os.urandom(2), "little")
    rnd = random.Random(seed)
    k1 = rnd.randint(1, TOTAL_STEPS - 2)
    rc = _interrupt_at_step(small_corpus, out, signal.SIGTERM, k1, group=True)
    _stopped_cleanly(out, rc, f"SIGTERM after step {k1} (seed {seed})")
    n1, done1 = len(stats(out)), _newest_done(out)
    k2 = rnd.randint(n1 + 1, TOTAL_STEPS - 1) if n1 + 1 < TOTAL_STEPS else TOTAL_STEPS
    rc = _interrupt_at_step(small_corpus, out, signal.SIGKILL, k2)
    assert "resumed from" in read_text(os.path.join(out, "stdout.log"))
    if rc != 0:  # (k2 = TOTAL_STEPS: the run may finish before the kill)
        _killed(out, rc, k2, f"SIGKILL after step {k2} (seed {seed})")
    n2, done2 = len(stats(out)), _newest_done(out)
    train_net(small_corpus, out)
    ref = stats(reference_run)
    run2, run3 = stats(out)[n1:n2], stats(out)[n2:]
    assert step_ids(run2 + run3)[:1] == step_ids(ref)[done1:done1 + 1]
    assert step_ids(run3) == step_ids(ref)[done2:]
    _check_resumed(reference_run, out, n2, done2)


@pytest.mark.slow
def test_sigkill_at_random_step_resumes_exactly(small_corpus, reference_run, tmp_path):
    out = str(tmp_path / "killed")
    seed = int.from_bytes(os.urandom(2), "little")
    k = random.Random(seed).randint(1, TOTAL_STEPS - 1)
    rc = _interrupt_at_step(small_corpus, out, signal.SIGKILL, k)
    _killed(out, rc, k, f"SIGKILL after step {k} (seed {seed})")
    n_before, done = len(stats(out)), _newest_done(out)
    train_net(small_corpus, out)
    if done:
        assert "resumed from" in read_text(os.path.join(out, "stdout.log"))
    _check_resumed(reference_run, out, n_before, done)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT],
                         ids=["SIGTERM", "SIGUSR1", "SIGINT"])
def test_stop_signal_to_process_group_checkpoints_then_resumes_exactly(small_corpus, reference_run,
                                                                      tmp_path, sig):
    """As SLURM before preemption (or Ctrl-C in a terminal): the signal reaches the trainer
    and its loader worker."""
    out = str(tmp_path / "stopped")
    seed = int.from_bytes(os.urandom(2), "little")
    k = random.Random(seed).randint(1, TOTAL_STEPS - 1)
    rc = _interrupt_at_step(small_corpus, out, sig, k, group=True)
    _stopped_cleanly(out, rc, f"signal {sig} after step {k} (seed {seed})")
    n_before, done = len(stats(out)), _newest_done(out)
    train_net(small_corpus, out)
    _check_resumed(reference_run, out, n_before, done)


@pytest.mark.slow
def test_stop_signal_in_the_last_step_still_writes_the_final_checkpoint(small_corpus, reference_run,
                                                                       tmp_path):
    """A stop during an epoch's last step saves that epoch's end-of-epoch checkpoint (not a
    mid-epoch file that says "all steps done"), so the end of training is not lost."""
    out = str(tmp_path / "last_step")
    p = start(net_args(small_corpus, out), console_of(out))
    fifth = "checkpoint_epoch_00002_iter_000002.pyth"
    wait_for(lambda: fifth in checkpoints(out) and len(stats(out)) >= 5, p, 240, fifth)
    kill(p, signal.SIGTERM)  # arrives during step 6 of 6
    assert wait(p, 120) == 0, read_text(console_of(out))[-3000:]
    assert len(stats(out)) == TOTAL_STEPS
    assert checkpoints(out)[-1] == "checkpoint_epoch_00002.pyth", checkpoints(out)
    assert_same_weights(final_state(reference_run), final_state(out))
    train_net(small_corpus, out)  # nothing left to train; must not fail
    assert len(stats(out)) == TOTAL_STEPS



@pytest.mark.slow
def test_second_ctrl_c_stops_at_once(small_corpus, tmp_path):
    """A second Ctrl-C does not wait for the step's checkpoint: exit 130, said in one line;
    the checkpoints on disk stay complete, and a restart resumes from the newest."""
    out = str(tmp_path / "ctrl_c_twice")
    p = start(net_args(small_corpus, out), console_of(out), new_session=True)
    wait_for_steps(out, p, 2)
    kill(p, signal.SIGINT, group=True)
    time.sleep(0.05)
    kill(p, signal.SIGINT, group=True)
    assert wait(p, 120) == 130, read_text(console_of(out))[-3000:]
    assert "Interrupted: stopped without a checkpoint" in read_text(console_of(out))
    train_net(small_corpus, out)
    assert "resumed from" in read_text(os.path.join(out, "stdout.log"))
    assert checkpoints(out)[-1] == "checkpoint_epoch_00002.pyth"
