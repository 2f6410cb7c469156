"""Faults of a job of two gloo ranks (the original's launch, CPU).

- preempted (SIGKILL of every rank) at a random step, or asked to stop (SIGTERM to one rank
  only): the job auto-resumes to the weights of an uninterrupted two-rank run;
- one rank dies (SIGKILL) or hangs (SIGSTOP): the survivor exits non-zero within the
  collective timeout DIST.TIMEOUT_SECONDS instead of waiting forever.
"""
import os
import random
import signal
import time

import pytest

from .helpers import (assert_same_weights, assert_steps_replay, checkpoints, final_state,
                      rank_console, start_ranks, stats, step_ids, steps_done, wait_for,
                      wait_for_steps, wait_ranks)

TOTAL_STEPS = 6
TIMEOUT_S = 30  # DIST.TIMEOUT_SECONDS of the failure tests (a slow rank must not trip it)


@pytest.fixture(scope="module")
def reference_2ranks(small_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reference_2ranks") / "run")
    wait_ranks(start_ranks(small_corpus, out), out)
    return out


def _resume_and_compare(corpus, reference, out, n_before):
    done = steps_done(checkpoints(out)[-1], 3) if checkpoints(out) else 0
    wait_ranks(start_ranks(corpus, out), out)
    ref, after = stats(reference), stats(out)[n_before:]
    assert step_ids(after) == step_ids(ref)[done:]
    assert_steps_replay(ref, after)
    assert_same_weights(final_state(reference), final_state(out))
    return done


def _run_to_random_step(corpus, out):
    """Start the two ranks and wait until they pass a random step k (seed printed on failure).
    Returns (procs, k, seed)."""
    seed = int.from_bytes(os.urandom(2), "little")
    k = random.Random(seed).randint(1, TOTAL_STEPS - 1)
    procs = start_ranks(corpus, out)
    wait_for_steps(out, procs[0], k)
    return procs, k, seed


@pytest.mark.slow
def test_two_ranks_sigkilled_at_random_step_resume_exactly(small_corpus, reference_2ranks, tmp_path):
    out = str(tmp_path / "killed")
    procs, k, seed = _run_to_random_step(small_corpus, out)
    for p in procs:  # the whole job is preempted
        os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)
    n_before = len(stats(out))
    assert_steps_replay(stats(reference_2ranks), stats(out))
    done = _resume_and_compare(small_corpus, reference_2ranks, out, n_before)
    assert k - 1 <= done <= n_before, f"killed after step {k} (seed {seed}): {checkpoints(out)}"


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_then_resumes_exactly(small_corpus, reference_2ranks, tmp_path):
    out = str(tmp_path / "stopped")
    procs, k, seed = _run_to_random_step(small_corpus, out)
    os.killpg(procs[1].pid, signal.SIGTERM)  # rank 1's node only (and its loader worker)
    wait_ranks(procs, out, timeout=120)  # both stop cleanly
    assert "stopping after a checkpoint" in rank_console(out, 0)
    n_before = len(stats(out))
    done = _resume_and_compare(small_corpus, reference_2ranks, out, n_before)
    assert done == n_before, f"signal after step {k} (seed {seed}): {checkpoints(out)}"


@pytest.mark.parametrize("victim,fault", [
    (1, "SIGKILL"),
    pytest.param(1, "SIGSTOP", marks=pytest.mark.slow),
    pytest.param(0, "SIGKILL", marks=pytest.mark.slow),
], ids=["rank1-SIGKILL", "rank1-SIGSTOP", "rank0-SIGKILL"])
def test_survivor_exits_nonzero_within_timeout(small_corpus, tmp_path, victim, fault):
    """A rank dies (SIGKILL) or hangs (SIGSTOP) in the middle of training."""
    out = str(tmp_path / "broken")
    procs = start_ranks(small_corpus, out, ["DIST.TIMEOUT_SECONDS", str(TIMEOUT_S),
                                            "TRAIN.MAX_ITERS_PER_EPOCH", "100"])
    survivor = procs[1 - victim]
    try:
        wait_for_steps(out, procs[0], 2)
        os.killpg(procs[victim].pid, getattr(signal, fault))
        t0 = time.time()
        try:
            rc = survivor.wait(timeout=TIMEOUT_S + 60)
        except Exception:
            raise AssertionError(f"rank {1 - victim} still running {TIMEOUT_S + 60} s after "
                                 f"rank {victim}'s {fault}")
        elapsed = time.time() - t0
        log = rank_console(out, 1 - victim)
        assert rc != 0, log[-3000:]
        assert elapsed < TIMEOUT_S + 30, f"rank {1 - victim} took {elapsed:.0f} s to fail"
        assert "Traceback" in log or "Error" in log, log[-3000:]
        print(f"rank {victim} {fault}: rank {1 - victim} exited {rc} after {elapsed:.1f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.slow
def test_sigterm_to_one_rank_during_final_validation_ends_both_cleanly(small_corpus, tmp_path):
    """The final checkpoint is written before the final validation; a stop signal reaching
    rank 1 only during that validation (every val video, so it lasts) ends both ranks with
    exit 0, the final checkpoint newest, and the test phase skipped by both (a rank running
    it alone would wait for the other in its collectives)."""
    out = str(tmp_path / "final_val")
    procs = start_ranks(small_corpus, out, ["DATA.VAL_SKIP", "1", "TEST.ENABLE", "True",
                                            "DIST.TIMEOUT_SECONDS", "60"])
    final = "checkpoint_epoch_00002.pyth"
    wait_for(lambda: final in checkpoints(out), procs[0], 300, final)
    os.killpg(procs[1].pid, signal.SIGTERM)
    wait_ranks(procs, out, timeout=180)
    assert "training is complete, the test phase is skipped" in rank_console(out, 0)
    assert checkpoints(out)[-1] == final
    assert stats(out, "test") == [] and len(stats(out, "val")) == 2
