"""The training loop: a `Trainer` of a few explicit steps.

    trainer = Trainer(cfg)        # model, loss, optimizer, loaders, checkpointer
    trainer.resume_or_init()      # own checkpoint > CHECKPOINT_FILE_PATH > scratch
    trainer.train()               # epochs of train_step, validation, checkpoints

A step is `GRAD_ACCU_NUM_BATCH` micro-batches (see `train_step.py`). Progress is counted
in optimizer steps; a mid-epoch checkpoint stores the step index within the epoch, and the
sampler skips the micro-batches already seen, so a resumed run continues exactly.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from typing import Dict, List, Optional

import torch

from ..checkpoint import Checkpointer
from ..data.loader import build_loader
from ..models import build_model
from ..models.losses import build_loss
from ..utils import rng
from . import distributed as du
from .batch import move_batch, prepare_train_batch
from .device_levers import apply_device_levers
from .evaluator import validate
from .lr_schedule import get_lr_at_epoch, set_lr
from .optim import build_optimizer
from .train_step import train_step
from .writers import StatsWriter

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # checkpoint, then stop (SLURM preemption)


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rank, self.world_size = du.get_rank(), du.get_world_size()
        self.device = du.current_device(cfg)
        self.model = apply_device_levers(build_model(cfg).to(self.device), cfg, self.device)
        self.criterion = build_loss(cfg, self.model).to(self.device)
        self.modules = _TrainableModules(self.model, self.criterion)
        self.ddp_model = du.wrap_ddp(self.modules, cfg)
        self.optimizer = build_optimizer(self.modules, cfg)
        self.amp_dtype = _amp_dtype(cfg)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler) if use_scaler else None
        self.train_loader = _workers_ignore_stop_signals(
            build_loader(cfg, "train", self.rank, self.world_size))
        self.val_loader = None
        self.checkpointer = Checkpointer.from_config(cfg, self.modules, self.optimizer, self.scaler,
                                                     rank=self.rank)
        self.accum = cfg.TRAIN.GRAD_ACCU_NUM_BATCH
        self.steps_per_epoch = _steps_per_epoch(len(self.train_loader), self.accum, cfg)
        self.writer = StatsWriter(cfg, self.rank, iters_per_epoch=self.steps_per_epoch)
        self.start_epoch, self.start_step = 0, 0
        self.stop_requested = False  # set by a signal handler, on this rank only
        self.stopping = False  # the last decision all ranks agreed on
        self.num_skipped_steps = 0

    # ---------------------------------------------------------------- state
    def resume_or_init(self) -> None:
        """Auto-resume from our newest complete checkpoint, else init from a file."""
        state = self.checkpointer.resume_or_init(self.cfg)
        self.start_epoch = int(state.get("start_epoch", 0))
        self.start_step = int(state.get("start_iter", 0)) // self.accum
        if "rng_states" in state:  # one entry per rank
            rng.set_rng_state(state["rng_states"][self.rank])
        if self.start_step >= self.steps_per_epoch:
            self.start_epoch, self.start_step = self.start_epoch + 1, 0

    def save(self, epoch: int, step: Optional[int] = None) -> None:
        """Checkpoint after `epoch` (0-based) ends, or after `step` steps of it."""
        extra = {"rng_states": du.all_gather_object(rng.get_rng_state())}
        if step is None:
            self.checkpointer.save(epoch, extra=extra)
        else:
            self.checkpointer.save(epoch, iteration=step * self.accum, extra=extra)

    # ---------------------------------------------------------------- loop
    def train(self) -> Dict[str, float]:
        """All epochs; stop signals checkpoint-and-stop only while this runs."""
        previous = self._install_signal_handlers()
        try:
            return self._train_epochs()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _train_epochs(self) -> Dict[str, float]:
        cfg = self.cfg
        last_val: Dict[str, float] = {}
        for epoch in range(self.start_epoch, cfg.SOLVER.MAX_EPOCH):
            first_step = self.start_step if epoch == self.start_epoch else 0
            finished = self.train_epoch(epoch, first_step)
            if not finished:  # stopped by a signal after saving a mid-epoch checkpoint
                return last_val
            last = epoch + 1 == cfg.SOLVER.MAX_EPOCH
            stop = self._agree_on_stop()  # a signal during the epoch's last step
            if (epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or last or stop:
                self.save(epoch)
            if stop:  # this epoch's validation is skipped: the grace period is short
                logger.warning("stopping after a checkpoint at the end of epoch %d (signal)", epoch + 1)
                return last_val
            if (epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or last:
                last_val = self.validate(epoch)
        return last_val

    def train_epoch(self, epoch: int, first_step: int = 0) -> bool:
        """Train one epoch from step `first_step`; False if stopped early by a signal."""
        cfg, accum = self.cfg, self.accum
        self.ddp_model.train()
        sampler = self.train_loader.sampler
        sampler.set_epoch(epoch)
        sampler.set_start_iter(first_step * accum)
        # Making an iterator draws the workers' base seed from the global torch RNG, at a
        # point of the stream that differs after a resume (persistent workers draw once per
        # run, not per epoch): keep that draw off the stream dropout and drop-path use.
        with torch.random.fork_rng(devices=[]), _stop_signals_blocked():  # workers start here
            it = iter(self.train_loader)
        replaced = 0
        t_data = time.perf_counter()
        for step in range(first_step, self.steps_per_epoch):
            micro = [next(it) for _ in range(accum)]
            data_time = time.perf_counter() - t_data
            replaced += sum(int(b.get("num_replaced", 0)) for b in micro)
            batches = [self._prepare(b, epoch, step, i) for i, b in enumerate(micro)]
            t0 = time.perf_counter()
            res = train_step(
                self.ddp_model, batches, self._compute_losses, self.optimizer, self.scaler,
                clip_norm=cfg.SOLVER.CLIP_GRAD_L2NORM, clip_value=cfg.SOLVER.CLIP_GRAD_VAL,
                amp_dtype=self.amp_dtype, device=self.device,
                set_lr=lambda i: self._set_lr(epoch, step * accum + i))
            self.num_skipped_steps += int(res.skipped)
            self._log_step(epoch, step, res, data_time, time.perf_counter() - t0, micro)
            done = step + 1
            if self._want_mid_epoch_checkpoint(done):
                self.save(epoch, done)
                if self.stopping:  # agreed by all ranks (stop_requested may change meanwhile)
                    logger.warning("stopping after a checkpoint at epoch %d step %d (signal)", epoch, done)
                    return False
            t_data = time.perf_counter()
        self.writer.epoch_summary(epoch, {"replaced_videos": du.all_reduce_sum(replaced),
                                          "skipped_steps": self.num_skipped_steps})
        return True

    def validate(self, epoch: int) -> Dict[str, float]:
        if self.val_loader is None:
            self.val_loader = _workers_ignore_stop_signals(
                build_loader(self.cfg, "val", self.rank, self.world_size))
        # Validation draws from the global RNG (the loader's worker seed): without the fork,
        # whether an epoch was validated before a checkpoint changes the training after it.
        with torch.random.fork_rng(devices=[]), _stop_signals_blocked():
            stats = validate(self.model, self.val_loader, self.cfg, self.device)
        self.writer.write("val", epoch + 1, stats)
        return stats

    # ---------------------------------------------------------------- pieces
    def _prepare(self, batch, epoch: int, step: int, micro: int):
        batch = move_batch(batch, self.device)
        return prepare_train_batch(batch, self.cfg, seed=(self.cfg.RNG_SEED, epoch, step, micro, self.rank))

    def _compute_losses(self, model, batch) -> Dict[str, torch.Tensor]:
        out = model(batch["inputs"])
        labels, masks = batch["labels"], batch["masks"]
        if self.cfg.TRAIN.GATHER_BEFORE_LOSS and self.world_size > 1:
            out, labels, masks = du.gather_for_loss(out, labels, masks)
        terms = self.criterion(out, labels, masks)
        terms["loss"] = sum(terms.values())
        return terms

    def _set_lr(self, epoch: int, micro_iter: int) -> None:
        frac = epoch + micro_iter / (self.steps_per_epoch * self.accum)
        set_lr(self.optimizer, get_lr_at_epoch(self.cfg, frac))

    def _want_mid_epoch_checkpoint(self, steps_done: int) -> bool:
        period = self.cfg.TRAIN.CHECKPOINT_ITER_PERIOD
        if steps_done >= self.steps_per_epoch:  # the end-of-epoch checkpoint follows
            return False
        if self._agree_on_stop():
            return True
        if period <= 0:
            return False
        return (steps_done * self.accum) % period < self.accum

    def _agree_on_stop(self) -> bool:
        """Whether any rank was asked to stop (a signal may reach only some ranks). The flag
        is read once: a signal arriving during or after the all-reduce counts at the next
        check, never for this rank alone."""
        stop = bool(self.stop_requested)
        if self.world_size > 1:
            stop = du.all_reduce_sum(int(stop)) > 0
        self.stopping = stop
        self.stop_requested = self.stop_requested or stop
        return stop

    def _log_step(self, epoch, step, res, data_time, iter_time, micro) -> None:
        if (step + 1) % self.cfg.LOG_PERIOD and step + 1 != self.steps_per_epoch:
            return
        clips = sum(b["inputs"].shape[0] if torch.is_tensor(b["inputs"]) else len(b["inputs"])
                    for b in micro) * self.world_size
        stats = dict(res.losses)
        stats.update(lr=self.optimizer.param_groups[0]["lr"], data_time=data_time, iter_time=iter_time,
                     clips_per_s=clips / max(iter_time + data_time, 1e-9),
                     step=f"{step + 1}/{self.steps_per_epoch}")
        if res.grad_norm is not None:
            stats["grad_norm"] = res.grad_norm
        if self.device.type == "cuda":
            stats["max_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        self.writer.write("train", epoch + (step + 1) / self.steps_per_epoch, stats)

    def _install_signal_handlers(self) -> dict:
        """SIGTERM / SIGUSR1 (sent by SLURM before preemption): checkpoint, then stop.
        Returns the handlers replaced, to be restored."""
        def handler(signum, _frame):
            logger.warning("received signal %d: will checkpoint after this step and stop", signum)
            self.stop_requested = True
        previous = {}
        for sig in STOP_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return previous


class _TrainableModules(torch.nn.Module):
    """Model + loss as one module, so learned loss weights are optimised, all-reduced by
    DDP and saved. `forward` is the model's; the state_dict is the model's (original key
    names) plus `criterion.*` entries.
    """

    def __init__(self, model: torch.nn.Module, criterion: torch.nn.Module):
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        out = self.model.state_dict()
        out.update({f"criterion.{k}": v for k, v in self.criterion.state_dict().items()})
        return out

    def load_state_dict(self, state, strict: bool = True):
        crit = {k[len("criterion."):]: v for k, v in state.items() if k.startswith("criterion.")}
        model = {k: v for k, v in state.items() if not k.startswith("criterion.")}
        r = self.model.load_state_dict(model, strict=strict)
        if crit or strict:
            self.criterion.load_state_dict(crit, strict=strict)
        return r


def _workers_ignore_stop_signals(loader):
    """Make `loader`'s worker processes ignore STOP_SIGNALS unless their main process sends
    them. SLURM signals every process of the job; a worker killed by it (torch's workers die
    on a SIGTERM not sent by their parent, SIGUSR1 kills by default) fails the main process,
    even inside the checkpoint the signal asked for. The main process stops them itself."""
    if loader.num_workers > 0 and hasattr(signal, "sigwaitinfo"):
        loader.worker_init_fn = functools.partial(_ignore_stop_signals, loader.worker_init_fn)
    return loader


@contextlib.contextmanager
def _stop_signals_blocked():
    """Block STOP_SIGNALS in this thread meanwhile (a pending one is delivered at the end).
    Loader workers forked meanwhile start with them blocked, and so does every thread they
    make, including threads started before their worker_init_fn runs."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _ignore_stop_signals(inner, worker_id: int) -> None:
    """worker_init_fn: with STOP_SIGNALS blocked, consume them in a thread that only obeys
    the parent's SIGTERM. (SIG_IGN would also ignore the parent's terminate() at exit, which
    then waits forever on the worker.)"""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # in case the fork was not blocked
    threading.Thread(target=_consume_stop_signals, args=(os.getppid(),), daemon=True,
                     name="ignore-stop-signals").start()
    if inner is not None:
        inner(worker_id)


def _consume_stop_signals(parent: int) -> None:
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_signo == signal.SIGTERM and info.si_pid == parent:
            os._exit(0)  # terminated by the main process: torch's own worker handler does so


def _amp_dtype(cfg) -> Optional[torch.dtype]:
    if not cfg.TRAIN.MIXED_PRECISION:
        return None
    return torch.bfloat16 if cfg.TRAIN.MIXED_PRECISION_DTYPE == "bfloat16" else torch.float16


def _steps_per_epoch(num_micro_batches: int, accum: int, cfg) -> int:
    """Optimizer steps per epoch; a trailing partial accumulation window is dropped."""
    steps = num_micro_batches // accum
    if cfg.TRAIN.MAX_ITERS_PER_EPOCH > 0:
        steps = min(steps, max(1, cfg.TRAIN.MAX_ITERS_PER_EPOCH // accum))
    if steps < 1:
        raise ValueError(
            f"an epoch has {num_micro_batches} micro-batches, fewer than TRAIN.GRAD_ACCU_NUM_BATCH="
            f"{accum}: lower TRAIN.BATCH_SIZE or GRAD_ACCU_NUM_BATCH, or add data")
    return steps

