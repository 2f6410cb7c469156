"""Forward+backward speed and peak memory of a model, one fresh process per measurement.

Each measurement runs in a spawned child so that its peak memory is its own: on the CPU the
growth of the process's peak RSS (`ru_maxrss`) from just before the first step, on a GPU
`torch.cuda.max_memory_allocated` above what the model and optimizer-free state already
held. A step is: forward in train mode, the real criterion (`build_loss`) on random
one-hot labels, backward.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch


def _labels(cfg, batch: int, device):
    """Random one-hot labels {d: [B, K_d]} and masks {d: [B]} (sample i -> dataset i mod n)."""
    if not cfg.MODEL.USE_MULTI_HEAD:
        idx = torch.randint(0, cfg.MODEL.NUM_CLASSES, (batch,), device=device)
        return torch.nn.functional.one_hot(idx, cfg.MODEL.NUM_CLASSES).float(), None
    names, classes = list(cfg.MODEL.MULTI_DATASETS), list(cfg.MODEL.MULTI_NUM_CLASSES)
    labels, masks = {}, {}
    for j, (d, k) in enumerate(zip(names, classes)):
        idx = torch.randint(0, k, (batch,), device=device)
        labels[d] = torch.nn.functional.one_hot(idx, k).float()
        masks[d] = (torch.arange(batch, device=device) % len(names) == j).float()
    return labels, masks


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_train_step(cfg, batch: int, device: str, amp_dtype: Optional[str],
                     with_optimizer: bool = False) -> Callable[[], None]:
    """The measured step of ``cfg``'s model on random clips and labels: forward in train
    mode under autocast (``amp_dtype`` "bf16" / "fp16" / None), the real criterion,
    backward (then the trainer's optimizer step if ``with_optimizer``), then a device
    synchronisation. Sets cudnn.benchmark and applies the device options as training does."""
    from multitrain.engine.device_levers import apply_device_levers
    from multitrain.engine.optim import build_optimizer
    from multitrain.models import build_loss, build_model

    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)  # as the training processes
    dev = torch.device(device)
    model = apply_device_levers(build_model(cfg).to(dev).train(), cfg, dev)
    criterion = build_loss(cfg, model).to(dev)
    optimizer = build_optimizer(model, cfg) if with_optimizer else None
    x = torch.randn(batch, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES,
                    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE, device=dev)
    labels, masks = _labels(cfg, batch, dev)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp_dtype or "")

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
        sum(criterion(out, labels, masks).values()).backward()
        if optimizer is not None:
            optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return step


def _measure(cfg_yaml: str, impl: str, batch: int, iters: int, warmup: int, device: str,
             amp_dtype: Optional[str], act_checkpoint: bool, threads: int) -> Dict:
    """Child process body: build, warm up, time `iters` steps; return the figures."""
    from yacs.config import CfgNode

    from multitrain.config import get_cfg

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode.load_cfg(cfg_yaml))
    cfg.MVIT.ATTENTION_IMPL = impl
    cfg.MODEL.ACT_CHECKPOINT = act_checkpoint
    dev = torch.device(device)
    step = build_train_step(cfg, batch, device, amp_dtype)

    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(warmup):  # first calls of each shape are much slower (kernel selection)
        step()
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    for _ in range(iters):
        step()
    seconds = (time.perf_counter() - start) / iters
    cpu_seconds = (_cpu_seconds() - cpu_start) / iters
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) * 1024
    return {"impl": impl, "device": device, "amp": amp_dtype or "fp32",
            "act_checkpoint": act_checkpoint, "cudnn_benchmark": bool(cfg.CUDNN_BENCHMARK),
            "batch": batch, "sec_per_step": seconds,
            "sec_per_clip": seconds / batch, "clips_per_sec": batch / seconds,
            "cpu_sec_per_clip": cpu_seconds / batch, "threads": threads,
            "load_avg": max(load_before, os.getloadavg()[0]),
            "peak_mem_gb": peak / 1e9, "peak_mem_gb_per_clip": peak / 1e9 / batch}


def _child(queue, args):
    try:
        queue.put(_measure(*args))
    except BaseException as e:  # report, do not hang the parent
        queue.put({"error": f"{type(e).__name__}: {e}"})


def measure_in_subprocess(cfg, impl: str = "sdpa", batch: int = 2, iters: int = 3,
                          warmup: int = 2, device: str = "cpu", amp_dtype: Optional[str] = None,
                          act_checkpoint: bool = False) -> Dict:
    """One measurement (see `_measure`) in a fresh spawned process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (cfg.dump(), impl, batch, iters, warmup, device, amp_dtype, act_checkpoint,
            torch.get_num_threads())
    proc = ctx.Process(target=_child, args=(queue, args))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"benchmark child ({impl}, {device}) failed: {result['error']}")
    return result


def compare_attention(cfg, impls: Sequence[str] = ("sdpa", "reference"), repeats: int = 2,
                      **kwargs) -> List[Dict]:
    """Alternate the implementations `repeats` times (so load drifts hit both alike) and
    return one row per implementation with the median time and the max peak memory."""
    runs: Dict[str, List[Dict]] = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl in impls:
            runs[impl].append(measure_in_subprocess(cfg, impl=impl, **kwargs))
    rows = []
    for impl, results in runs.items():
        row = dict(results[0])
        row["sec_per_clip"] = statistics.median(r["sec_per_clip"] for r in results)
        row["cpu_sec_per_clip"] = statistics.median(r["cpu_sec_per_clip"] for r in results)
        row["load_avg"] = max(r["load_avg"] for r in results)
        row["sec_per_step"] = row["sec_per_clip"] * row["batch"]
        row["clips_per_sec"] = 1.0 / row["sec_per_clip"]
        row["peak_mem_gb"] = max(r["peak_mem_gb"] for r in results)
        row["peak_mem_gb_per_clip"] = row["peak_mem_gb"] / row["batch"]
        row["repeats"] = len(results)
        rows.append(row)
    return rows


def format_rows(rows: Sequence[Dict]) -> str:
    """Markdown table; the last column is the time relative to the first row."""
    head = ("| attention | device | amp | act ckpt | batch | s/clip (wall) | CPU s/clip | clips/s | "
            "peak GB | GB/clip | wall vs first | CPU vs first | load avg |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    first = rows[0]
    for r in rows:
        lines.append(
            f"| {r['impl']} | {r['device']} | {r['amp']} | {r['act_checkpoint']} | {r['batch']} | "
            f"{r['sec_per_clip']:.3f} | {r['cpu_sec_per_clip']:.3f} | {r['clips_per_sec']:.2f} | "
            f"{r['peak_mem_gb']:.2f} | {r['peak_mem_gb_per_clip']:.2f} | "
            f"{r['sec_per_clip'] / first['sec_per_clip']:.2f}x | "
            f"{r['cpu_sec_per_clip'] / first['cpu_sec_per_clip']:.2f}x | {r['load_avg']:.1f} |")
    return "\n".join(lines)
