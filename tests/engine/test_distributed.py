"""Distributed runtime with real processes on loopback (gloo, CPU).

The same worker (this file run as a script) is started three ways — the original code's
``--init_method/--num_shards/--shard_id``, two torchrun "nodes", and SLURM's environment —
and must give the single-process gradient of the whole global batch through
``all_gather_with_grad`` + DDP, plus correct object gathers, reductions and meters.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from multitrain.engine import distributed as du  # noqa: E402

# ------------------------------------------------------------------ the shared problem
IN, FEAT, CLASSES = 6, 5, 3
SPLIT = (3, 5)  # uneven local batches: exercises the padded gather
GLOBAL_B = sum(SPLIT)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(IN, FEAT)
        self.fc2 = nn.Linear(FEAT, CLASSES)

    def forward(self, x):
        z = self.fc1(x)
        return z, self.fc2(torch.tanh(z))


def make_model() -> TwoLayer:
    torch.manual_seed(0)
    return TwoLayer()


def make_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_B, IN, generator=g), torch.randint(0, CLASSES, (GLOBAL_B,), generator=g)


def global_loss(z, logits, y):
    """Cross-entropy over the global batch plus a VICReg-like term that couples samples
    (like the informative loss): z [B, FEAT], logits [B, CLASSES], y [B]."""
    b = z.shape[0]
    ce = F.cross_entropy(logits, y, reduction="sum") / b
    zc = z - z.mean(0)
    std = torch.sqrt(zc.var(0) + 1e-4)
    cov = zc.T @ zc / (b - 1)
    off = cov - torch.diag(torch.diag(cov))
    return ce + torch.relu(1 - std).mean() + (off ** 2).sum() / z.shape[1]


def view_probs():
    """Probabilities of 4 videos x 2 views, 3 classes: [4, 2, 3]; labels [4]."""
    g = torch.Generator().manual_seed(2)
    return torch.softmax(torch.randn(4, 2, 3, generator=g), -1), torch.tensor([0, 2, 1, 2])


# ------------------------------------------------------------------ worker side
def worker_main(cfg):
    from multitrain.engine.meters import TestMeter, ValMeter

    rank, world = du.get_rank(), du.get_world_size()
    lo, hi = sum(SPLIT[:rank]), sum(SPLIT[:rank + 1])
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    x, y = make_batch()
    results = []
    for use_tree in (False, True):  # all_gather_with_grad per tensor, then gather_for_loss
        model.zero_grad()
        z, logits = ddp(x[lo:hi])
        if use_tree:
            out, lab = du.gather_for_loss({"z": z, "logits": [logits]}, {"y": y[lo:hi]})
            loss = global_loss(out["z"], out["logits"][0], lab["y"])
        else:
            loss = global_loss(du.all_gather_with_grad(z), du.all_gather_with_grad(logits),
                               du.all_gather(y[lo:hi]))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))

    # multi-view test: ranks see overlapping views (views 3 and 4 of the flat list twice)
    probs, labels = view_probs()
    flat = [(v, j) for v in range(4) for j in range(2)]
    mine = flat[0:5] if rank == 0 else flat[3:8]
    tm = TestMeter(4, 3, 2, ensemble_method="sum")
    vid = torch.tensor([v for v, _ in mine])
    view = torch.tensor([j for _, j in mine])
    tm.update(*(du.all_gather(t) for t in (probs[vid, view], vid, view)), labels=du.all_gather(labels[vid]))
    test_result = tm.finalize()

    vm = ValMeter(names=("a", "b"))
    half = slice(2 * rank, 2 * rank + 2)  # videos 0-1 on rank 0, 2-3 on rank 1
    vm.update({"a": probs[half, 0]}, {"a": labels[half]})
    if rank == 1:  # a dataset only one rank's batches held
        vm.update({"b": probs[:1, 1]}, {"b": labels[:1]})
    vm.synchronize()

    du.barrier()
    torch.save({
        "rank": rank, "world": world, "local_rank": du.get_local_rank(), "results": results,
        "objects": du.all_gather_object({"rank": rank}),
        "mean": du.all_reduce_mean(torch.tensor([float(rank), 2.0])),
        "dict_mean": du.all_reduce_mean({"r": rank, "two": 2}),
        "sum": du.all_reduce_sum(float(rank + 1)),
        "cfg": (cfg.NUM_GPUS, cfg.NUM_SHARDS, cfg.SHARD_ID),
        "test": test_result, "test_scores": tm.scores(), "val": vm.summary(),
    }, os.path.join(cfg.OUTPUT_DIR, f"rank{rank}.pt"))


def worker_die(cfg):
    """Rank 1 is killed by SIGKILL; rank 0 keeps doing collectives."""
    if du.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    for _ in range(1000):
        du.all_reduce_sum(1.0)
        time.sleep(0.05)


def worker_hang(cfg):
    """Rank 1 is alive but never joins the collective; rank 0 must time out."""
    if du.get_rank() == 1:
        time.sleep(600)
    du.all_reduce_sum(1.0)


def _worker_cli():
    from multitrain.config import get_cfg

    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--scenario", default="main", choices=["main", "die", "hang"])
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--init_method", default=None)
    p.add_argument("--num_shards", type=int, default=None)
    p.add_argument("--shard_id", type=int, default=None)
    a = p.parse_args()
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.OUTPUT_DIR = a.out
    cfg.DIST.TIMEOUT_SECONDS = a.timeout
    fn = {"main": worker_main, "die": worker_die, "hang": worker_hang}[a.scenario]
    du.launch(fn, cfg, a.init_method, a.num_shards, a.shard_id)


# ------------------------------------------------------------------ test side
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in
           ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
            "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def run_procs(cmds, envs, timeout=180):
    procs = [subprocess.Popen(c, env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c, e in zip(cmds, envs)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs], outs


def reference():
    model = make_model()
    x, y = make_batch()
    z, logits = model(x)
    loss = global_loss(z, logits, y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def check_results(out: Path):
    ref_loss, ref_grads = reference()
    probs, labels = view_probs()
    ref_scores = probs.sum(1).double()
    for rank in range(2):
        r = torch.load(out / f"rank{rank}.pt", weights_only=False)
        assert r["world"] == 2 and r["rank"] == rank
        for loss, grads in r["results"]:
            assert torch.allclose(loss, ref_loss, atol=1e-6)
            for name, g in ref_grads.items():
                assert torch.allclose(grads[name], g, atol=1e-6), (name, grads[name], g)
        assert r["objects"] == [{"rank": 0}, {"rank": 1}]
        assert torch.allclose(r["mean"], torch.tensor([0.5, 2.0]))
        assert r["dict_mean"] == {"r": 0.5, "two": 2.0}
        assert r["sum"] == 3.0
        assert r["cfg"] == (0, 2, rank)
        assert torch.allclose(r["test_scores"].double(), ref_scores, atol=1e-6)
        assert r["test"]["duplicate_views"] == 2 and r["test"]["missing_views"] == 0
        expect_top1 = 100.0 * float((ref_scores.argmax(1) == labels).float().mean())
        assert r["test"]["top1"] == pytest.approx(expect_top1)
        all_scores = probs[:, 0]
        assert r["val"]["a_top1_acc"] == pytest.approx(
            100.0 * float((all_scores.argmax(1) == labels).float().mean()))
        # "b" was seen by rank 1 only; both ranks hold its summed counts
        assert r["val"]["b_top1_acc"] == pytest.approx(
            100.0 * float(probs[0, 1].argmax() == labels[0]))


def _assert_ok(rcs, outs):
    assert rcs == [0, 0], "\n\n".join(f"--- process {i} (rc {rc})\n{o[-4000:]}"
                                      for i, (rc, o) in enumerate(zip(rcs, outs)))


@pytest.mark.slow
def test_seed_style_two_shards_match_single_process(tmp_path):
    port = free_port()
    cmds = [[sys.executable, str(THIS), "--out", str(tmp_path), "--init_method",
             f"tcp://127.0.0.1:{port}", "--num_shards", "2", "--shard_id", str(i)] for i in range(2)]
    _assert_ok(*run_procs(cmds, [clean_env(), clean_env()]))
    check_results(tmp_path)


@pytest.mark.slow
def test_torchrun_two_nodes_match_single_process(tmp_path):
    port = free_port()
    cmds = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node",
             "1", "--node_rank", str(i), "--master_addr", "127.0.0.1", "--master_port", str(port),
             str(THIS), "--out", str(tmp_path)] for i in range(2)]
    _assert_ok(*run_procs(cmds, [clean_env(), clean_env()]))
    check_results(tmp_path)


@pytest.mark.slow
def test_slurm_env_two_tasks_match_single_process(tmp_path):
    port = free_port()
    envs = [clean_env(SLURM_PROCID=str(i), SLURM_NTASKS="2", SLURM_LOCALID="0", SLURM_NNODES="2",
                      SLURM_NODEID=str(i), SLURM_JOB_NODELIST="127.0.0.1", MASTER_PORT=str(port),
                      SLURM_JOB_ID="1234") for i in range(2)]
    cmds = [[sys.executable, str(THIS), "--out", str(tmp_path)]] * 2
    _assert_ok(*run_procs(cmds, envs))
    check_results(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["die", "hang"])
def test_lost_rank_makes_survivor_fail_within_timeout(tmp_path, scenario):
    port = free_port()
    timeout_s = 8
    cmds = [[sys.executable, str(THIS), "--out", str(tmp_path), "--scenario", scenario,
             "--timeout", str(timeout_s), "--init_method", f"tcp://127.0.0.1:{port}",
             "--num_shards", "2", "--shard_id", str(i)] for i in range(2)]
    procs = [subprocess.Popen(c, env=clean_env(), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in cmds]
    try:
        start = time.monotonic()
        out0 = procs[0].communicate(timeout=120)[0]
        elapsed = time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode != 0, out0[-3000:]
    # start-up (~5 s) + the timeout + slack; without the timeout rank 0 would wait 600 s
    assert elapsed < 5 * timeout_s + 20, elapsed


# ------------------------------------------------------------------ pure functions
def test_resolve_launch_modes():
    spec = du.resolve_launch(0, 1, 0, None, env={})
    assert (spec.mode, spec.world_size, spec.backend) == ("single", 1, "gloo")
    spec = du.resolve_launch(4, 1, 0, None, env={})
    assert (spec.mode, spec.world_size, spec.procs_per_node, spec.backend) == ("spawn", 4, 4, "nccl")
    spec = du.resolve_launch(8, 2, 1, "tcp://h:1", env={})
    assert (spec.mode, spec.world_size, spec.rank, spec.node_rank) == ("spawn", 16, 8, 1)
    spec = du.resolve_launch(0, 3, 2, "tcp://h:1", env={})
    assert (spec.world_size, spec.rank, spec.procs_per_node) == (3, 2, 1)
    tr = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
          "GROUP_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    spec = du.resolve_launch(4, 1, 0, None, env=tr)  # torchrun wins over SLURM
    assert (spec.mode, spec.rank, spec.local_rank, spec.num_nodes, spec.init_method) == \
        ("torchrun", 5, 1, 2, "env://")
    sl = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NNODES": "2",
          "SLURM_JOB_NODELIST": "gpu[07-08]"}
    spec = du.resolve_launch(2, 1, 0, "tcp://localhost:9999", env=sl)
    assert (spec.mode, spec.rank, spec.local_rank, spec.node_rank, spec.procs_per_node) == \
        ("slurm", 3, 1, 1, 2)
    if not __import__("shutil").which("scontrol"):
        assert spec.init_method == "tcp://gpu07:9999"
    # explicit --init_method/--num_shards/--shard_id win over SLURM variables
    assert du.resolve_launch(0, 2, 1, "tcp://h:1", env=sl).mode == "spawn"
    with pytest.raises(ValueError, match="shard_id"):
        du.resolve_launch(0, 2, 2, "tcp://h:1", env={})
    with pytest.raises(ValueError, match="init_method"):
        du.resolve_launch(0, 2, 0, None, env={})


@pytest.mark.skipif(bool(__import__("shutil").which("scontrol")), reason="scontrol present")
def test_first_slurm_host_parsing():
    assert du.first_slurm_host("node[003-005,009],other") == "node003"
    assert du.first_slurm_host("a1,a2") == "a1"
    assert du.first_slurm_host("gpu-[2-4]-ib") == "gpu-2-ib"
    assert du.first_slurm_host("127.0.0.1") == "127.0.0.1"


def test_single_process_helpers_are_identities():
    x = torch.randn(3, 2, requires_grad=True)
    assert du.all_gather_with_grad(x) is x
    assert du.get_world_size() == 1 and du.get_rank() == 0 and du.is_main_process()
    assert du.all_gather_object("a") == ["a"]
    assert torch.equal(du.all_reduce_mean(x.detach()), x.detach())
    assert du.all_reduce_sum({"a": 2}) == {"a": 2}
    du.barrier()


if __name__ == "__main__":
    _worker_cli()
