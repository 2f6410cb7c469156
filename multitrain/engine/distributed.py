"""Distributed runtime: start the job (three ways) and the collectives the engine needs.

Launch modes, chosen by :func:`resolve_launch` in this order:

1. ``torchrun`` — ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set: one process per
   rank already exists; join with ``env://``.
2. the original code's style with several shards — ``--init_method tcp://HOST:PORT --num_shards N
   --shard_id I``: this node spawns ``NUM_GPUS`` processes (one CPU process when
   ``NUM_GPUS`` is 0); global rank = ``shard_id * procs_per_node + local_rank``.
3. SLURM — ``SLURM_PROCID`` with ``SLURM_NTASKS > 1`` (``srun``, one task per rank): the
   master is the first host of ``SLURM_JOB_NODELIST`` (via ``scontrol show hostnames``
   when present), the port that of ``--init_method`` unless ``MASTER_PORT`` is set.
4. one node — ``NUM_GPUS > 1`` spawns that many processes; otherwise ``main_fn`` runs in
   this process without a process group.

NCCL on GPUs (``DIST_BACKEND``), gloo on the CPU. Every collective times out after
``DIST.TIMEOUT_SECONDS`` (a dead or stuck rank then makes the others raise instead of
hanging; a rank that dies outright usually breaks gloo's connections at once).

In the children the config is adjusted to the actual layout (``NUM_SHARDS`` = nodes,
``SHARD_ID`` = node index, ``NUM_GPUS`` = processes per node on GPUs; on the CPU every
process is one shard), so per-GPU batch sizes and ``BASE_LR_SCALE_NUM_SHARDS`` hold
whatever the launcher.
"""

import datetime
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional

import torch
import torch.distributed as dist

