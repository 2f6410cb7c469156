"""Where the train clip recipe costs what: in the loader workers or on the device.

For one config (the script's default: the original code's K400 MViTv2-B 32x3 recipe) and a few
generated videos, measured in one process:

* workers, one thread (as a DataLoader worker): CPU and wall seconds per sample of
  ``dataset[i]`` for the train dataset of ``build_dataset`` with ``AUG.ON_DEVICE`` False
  (decode + recipe) and True (decode only), and of the original-style per-frame PIL
  pipeline on the same decoded frames with the same draws. The three run interleaved item
  by item, their order rotated, so machine load and file caches hit them alike;
* the device: seconds per batch of ``device_recipe.apply_train_batch`` on a raw batch
  collated (``collate_multi``) and moved (``move_batch``) as the loader and trainer do;
* optionally one training step with the trainer's own pieces (``Trainer``'s model,
  criterion, optimizer and AMP settings, Mixup via ``prepare_train_batch``, ``Trainer.run_step``),
  the recipe's share of it and the end-to-end samples/s of both modes.

A *sample* is one dataset item: one decoded video made into ``AUG.NUM_SAMPLE`` clips.
The library reads the config only in :func:`benchmark_config`; the rest takes the built
datasets and config as the trainer would see them.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch  # before decord (decord2's wheel crashes when imported first)

from multitrain.config import load_config
from multitrain.data.loader import MULTI_DATASET_NAME, build_dataset
from multitrain.data.multi_dataset import collate_multi
from multitrain.data import device_recipe
from multitrain.data.device_recipe import draw_clip_samples
from multitrain.data.video_dataset import SampleKey
from multitrain.engine.batch import move_batch, prepare_train_batch
from multitrain.engine.trainer import Trainer

from .pil_baseline import pil_train_clip

__all__ = ["write_corpus", "benchmark_config", "measure_workers", "measure_device_recipe",
           "build_trainer", "measure_train_step", "end_to_end", "run_benchmark", "format_report"]

WORKER_MODES = ("on_device_false", "on_device_true", "pil")
MODE_NAMES = {"on_device_false": "(1) ON_DEVICE False: decode + recipe",
              "on_device_true": "(2) ON_DEVICE True: decode only",
              "pil": "(3) decode + per-frame PIL (original)"}


# ---------------------------------------------------------------------------- setup
def write_corpus(root: str, num_videos: int, make_video: Callable[[str], None],
                 rows: int, num_classes: int, separator: str = " ") -> Dict[str, str]:
    """``num_videos`` files made by ``make_video(path)`` under ``root/videos`` and a
    ``root/train.csv`` of ``rows`` lines cycling through them (labels ``row % classes``).

    Returns ``{"dir": csv folder, "prefix": video folder}``.
    """
    if num_videos < 1 or rows < 1:
        raise ValueError(f"write_corpus: need >= 1 video and row, got {num_videos} / {rows}")
    videos = os.path.join(root, "videos")
    os.makedirs(videos, exist_ok=True)
    names = [f"k400_like_{i:03d}.mp4" for i in range(num_videos)]
    for name in names:
        make_video(os.path.join(videos, name))
    with open(os.path.join(root, "train.csv"), "w") as f:
        for r in range(rows):
            f.write(f"{names[r % num_videos]}{separator}{r % num_classes}\n")
    return {"dir": root, "prefix": videos}


def benchmark_config(cfg_file: str, corpus: Dict[str, str], batch: int, device: str,
                     output_dir: str, amp: str = "auto", opts: Sequence = ()):
    """The config of ``cfg_file`` pointed at ``corpus`` (every dataset of a multi-dataset
    config reads the same files), one process on ``device`` with a per-process batch of
    ``batch`` videos, no loader workers; then ``opts`` (KEY VALUE, they win). Validated,
    not frozen.

    amp: "auto" (bf16 on cuda, the config's own setting on cpu), "none", "bf16", "fp16".
    """
    base = load_config(cfg_file, freeze=False)
    ours: List = ["NUM_GPUS", 1 if device.startswith("cuda") else 0, "NUM_SHARDS", 1,
                  "TRAIN.BATCH_SIZE", batch, "TRAIN.GRAD_ACCU_NUM_BATCH", 1,
                  "DATA_LOADER.NUM_WORKERS", 0, "OUTPUT_DIR", output_dir,
                  "TENSORBOARD.ENABLE", False, "TRAIN.AUTO_RESUME", False,
                  "TRAIN.CHECKPOINT_FILE_PATH", "", "LOG_MODEL_INFO", False]
    if base.TRAIN.DATASET == MULTI_DATASET_NAME:
        n = len(base.MODEL.MULTI_DATASETS)
        ours += ["MODEL.MULTI_PATH_TO_DATA_DIR", [corpus["dir"]] * n,
                 "MODEL.MULTI_PATH_PREFIX", [corpus["prefix"]] * n]
    else:
        ours += ["DATA.PATH_TO_DATA_DIR", corpus["dir"], "DATA.PATH_PREFIX", corpus["prefix"]]
    if amp == "auto":
        amp = "bf16" if device.startswith("cuda") else "cfg"
    if amp == "none":
        ours += ["TRAIN.MIXED_PRECISION", False]
    elif amp in ("bf16", "fp16"):
        ours += ["TRAIN.MIXED_PRECISION", True,
                 "TRAIN.MIXED_PRECISION_DTYPE", "bfloat16" if amp == "bf16" else "float16"]
    elif amp != "cfg":
        raise ValueError(f"amp must be auto, none, bf16 or fp16, got {amp!r}")
    return load_config(cfg_file, ours + list(opts), freeze=False)


def min_num_classes(cfg) -> int:
    """Labels valid for every dataset the train split reads."""
    if cfg.TRAIN.DATASET == MULTI_DATASET_NAME:
        return min(int(k) for k in cfg.MODEL.MULTI_NUM_CLASSES)
    return int(cfg.DATA.NUM_CLASSES)


def _with_on_device(cfg, on: bool):
    out = cfg.clone()
    out.AUG.ON_DEVICE = bool(on)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable, device: torch.device = torch.device("cpu")):
    """``(fn(), wall seconds, CPU seconds of this process)``, the device synchronised."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - w0, time.process_time() - c0


def item_keys(num_items: int, count: int) -> List[SampleKey]:
    """``count`` keys over a dataset of ``num_items``: pass ``p`` is epoch ``p`` (new draws)
    in a fixed shuffled order (so a multi-dataset config mixes its datasets)."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(0)).tolist()
    return [SampleKey(order[j % num_items], j // num_items) for j in range(count)]


# ---------------------------------------------------------------------------- workers
def _pil_item(ds_raw, recipes: Dict[str, object], k: int, key: SampleKey) -> torch.Tensor:
    """The original-style worker: decode, then K per-frame PIL clips with the draws the
    ON_DEVICE False worker makes (its recipe generator, seeded from the item's seed)."""
    item = ds_raw[key]
    recipe, frames = recipes[item["dataset"]], item["frames"]
    params = draw_clip_samples(recipe, item["seed"], frames.shape[1:3], k)
    return torch.stack([pil_train_clip(frames, p, recipe) for p in params])


def _same_draws(ds_aug, ds_raw, recipes, k: int, key: SampleKey) -> bool:
    """Whether the ON_DEVICE False worker's clips equal the recipe applied, with the
    decode-only item's seed, to its frames (so the PIL reference uses the same draws)."""
    aug, raw = ds_aug[key], ds_raw[key]
    recipe, frames = recipes[raw["dataset"]], raw["frames"]
    ours = recipe.apply_many([frames] * k, draw_clip_samples(recipe, raw["seed"], frames.shape[1:3], k))
    return ours.shape == aug["frames"].shape and torch.equal(ours, aug["frames"])


def measure_workers(cfg, items: int, warmup: int = 1) -> dict:
    """Per-sample CPU and wall seconds of the three worker pipelines, one thread.

    Items follow :func:`item_keys`; each mode loads the same item, in an order rotated
    from item to item.
    Returns ``{mode: {"cpu_s", "wall_s", "cpu_s_median", "wall_s_median"}, "same_draws",
    "items", "clip_shape"}``.
    """
    ds_aug = build_dataset(_with_on_device(cfg, False), "train")
    ds_raw = build_dataset(_with_on_device(cfg, True), "train")
    recipes = {d.dataset_name: d.transform for d in ds_aug.datasets}
    k, n = int(cfg.AUG.NUM_SAMPLE), len(ds_raw)
    load = {"on_device_false": lambda key: ds_aug[key]["frames"],
            "on_device_true": lambda key: ds_raw[key]["frames"],
            "pil": lambda key: _pil_item(ds_raw, recipes, k, key)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    times = {m: {"wall": [], "cpu": []} for m in WORKER_MODES}
    shapes = {}
    try:
        keys = item_keys(n, warmup + items)
        same = _same_draws(ds_aug, ds_raw, recipes, k, keys[0])
        for j, key in enumerate(keys):
            r = j % len(WORKER_MODES)
            for mode in WORKER_MODES[r:] + WORKER_MODES[:r]:
                out, wall, cpu = _timed(lambda: load[mode](key))
                shapes[mode] = tuple(out.shape)
                if j >= warmup:
                    times[mode]["wall"].append(wall)
                    times[mode]["cpu"].append(cpu)
    finally:
        torch.set_num_threads(threads)
    if shapes["on_device_false"] != shapes["pil"]:
        raise RuntimeError(f"worker clips {shapes['on_device_false']} vs PIL {shapes['pil']}")
    out = {m: {"cpu_s": statistics.mean(t["cpu"]), "wall_s": statistics.mean(t["wall"]),
               "cpu_s_median": statistics.median(t["cpu"]),
               "wall_s_median": statistics.median(t["wall"])} for m, t in times.items()}
    out.update(same_draws=bool(same), items=items, clip_shape=list(shapes["pil"][1:]),
               decoded_shape=list(shapes["on_device_true"]))
    return out


# ---------------------------------------------------------------------------- device
def raw_batch(cfg, batch: int) -> dict:
    """A raw (decode-only) train batch of ``batch`` items, collated as the loader does."""
    ds = build_dataset(_with_on_device(cfg, True), "train")
    items = [ds[key] for key in item_keys(len(ds), batch)]
    return collate_multi(items, dataset_names=ds.dataset_names, num_classes=ds.num_classes)


def _nbytes(x) -> int:
    if torch.is_tensor(x):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    return 0


def _pin(x):
    """Tensors of a batch in pinned memory, as the loader returns them for a GPU."""
    if torch.is_tensor(x):
        return x.pin_memory()
    if isinstance(x, dict):
        return {k: _pin(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_pin(v) for v in x]
    return x


def copy_seconds(batch: dict, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of ``move_batch(batch, device)`` (pinned first on cuda), after one
    untimed copy."""
    batch = _pin(batch) if device.type == "cuda" else batch
    times = [_timed(lambda: move_batch(batch, device), device)[1] for _ in range(1 + repeats)]
    return statistics.median(times[1:])


def measure_device_recipe(cfg, batch: int, device: str, repeats: int = 3,
                          warmup: int = 1):
    """Seconds of ``apply_train_batch`` on a raw batch of ``batch`` videos on ``device``,
    and of copying the batch each mode ships to the device (uint8 frames at decoded size
    with ON_DEVICE True, float clips with False).

    Returns ``(figures, augmented batch)``; the batch holds ``inputs`` float
    ``[batch * K, 3, T, S, S]`` on the device. Times are medians over ``repeats`` after
    ``warmup`` calls; ``cpu_s_per_batch`` is this process's CPU time (on cuda: the draws
    made on the CPU and the kernel launches).
    """
    dev = torch.device(device)
    cfg_on = _with_on_device(cfg, True)
    raw = raw_batch(cfg_on, batch)
    torch.zeros(1, device=dev)  # start the device's context outside the timings
    moved = move_batch(raw, dev)
    walls, cpus = [], []
    aug = None
    for r in range(warmup + repeats):
        aug, wall, cpu = _timed(lambda: device_recipe.apply_train_batch(moved, cfg_on), dev)
        if r >= warmup:
            walls.append(wall)
            cpus.append(cpu)
    wall, k = statistics.median(walls), int(cfg.AUG.NUM_SAMPLE)
    figures = dict(device=str(dev), threads=torch.get_num_threads(), batch=batch,
                   clips=batch * k, repeats=repeats, s_per_batch=wall, s_per_sample=wall / batch,
                   s_per_clip=wall / (batch * k), cpu_s_per_batch=statistics.median(cpus),
                   raw_batch_mb=_nbytes(raw["inputs"]) / 1e6,
                   augmented_batch_mb=_nbytes(aug["inputs"]) / 1e6,
                   copy_raw_s=copy_seconds({"inputs": raw["inputs"]}, dev, repeats),
                   copy_augmented_s=copy_seconds({"inputs": aug["inputs"].cpu()}, dev, repeats))
    return figures, aug


def build_trainer(cfg):
    """The :class:`~multitrain.engine.trainer.Trainer` of ``cfg`` (model, criterion,
    optimizer, scaler, AMP dtype as in training). Built before the timings, so that a bad
    model override fails at once."""
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)  # as the training processes
    return Trainer(cfg)


def measure_train_step(trainer, aug_batch: dict, repeats: int = 3, warmup: int = 1) -> dict:
    """Seconds of one optimizer step on ``aug_batch`` (``inputs`` [N, 3, T, S, S] on the
    device) with ``trainer``'s own model, criterion, optimizer, grad scaler and AMP dtype,
    Mixup/CutMix as ``prepare_train_batch`` applies it, and ``Trainer.run_step``. Medians over
    ``repeats`` after ``warmup`` steps."""
    cfg = trainer.cfg
    trainer.ddp_model.train()
    dev = trainer.device
    mix_cfg = _with_on_device(cfg, False)  # the batch is already augmented: Mixup only
    steps, mixes, cpus, loss = [], [], [], float("nan")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for r in range(warmup + repeats):
        batch, mix_s, _ = _timed(lambda: prepare_train_batch(
            aug_batch, mix_cfg, seed=(cfg.RNG_SEED, 0, r, 0, 0)), dev)
        res, step_s, cpu = _timed(lambda: trainer.run_step([batch], epoch=0, step=r), dev)
        loss = res.losses["loss"]
        if r >= warmup:
            steps.append(step_s)
            mixes.append(mix_s)
            cpus.append(cpu)
    n = int(aug_batch["inputs"].shape[0])
    out = dict(clips=n, repeats=repeats, step_s=statistics.median(steps),
               mixup_s=statistics.median(mixes), cpu_s_per_step=statistics.median(cpus),
               amp=str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "none",
               last_loss=float(loss),
               parameters=sum(p.numel() for p in trainer.model.parameters()))
    if dev.type == "cuda":
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def end_to_end(workers: dict, recipe: dict, step: dict, batch: int, k: int) -> dict:
    """Training samples/s per device of both modes, and the worker CPU cores per device
    each needs to keep up (samples/s x worker CPU s per sample).

    ON_DEVICE True: ``batch / (copy of the raw batch + device recipe + Mixup + step)``.
    ON_DEVICE False: ``batch / (copy of the float clips + Mixup + step)``, assuming enough
    workers to keep up. Copies count in full (the trainer's copy may overlap a little).
    """
    common = step["mixup_s"] + step["step_s"]
    out = {}
    for mode, seconds in (("on_device_true",
                           recipe["copy_raw_s"] + recipe["s_per_batch"] + common),
                          ("on_device_false", recipe["copy_augmented_s"] + common)):
        rate = batch / seconds
        out[mode] = dict(samples_per_s=rate, clips_per_s=rate * k,
                         worker_cores_needed=rate * workers[mode]["cpu_s"])
    out["recipe_share_of_step"] = recipe["s_per_batch"] / step["step_s"]
    out["note"] = "ON_DEVICE False assumes the loader workers keep up"
    return out


# ---------------------------------------------------------------------------- all
def run_benchmark(cfg, items: int, batch: int, device: str = "cpu", repeats: int = 3,
                  warmup: int = 1, step: bool = False) -> dict:
    """Workers (interleaved), device recipe, and with ``step`` the training step and the
    end-to-end figures. Returns a JSON-ready dict (see :func:`format_report`)."""
    k = int(cfg.AUG.NUM_SAMPLE)
    result = dict(torch=torch.__version__, machine=platform.processor() or platform.machine(),
                  cpu_count=os.cpu_count(), load_avg_start=os.getloadavg()[0],
                  clips_per_sample=k, frames=int(cfg.DATA.NUM_FRAMES),
                  sampling_rate=int(cfg.DATA.SAMPLING_RATE), crop=int(cfg.DATA.TRAIN_CROP_SIZE),
                  rand_augment=cfg.AUG.AA_TYPE if cfg.AUG.ENABLE else "",
                  re_prob=float(cfg.AUG.RE_PROB) if cfg.AUG.ENABLE else 0.0)
    trainer = build_trainer(cfg) if step else None
    w = measure_workers(cfg, items, warmup)
    pil = w["pil"]
    w["ratios_vs_pil"] = {m: {"cpu": w[m]["cpu_s"] / pil["cpu_s"],
                              "wall": w[m]["wall_s"] / pil["wall_s"]}
                          for m in ("on_device_false", "on_device_true")}
    result["workers"] = w
    recipe, aug = measure_device_recipe(cfg, batch, device, repeats, warmup)
    result["device_recipe"] = recipe
    if step:
        result["train_step"] = measure_train_step(trainer, aug, repeats, warmup)
        result["end_to_end"] = end_to_end(w, recipe, result["train_step"], batch, k)
    result["load_avg_end"] = os.getloadavg()[0]
    return result


def format_report(r: dict) -> str:
    """The printed table of :func:`run_benchmark`'s result."""
    w, k = r["workers"], r["clips_per_sample"]
    lines = [f"{r.get('config', '')}: {k} clips of {r['frames']}x{r['crop']}x{r['crop']} "
             f"(rate {r['sampling_rate']}) per sample, {r['rand_augment'] or 'no RandAugment'}, "
             f"RE {r['re_prob']}; {r['machine']}, {r['cpu_count']} cores, torch {r['torch']}, "
             f"load avg {r['load_avg_start']:.1f} -> {r['load_avg_end']:.1f}",
             f"workers: one thread, {w['items']} samples per pipeline, interleaved; decoded "
             f"{w['decoded_shape']}; same draws as the PIL reference: {w['same_draws']}",
             f"{'pipeline':40s} {'CPU s/sample':>12s} {'wall s/sample':>13s} "
             f"{'CPU vs (3)':>10s} {'wall vs (3)':>11s}"]
    for m in WORKER_MODES:
        ratio = w["ratios_vs_pil"].get(m, {"cpu": 1.0, "wall": 1.0})
        lines.append(f"{MODE_NAMES[m]:40s} {w[m]['cpu_s']:12.3f} {w[m]['wall_s']:13.3f} "
                     f"{ratio['cpu']:10.3f} {ratio['wall']:11.3f}")
    d = r["device_recipe"]
    lines.append(f"device recipe on {d['device']} ({d['threads']} threads), batch {d['batch']} "
                 f"samples = {d['clips']} clips: {d['s_per_batch']:.4f} s/batch, "
                 f"{d['s_per_sample']:.4f} s/sample, {d['s_per_clip']:.4f} s/clip "
                 f"(CPU {d['cpu_s_per_batch']:.3f} s/batch)")
    lines.append(f"shipped per batch and copy to {d['device']}: ON_DEVICE True raw uint8 "
                 f"{d['raw_batch_mb']:.1f} MB {d['copy_raw_s']:.4f} s; False float clips "
                 f"{d['augmented_batch_mb']:.1f} MB {d['copy_augmented_s']:.4f} s")
    if "train_step" in r:
        s, e = r["train_step"], r["end_to_end"]
        lines.append(f"train step ({s['parameters'] / 1e6:.2f} M parameters, amp {s['amp']}, "
                     f"{s['clips']} clips): {s['step_s']:.4f} s + Mixup {s['mixup_s']:.4f} s"
                     + (f", peak {s['peak_mem_gb']:.1f} GB" if "peak_mem_gb" in s else "")
                     + f"; recipe / step = {e['recipe_share_of_step']:.3f}")
        for m, name in (("on_device_false", "ON_DEVICE False (workers keep up)"),
                        ("on_device_true", "ON_DEVICE True (recipe on the device)")):
            lines.append(f"end to end, {name:38s}: {e[m]['samples_per_s']:.3f} samples/s "
                         f"({e[m]['clips_per_s']:.3f} clips/s) per device; worker CPU cores "
                         f"needed {e[m]['worker_cores_needed']:.2f}")
    return "\n".join(lines)
