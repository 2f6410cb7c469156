"""Shared pieces of the fault-injection suite: start real `tools/run_net.py` processes on
the small synthetic corpus, watch their logs, hit them with faults, compare the results.

Every run writes its console output to ``<OUTPUT_DIR>.console`` (a file, not a pipe: a
process we never read from must not block on a full pipe buffer) and its json stats to
``OUTPUT_DIR/stdout.log`` (appended by every run that shares the folder).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

from mt_testing import (DEMO_CONFIG, REPO, RUN_NET, assert_same_weights, child_env,  # noqa: F401  (re-exported)
                        corpus_args, free_port)
from multitrain.engine.writers import JSON_PREFIX

# Two epochs of 3 optimizer steps of 4 videos, a checkpoint after every step and epoch, a
# validation after each epoch (VAL_SKIP keeps one video per dataset). Dropout, drop-path and
# mixup stay on: a resumed run must replay every random draw of the uninterrupted one.
TINY_OPTS = [
    "TRAIN.BATCH_SIZE", "4", "TRAIN.MAX_ITERS_PER_EPOCH", "3", "SOLVER.MAX_EPOCH", "2",
    "TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.CHECKPOINT_ITER_PERIOD", "1",
    "TRAIN.AUTO_RESUME", "True", "TRAIN.EVAL_PERIOD", "1", "DATA.VAL_SKIP", "100",
    "TEST.ENABLE", "False", "LOG_MODEL_INFO", "False", "LOG_PERIOD", "1", "NUM_GPUS", "0",
    "AUG.NUM_SAMPLE", "1", "MIXUP.ENABLE", "True", "MODEL.DROPOUT_RATE", "0.5",
    "MVIT.DROPPATH_RATE", "0.2", "DATA_LOADER.NUM_WORKERS", "1",
    # the recipe's AdamW (not SGD): resumed weights come out bitwise equal, so even its
    # division by sqrt(v), which blows float noise up, leaves nothing to amplify
]


def net_args(corpus: str, out: str, extra: Sequence[str] = (), launch: Sequence[str] = ()) -> List[str]:
    """``run_net.py`` arguments of a tiny run of the demo config in ``out``."""
    return [RUN_NET, "--cfg", DEMO_CONFIG, *launch] + corpus_args(corpus, out) + \
        TINY_OPTS + [str(x) for x in extra]


def start(args: Sequence[str], console: str, env_extra: Optional[Dict[str, str]] = None,
          new_session: bool = False) -> subprocess.Popen:
    """Start ``python args...``; stdout+stderr go to the file ``console`` (appended)."""
    env = child_env(PYTHONUNBUFFERED="1", **(env_extra or {}))
    os.makedirs(os.path.dirname(console) or ".", exist_ok=True)
    with open(console, "a") as f:
        return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=new_session)


def console_of(out: str) -> str:
    return out.rstrip("/") + ".console"


def read_text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def train_net(corpus: str, out: str, extra: Sequence[str] = (), timeout: float = 300,
              expect_rc: Optional[int] = 0) -> subprocess.CompletedProcess:
    """Run ``run_net.py`` to completion; check its exit status unless ``expect_rc`` is None."""
    p = start(net_args(corpus, out, extra), console_of(out))
    rc = wait(p, timeout)
    if expect_rc is not None:
        assert rc == expect_rc, f"exit {rc}, expected {expect_rc}:\n{read_text(console_of(out))[-4000:]}"
    return p


def wait(p: subprocess.Popen, timeout: float) -> int:
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"process {p.pid} still running after {timeout} s (killed)")


def stats(out: str, kind: str = "train") -> List[dict]:
    """The json stats of type ``kind`` in ``out/stdout.log``, in order (a line cut by a
    SIGKILL is skipped)."""
    found = []
    for line in read_text(os.path.join(out, "stdout.log")).splitlines():
        pos = line.find(JSON_PREFIX)
        if pos < 0:
            continue
        try:
            rec = json.loads(line[pos + len(JSON_PREFIX):])
        except ValueError:
            continue
        if rec.get("_type") == kind:
            found.append(rec)
    return found


def wait_for(cond, p: subprocess.Popen, timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll ``cond()`` until true; fail if ``p`` exits first or time runs out."""
    deadline = time.time() + timeout
    while not cond():
        if p.poll() is not None:
            raise AssertionError(f"process exited ({p.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def wait_for_steps(out: str, p: subprocess.Popen, n: int, timeout: float = 240) -> None:
    """Wait until ``n`` train steps are logged in ``out``."""
    wait_for(lambda: len(stats(out)) >= n, p, timeout, f"{n} train steps in {out}")


def kill(p: subprocess.Popen, sig: int = signal.SIGKILL, group: bool = False) -> None:
    """Send ``sig`` to the process (or its whole process group, as SLURM does)."""
    if group:
        os.killpg(os.getpgid(p.pid), sig)
    else:
        p.send_signal(sig)


def checkpoints(out: str) -> List[str]:
    d = os.path.join(out, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if f.endswith(".pyth"))


def final_state(out: str) -> Dict[str, torch.Tensor]:
    """model_state of the last end-of-epoch checkpoint of ``out``."""
    ends = [f for f in checkpoints(out) if "_iter_" not in f]
    assert ends, f"no end-of-epoch checkpoint in {out}: {checkpoints(out)}"
    path = os.path.join(out, "checkpoints", ends[-1])
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def step_ids(records: Sequence[dict]) -> List[float]:
    """The ``epoch`` coordinate (e.g. 1.333 = epoch 2, step 1 of 3) of each train record."""
    return [round(r["epoch"], 4) for r in records]


def assert_steps_replay(reference: Sequence[dict], records: Sequence[dict], rel: float = 1e-4) -> None:
    """Every logged step of ``records`` has the loss of the same step of ``reference``
    (same batch, same weights, same random draws)."""
    ref = {round(r["epoch"], 4): r for r in reference}
    for r in records:
        key = round(r["epoch"], 4)
        assert key in ref, f"step {key} not in the reference run"
        a, b = r["loss"], ref[key]["loss"]
        assert abs(a - b) <= rel * abs(b) + 1e-6, f"step {key}: loss {a} vs uninterrupted {b}"


def steps_done(name: str, steps_per_epoch: int) -> int:
    """Optimizer steps a checkpoint file holds, from its name (see checkpoint_name())."""
    from multitrain.checkpoint import parse_checkpoint_name

    epoch, it = parse_checkpoint_name(name)
    return epoch * steps_per_epoch if it == float("inf") else (epoch - 1) * steps_per_epoch + int(it)


def start_ranks(corpus: str, out: str, extra: Sequence[str] = (),
                world: int = 2) -> List[subprocess.Popen]:
    """``world`` gloo ranks on this machine, as the original code launches them (``--init_method tcp://...
    --num_shards N --shard_id i``); rank i's console goes to ``<out>.rank<i>.console``."""
    url = f"tcp://127.0.0.1:{free_port()}"
    return [start(net_args(corpus, out, extra, launch=["--init_method", url, "--num_shards", str(world),
                                                      "--shard_id", str(i)]),
                  f"{out.rstrip('/')}.rank{i}.console", new_session=True)
            for i in range(world)]


def rank_console(out: str, rank: int) -> str:
    return read_text(f"{out.rstrip('/')}.rank{rank}.console")


def wait_ranks(procs: Sequence[subprocess.Popen], out: str, timeout: float = 300) -> None:
    """Wait for every rank; all must exit 0."""
    deadline = time.time() + timeout
    for i, p in enumerate(procs):
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"rank {i} still running after {timeout} s:\n"
                                 f"{rank_console(out, i)[-3000:]}")
        assert rc == 0, f"rank {i} exit {rc}:\n{rank_console(out, i)[-3000:]}"


