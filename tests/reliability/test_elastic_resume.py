"""Resume on another number of gloo ranks (a preempted job that comes back smaller or larger).

A run SIGKILLed after a mid-epoch checkpoint resumes with another world size: the rest of
the interrupted epoch's global order is re-sharded over the new ranks, so the videos every
rank consumed (``TRAIN.LOG_SAMPLES``) cover a prefix of the epoch's order, each video once;
the run finishes; resuming twice from the same checkpoint gives the same weights.

The two-rank run of the 2 -> 1 case has a global batch of 4, the resumed one of 3
(``TRAIN.BATCH_SIZE`` given anew, as a user may on a smaller allocation): a resume that
counted steps instead of videos would skip or repeat videos.
"""
import json
import os
import shutil
import signal

import torch

from .helpers import (checkpoints, console_of, final_state, load_tiny_cfg, net_args, read_text,
                      start, start_ranks, train_net, wait_for, wait_ranks)

# validation after the last epoch only, no loader workers: seconds per run saved
OPTS = ["TRAIN.MAX_ITERS_PER_EPOCH", "4", "TRAIN.LOG_SAMPLES", "True", "TRAIN.EVAL_PERIOD", "2",
        "DATA_LOADER.NUM_WORKERS", "0", "DIST.TIMEOUT_SECONDS", "120"]
FIRST = "checkpoint_epoch_00001_iter_000001.pyth"


def _records(out, world=None):
    """Every rank's sample records of ``out`` (of runs on ``world`` ranks), in file order."""
    recs = []
    for name in sorted(os.listdir(out)):
        if name.startswith("samples_rank") and name.endswith(".jsonl"):
            recs += [json.loads(l) for l in read_text(os.path.join(out, name)).splitlines() if l]
    return [r for r in recs if world is None or r["world_size"] == world]


def _kill_after_first_checkpoint(procs, out):
    wait_for(lambda: FIRST in checkpoints(out), procs[0], 240, FIRST)
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)
    newest = checkpoints(out)[-1]
    assert "_iter_" in newest and newest.startswith("checkpoint_epoch_00001"), checkpoints(out)
    ckpt = torch.load(os.path.join(out, "checkpoints", newest), map_location="cpu", weights_only=True)
    return ckpt["extra"]["epoch_position"], _records(out)


def _resume(corpus, out, world, extra=()):
    if world == 1:
        train_net(corpus, out, OPTS + list(extra))
        return read_text(os.path.join(out, "stdout.log"))
    wait_ranks(start_ranks(corpus, out, OPTS + list(extra), world=world), out)
    return read_text(os.path.join(out, "stdout.log"))


def _check_epoch_seen_once(corpus, out, killed, position, resumed):
    """The first epoch's items: those the killed run consumed up to its checkpoint, then
    the resumed run's; together a prefix of the epoch's order, no item twice."""
    from multitrain.data.loader import build_dataset

    cfg = load_tiny_cfg(corpus, out, OPTS)
    n = len(build_dataset(cfg, "train", transform=None))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.RNG_SEED + 0)).tolist()
    before = [i for r in killed if r["epoch"] == 0 and r["position"] <= position for i in r["items"]]
    after = [i for r in resumed if r["epoch"] == 0 for i in r["items"]]
    assert len(before) == position, (position, killed)
    seen = before + after
    assert len(seen) == len(set(seen)), f"videos seen twice: {sorted(seen)}"
    assert sorted(seen) == sorted(order[:len(seen)]), "videos of the epoch's order skipped"
    assert len(after) >= 6  # the rest of the epoch ran (at least 2 steps of the new world)
    assert any(r["epoch"] == 1 for r in resumed)  # and the next epoch


def test_two_ranks_resume_on_one_mid_epoch(small_corpus, tmp_path):
    out = str(tmp_path / "two")
    position, killed = _kill_after_first_checkpoint(start_ranks(small_corpus, out, OPTS), out)
    twin = str(tmp_path / "twin")
    shutil.copytree(out, twin)
    log = _resume(small_corpus, out, world=1, extra=["TRAIN.BATCH_SIZE", "3"])
    assert "world size changed from 2 to 1 processes" in log
    assert "effective batch changed from 4 to 3 videos per step" in log
    _check_epoch_seen_once(small_corpus, out, killed, position, _records(out, world=1))
    assert "checkpoint_epoch_00002.pyth" in checkpoints(out)
    # the same checkpoint resumed again on one rank: the same weights, bit for bit
    _resume(small_corpus, twin, world=1, extra=["TRAIN.BATCH_SIZE", "3"])
    a, b = final_state(out), final_state(twin)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_one_rank_resumes_on_two_mid_epoch(small_corpus, tmp_path):
    out = str(tmp_path / "one")
    p = start(net_args(small_corpus, out, OPTS), console_of(out), new_session=True)
    position, killed = _kill_after_first_checkpoint([p], out)
    log = _resume(small_corpus, out, world=2)
    assert "world size changed from 1 to 2 processes" in log
    _check_epoch_seen_once(small_corpus, out, killed, position, _records(out, world=2))
    assert "checkpoint_epoch_00002.pyth" in checkpoints(out)