__all__ = [
    "LaunchSpec", "resolve_launch", "launch", "first_slurm_host", "get_rank", "get_world_size",
    "get_local_rank", "get_local_size", "is_main_process", "is_dist",
    "get_device", "current_device", "wrap_ddp", "all_gather_with_grad", "gather_for_loss",
    "all_gather", "all_gather_object", "all_reduce_mean",
    "all_reduce_sum", "barrier", "destroy",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800
_LOCAL = {"rank": 0, "size": 1, "gpu": False, "device": 0}  # this process's place on its node


@dataclass(frozen=True)
class LaunchSpec:
    """How this node's processes join the job.

    Attributes:
        mode: "single", "spawn", "torchrun" or "slurm".
        world_size: number of processes of the job.
        num_nodes, node_rank: shards (nodes) and this node's index.
        procs_per_node: processes per node.
        init_method: URL for ``init_process_group``.
        backend: "nccl" or "gloo".
        use_gpu: processes drive one GPU each (device = local rank).
        rank, local_rank: for torchrun/slurm, this process's; for spawn/single, of local 0.
    """

    mode: str
    world_size: int
    num_nodes: int
    node_rank: int
    procs_per_node: int
    init_method: str
    backend: str
    use_gpu: bool
    rank: int = 0
    local_rank: int = 0


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list such as ``gpu[03-05,09],cpu1`` -> ``gpu03``.

    Uses ``scontrol show hostnames`` when it is installed, else parses the common forms
    (prefix, one bracketed range list, suffix).
    """
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                                 capture_output=True, text=True, timeout=60).stdout.split()
            if out:
                return out[0]
        except (subprocess.SubprocessError, OSError) as e:
            logger.warning("scontrol failed on %r (%s); parsing it myself", nodelist, e)
    m = re.match(r"([^,\[]*)(?:\[([^\]]+)\])?([^,]*)", nodelist.strip())
    if not m or not (m.group(1) or m.group(2)):
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, ranges, suffix = m.groups()
    first = ranges.split(",")[0].split("-")[0] if ranges else ""
    return f"{prefix}{first}{suffix}"


def _port_of(init_method: Optional[str], default: int = 29500) -> int:
    m = re.match(r"tcp://.*:(\d+)/?$", init_method or "")
    return int(m.group(1)) if m else default


def resolve_launch(num_gpus: int, num_shards: int, shard_id: int,
                   init_method: Optional[str] = None, gpu_backend: str = "nccl",
                   env: Optional[Mapping[str, str]] = None) -> LaunchSpec:
    """Pick the launch mode from the arguments and the environment (pure function).

    Args:
        num_gpus: ``NUM_GPUS`` (GPUs per node; 0 = CPU).
        num_shards, shard_id: ``--num_shards`` / ``--shard_id`` (or the config's).
        init_method: ``--init_method`` (``tcp://HOST:PORT``).
        gpu_backend: ``DIST_BACKEND`` used when ``num_gpus > 0``.
        env: environment (defaults to ``os.environ``).
    """
    env = os.environ if env is None else env
    use_gpu = num_gpus > 0
    backend = gpu_backend if use_gpu else "gloo"
    if all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
        local_size = int(env.get("LOCAL_WORLD_SIZE", num_gpus if use_gpu else 1) or 1)
        return LaunchSpec("torchrun", world, max(1, world // local_size),
                          int(env.get("GROUP_RANK", rank // local_size)), local_size, "env://",
                          backend, use_gpu, rank, int(env["LOCAL_RANK"]))
    procs = max(1, num_gpus)
    if num_shards > 1:
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"--shard_id {shard_id} outside [0, --num_shards {num_shards})")
        if not init_method:
            raise ValueError("--init_method tcp://HOST:PORT is required with --num_shards > 1")
        return LaunchSpec("spawn", procs * num_shards, num_shards, shard_id, procs, init_method,
                          backend, use_gpu, shard_id * procs, 0)
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        world, rank = int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"])
        nodes = int(env.get("SLURM_NNODES", env.get("SLURM_JOB_NUM_NODES", "1")))
        per_node = max(1, world // max(1, nodes))
        nodelist = env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "127.0.0.1"))
        port = int(env.get("MASTER_PORT", _port_of(init_method)))
        url = f"tcp://{first_slurm_host(nodelist)}:{port}"
        return LaunchSpec("slurm", world, max(1, nodes), int(env.get("SLURM_NODEID", rank // per_node)),
                          per_node, url, backend, use_gpu, rank, int(env.get("SLURM_LOCALID", 0)))
    if procs > 1:
        return LaunchSpec("spawn", procs, 1, 0, procs, init_method or "tcp://localhost:9999",
                          backend, use_gpu, 0, 0)
    return LaunchSpec("single", 1, 1, 0, 1, "", backend, use_gpu, 0, 0)


def _adjusted_cfg(cfg, spec: LaunchSpec):
    """A copy of ``cfg`` whose NUM_GPUS / NUM_SHARDS / SHARD_ID describe the real layout."""
    want = ({"NUM_GPUS": spec.procs_per_node, "NUM_SHARDS": spec.num_nodes,
             "SHARD_ID": spec.node_rank} if spec.use_gpu else
            {"NUM_GPUS": 0, "NUM_SHARDS": spec.world_size,
             "SHARD_ID": spec.node_rank * spec.procs_per_node})
    out = cfg.clone()
    frozen = out.is_frozen()
    out.defrost()
    for key, value in want.items():
        if out[key] != value:
            if spec.mode in ("torchrun", "slurm") and key != "SHARD_ID":
                logger.warning("%s launch: %s set to %s (config said %s)", spec.mode, key, value,
                               out[key])
            out[key] = value
    if frozen:
        out.freeze()
    return out


def _worker(local_rank: int, main_fn: Callable, cfg, spec: LaunchSpec, timeout_s: float) -> None:
    """Body of every process: join the group, pin the GPU, run ``main_fn(cfg)``, leave."""
    rank = spec.rank if spec.mode in ("torchrun", "slurm") else spec.rank + local_rank
    # A scheduler may show each task only its own GPU (SLURM --gpus-per-task): then the
    # local rank is not a valid device index, and the visible GPUs are shared round-robin.
    device = local_rank % max(1, torch.cuda.device_count()) if spec.use_gpu else 0
    _LOCAL.update(rank=local_rank, size=spec.procs_per_node, gpu=spec.use_gpu, device=device)
    if spec.use_gpu:
        torch.cuda.set_device(device)
    if spec.world_size > 1:
        # NCCL only honours the timeout with asynchronous error handling on.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        kwargs = {"device_id": torch.device("cuda", device)} if spec.backend == "nccl" else {}
        dist.init_process_group(spec.backend, init_method=spec.init_method,
                                world_size=spec.world_size, rank=rank,
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    try:
        main_fn(cfg)
    finally:
        destroy()


def launch(main_fn: Callable[[Any], None], cfg, init_method: Optional[str] = None,
           num_shards: Optional[int] = None, shard_id: Optional[int] = None,
           timeout_s: Optional[float] = None) -> None:
    """Run ``main_fn(cfg)`` in every process of the job (see the module docstring).

    Args:
        main_fn: picklable (module-level) function of the config; called once per process
            after the process group is up (``get_rank()`` etc. then work).
        cfg: the run's config (reads NUM_GPUS, NUM_SHARDS, SHARD_ID, DIST_BACKEND,
            DIST.TIMEOUT_SECONDS); each process receives an adjusted copy.
        init_method, num_shards, shard_id: the original code's command-line values; None takes the
            config's (and ``tcp://localhost:9999`` for the URL).
        timeout_s: collective timeout; None reads ``DIST.TIMEOUT_SECONDS`` (1800 if absent).
    Raises:
        whatever ``main_fn`` raised (spawned children: ``ProcessRaisedException``), so the
        exit code says the job failed.
    """
    if timeout_s is None:
        timeout_s = cfg.DIST.TIMEOUT_SECONDS if "DIST" in cfg else DEFAULT_TIMEOUT_S
    spec = resolve_launch(
        cfg.NUM_GPUS, cfg.NUM_SHARDS if num_shards is None else num_shards,
        cfg.SHARD_ID if shard_id is None else shard_id, init_method, cfg.DIST_BACKEND)
    needed = spec.procs_per_node if spec.mode in ("spawn", "single") else 1
    if spec.use_gpu and torch.cuda.device_count() < needed:
        raise RuntimeError(f"NUM_GPUS {cfg.NUM_GPUS}: {needed} GPU(s) needed on this node, found "
                           f"{torch.cuda.device_count()} (NUM_GPUS 0 runs on the CPU)")
    child_cfg = _adjusted_cfg(cfg, spec)
    logger.info("launch: %s, world %d, node %d/%d, %d per node, backend %s, %s", spec.mode,
                spec.world_size, spec.node_rank, spec.num_nodes, spec.procs_per_node,
                spec.backend, spec.init_method or "no process group")
    if spec.mode == "spawn" and spec.procs_per_node > 1:
        torch.multiprocessing.spawn(_worker, args=(main_fn, child_cfg, spec, timeout_s),
                                    nprocs=spec.procs_per_node, join=True)
    else:
        _worker(spec.local_rank, main_fn, child_cfg, spec, timeout_s)


# ---------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------
def is_dist() -> bool:
    """A process group is up."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def get_local_rank() -> int:
    """Rank of this process on its node."""
    return _LOCAL["rank"]


def get_local_size() -> int:
    """Processes on this node."""
    return _LOCAL["size"]



def is_main_process() -> bool:
    """Global rank 0 (logging, checkpoint writing)."""
    return get_rank() == 0


def get_device() -> torch.device:
    """This process's device: its GPU (the local rank) when launched with NUM_GPUS > 0,
    else the CPU."""
    return torch.device("cuda", _LOCAL["device"]) if _LOCAL["gpu"] else torch.device("cpu")


def current_device(cfg) -> torch.device:
    """Device of this process from the config: ``cuda:<local rank>`` when NUM_GPUS > 0."""
    return torch.device("cuda", _LOCAL["device"]) if cfg.NUM_GPUS > 0 else torch.device("cpu")


def wrap_ddp(module: torch.nn.Module, cfg, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` when the job has several processes, else the module.

    The module must already be on :func:`current_device`. Gradients are averaged over
    ranks (see :func:`all_gather_with_grad` for the gather-before-loss correction).
    """
    if get_world_size() == 1:
        return module
    gpu = cfg.NUM_GPUS > 0
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[_LOCAL["device"]] if gpu else None,
        output_device=_LOCAL["device"] if gpu else None,
        find_unused_parameters=find_unused_parameters)


def _comm_device() -> torch.device:
    return get_device() if dist.get_backend() == "nccl" else torch.device("cpu")


# ---------------------------------------------------------------------------------------
# Collectives (each is the identity / a no-op without a process group)
# ---------------------------------------------------------------------------------------
def _batch_sizes(n: int) -> List[int]:
    """Every rank's first-dimension size ``n``, in rank order."""
    t = torch.tensor([n], dtype=torch.long, device=_comm_device())
    sizes = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, t)
    return [int(s.item()) for s in sizes]


def _gather_padded(x: torch.Tensor, sizes: Optional[List[int]] = None) -> List[torch.Tensor]:
    """All ranks' ``x`` (first dims may differ: ``sizes``, gathered when None), in rank
    order. Bool tensors travel as uint8."""
    sizes = _batch_sizes(x.shape[0]) if sizes is None else sizes
    send = x.to(_comm_device()).contiguous()
    if send.dtype == torch.bool:
        send = send.to(torch.uint8)
    if send.shape[0] < max(sizes):  # all_gather needs equal shapes: pad, then trim
        pad = send.new_zeros((max(sizes) - send.shape[0],) + tuple(send.shape[1:]))
        send = torch.cat([send, pad])
    bufs = [torch.empty_like(send) for _ in sizes]
    dist.all_gather(bufs, send)
    return [b[:s].to(device=x.device, dtype=x.dtype) for b, s in zip(bufs, sizes)]


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenation of every rank's tensor. Backward: this rank's slice of the
    incoming gradient, times the world size W.

    Why W: every rank evaluates the same loss L on the same gathered tensors, but autograd
    reaches only this rank's parameters through its own slice, so rank r computes
    g_r = sum over its samples of dL/dz_i * dz_i/dtheta, and the true gradient is
    G = sum_r g_r. DDP averages: (1/W) sum_r g_r = G / W — the original's error. Scaling
    the slice's gradient by W gives (1/W) sum_r W g_r = G: DDP's averaged gradient equals
    the single-process gradient of the global batch. (No collective is needed backward:
    dL/dz of the local slice is already complete, since L is computed on the full batch.)
    """

    @staticmethod
    def forward(ctx, x, sizes):
        parts = _gather_padded(x, sizes)
        rank = dist.get_rank()
        ctx.start = sum(p.shape[0] for p in parts[:rank])
        ctx.stop = ctx.start + x.shape[0]
        ctx.world = len(parts)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.start:ctx.stop] * ctx.world, None


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of all ranks along dim 0 in rank order; gradients flow to the
    local slice, scaled so that DDP's averaged gradient is the global batch's gradient.

    Contract: every rank must compute the same loss from the gathered tensors (the loss
    of the whole global batch, normalised by the global batch size). Tensors without
    gradient (labels, masks) may go through it too.

    Args:
        x: ``[B_local, ...]`` (B_local may differ between ranks).
    Returns:
        ``[sum of B_local, ...]``.
    """
    if not is_dist() or dist.get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x, None)


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenation of every rank's ``x`` along dim 0 (no gradient)."""
    if not is_dist() or dist.get_world_size() == 1:
        return x
    with torch.no_grad():
        return torch.cat(_gather_padded(x.detach()))


def gather_for_loss(*trees):
    """:func:`all_gather_with_grad` on every tensor of nested dicts/lists/tuples (model
    outputs, label dicts, mask dicts) for ``TRAIN.GATHER_BEFORE_LOSS``.

    Every tensor must have the local batch as its first dimension (checked); the ranks'
    batch sizes are exchanged once for all of them. Non-tensor leaves pass unchanged.

    Returns:
        a tuple with one gathered tree per argument (the trees themselves alone).
    """
    if not is_dist() or dist.get_world_size() == 1:
        return trees
    leaves = []
    _walk(trees, leaves.append)
    if not leaves:
        return trees
    n = leaves[0].shape[0]
    sizes = _batch_sizes(n)

    def gather(path, t):
        if t.ndim == 0 or t.shape[0] != n:
            raise ValueError(f"gather_for_loss: entry {path} has shape {tuple(t.shape)}, expected "
                             f"the local batch ({n}) first")
        return _AllGatherWithGrad.apply(t, sizes)

    return _map_tree(trees, gather, "")


def _walk(tree, fn) -> None:
    if isinstance(tree, torch.Tensor):
        fn(tree)
    elif isinstance(tree, Mapping):
        for v in tree.values():
            _walk(v, fn)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            _walk(v, fn)


def _map_tree(tree, fn, path: str):
    if isinstance(tree, torch.Tensor):
        return fn(path or "<tensor>", tree)
    if isinstance(tree, Mapping):
        return type(tree)((k, _map_tree(v, fn, f"{path}[{k!r}]")) for k, v in tree.items())
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tree(v, fn, f"{path}[{i}]") for i, v in enumerate(tree))
    return tree


def all_gather_object(obj: Any) -> List[Any]:
    """List of every rank's picklable ``obj``, in rank order (``[obj]`` alone)."""
    if not is_dist():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _all_reduce(x, op: str):
    if not is_dist() or dist.get_world_size() == 1:
        return x.clone() if isinstance(x, torch.Tensor) else x
    world = dist.get_world_size()
    if isinstance(x, torch.Tensor):
        t = x.detach().to(_comm_device(), copy=True)
        dist.all_reduce(t)
        return (t / world if op == "mean" else t).to(x.device)
    if isinstance(x, Mapping):
        keys = sorted(x)  # same order on every rank
        vals = torch.tensor([float(x[k]) for k in keys], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(vals)
        vals = vals / world if op == "mean" else vals
        return {k: float(v) for k, v in zip(keys, vals.tolist())}
    vals = torch.tensor([float(x)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(vals)
    return float(vals.item()) / (world if op == "mean" else 1)


def all_reduce_mean(x):
    """Mean over ranks of a tensor (returns a new tensor), a number (float) or a dict of
    numbers (dict of floats; every rank must pass the same keys)."""
    return _all_reduce(x, "mean")


def all_reduce_sum(x):
    """Sum over ranks; same argument types as :func:`all_reduce_mean`."""
    return _all_reduce(x, "sum")


def barrier() -> None:
    """Wait for every rank (subject to the collective timeout)."""
    if not is_dist():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[_LOCAL["device"]])
    else:
        dist.barrier()


def destroy() -> None:
    """Tear the process group down (no-op without one)."""
    if is_dist():
        dist.destroy_process_group()