def load_tiny_cfg(corpus: str, out: str, extra: Sequence[str] = ()):
    """The config a tiny run of ``net_args(corpus, out, extra)`` would use."""
    from multitrain.config import load_config

    return load_config(DEMO_CONFIG, net_args(corpus, out, extra)[3:])


BAD_KINDS = ("zero_byte", "truncated", "random_bytes", "missing")


def damage(path: str, kind: str, seed: int = 0) -> None:
    """Turn the video at ``path`` into a bad file of ``kind`` (see BAD_KINDS)."""
    size = os.path.getsize(path)
    if kind == "zero_byte":
        open(path, "wb").close()
    elif kind == "truncated":
        with open(path, "r+b") as f:
            f.truncate(size // 3)
    elif kind == "random_bytes":
        import random

        with open(path, "wb") as f:
            f.write(random.Random(seed).randbytes(size))
    elif kind == "missing":
        os.remove(path)
    else:
        raise ValueError(kind)


def dataset_dirs(corpus: str) -> Dict[str, tuple]:
    """{dataset key: (annotation folder, video folder)} of the synthetic corpus."""
    rel = json.load(open(os.path.join(corpus, "relations.json")))
    return {n: (os.path.join(corpus, rel["datasets"][n]["dir"], "pyslowfast_annotations"),
                os.path.join(corpus, rel["datasets"][n]["dir"], "videos_320p"))
            for n in rel["datasets"]}


def csv_lines(path: str) -> List[str]:
    return [l for l in read_text(path).splitlines() if l.strip()]
