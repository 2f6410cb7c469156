"""The training loop: a `Trainer` of a few explicit steps.

    trainer = Trainer(cfg)        # model, loss, optimizer, loaders, checkpointer
    trainer.resume_or_init()      # own checkpoint > CHECKPOINT_FILE_PATH > scratch
    trainer.train()               # epochs of train_step, validation, checkpoints

A step is `GRAD_ACCU_NUM_BATCH` micro-batches (see `train_step.py`). Progress is counted
in optimizer steps; a mid-epoch checkpoint stores the step index within the epoch and the
position in the epoch's global order (videos consumed by all ranks), and the sampler skips
what was seen, so a resumed run continues exactly. With another number of processes the
rest of the epoch is re-sharded over them (see `resume_or_init`).
"""
from __future__ import annotations

import contextlib
import functools
import json
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
from ..utils.progress import progress, set_postfix
from . import distributed as du
from .batch import move_batch, prepare_train_batch
from .device_levers import apply_device_levers
from .evaluator import validate
from .grad_reference import clip_thresholds, original_grad_factor
from .lr_schedule import get_lr_at_epoch, set_lr
from .optim import build_optimizer
from .train_step import StepResult, train_step
from .writers import StatsWriter

logger = logging.getLogger(__name__)

# checkpoint, then stop (SLURM preemption, Ctrl-C; a second Ctrl-C stops at once)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rank, self.world_size = du.get_rank(), du.get_world_size()
        self.device = du.current_device(cfg)
        self.model = apply_device_levers(build_model(cfg).to(self.device), cfg, self.device)
        self.criterion = build_loss(cfg, self.model,
                                    grad_scale=original_grad_factor(cfg, self.world_size)).to(self.device)
        self.clip_norm, self.clip_value = clip_thresholds(cfg, self.world_size)
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
        # videos of the epoch's global order one optimizer step consumes, all ranks together
        self.videos_per_step = self.accum * self.train_loader.batch_size * self.world_size
        self.start_position = 0  # videos of start_epoch's order consumed before start_step
        self._epoch_start = (0, 0)  # (first step, position) of the epoch in progress
        self._epoch_end = self.steps_per_epoch
        self._sample_log = None
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
        start_iter = int(state.get("start_iter", 0))
        saved_world = int(state.get("world_size", len(state.get("rng_states", ())) or self.world_size))
        if "rng_states" in state and saved_world != self.world_size:
            self._resume_on_other_world(state, saved_world, start_iter)
            return
        self.start_step = start_iter // self.accum
        self.start_position = int(state.get("epoch_position", self.start_step * self.videos_per_step))
        if "rng_states" in state:  # one entry per rank
            rng.restore_rng_state(state["rng_states"][self.rank])
        if self.start_step >= self.steps_per_epoch:
            self.start_epoch, self.start_step, self.start_position = self.start_epoch + 1, 0, 0

    def _resume_on_other_world(self, state: dict, saved_world: int, start_iter: int) -> None:
        """Continue a checkpoint written by `saved_world` processes: the epoch resumes after
        the videos of its global order already consumed, re-sharded over this run's ranks;
        each rank's generators are seeded from (RNG_SEED, epoch, position, rank)."""
        cfg = self.cfg
        old_bs = int(cfg.TRAIN.BATCH_SIZE / saved_world)  # files without a position
        position = int(state.get("epoch_position", start_iter * old_bs * saved_world))
        self.start_position = position
        self.start_step = position // self.videos_per_step
        logger.warning(
            "world size changed from %d to %d processes: epoch %d continues after %d videos "
            "of its order, re-sharded over the %d ranks; the run is therefore not bitwise "
            "equal to an uninterrupted one", saved_world, self.world_size, self.start_epoch + 1,
            position, self.world_size)
        old_batch = int(state.get("global_batch", old_bs * saved_world * self.accum))
        if old_batch != self.videos_per_step:
            logger.warning(
                "effective batch changed from %d to %d videos per step (TRAIN.BATCH_SIZE %d over "
                "%d processes, GRAD_ACCU_NUM_BATCH %d); the learning rate follows SOLVER.* as "
                "configured (%.4g at the resume point)", old_batch, self.videos_per_step,
                cfg.TRAIN.BATCH_SIZE, self.world_size, self.accum,
                get_lr_at_epoch(cfg, self.start_epoch + position / (self.steps_per_epoch *
                                                                    self.videos_per_step)))
        rng.seed_everything(rng.derived_seed(cfg.RNG_SEED, self.start_epoch, position, self.rank))

    def save(self, epoch: int, step: Optional[int] = None) -> None:
        """Checkpoint after `epoch` (0-based) ends, or after `step` steps of it."""
        extra = {"rng_states": du.all_gather_object(rng.capture_rng_state()),
                 "world_size": self.world_size, "global_batch": self.videos_per_step}
        if step is None:
            self.checkpointer.save(epoch, extra=extra)
        else:
            first, position = self._epoch_start
            extra["epoch_position"] = position + (step - first) * self.videos_per_step
            self.checkpointer.save(epoch, iteration=step * self.accum, extra=extra)

    # ---------------------------------------------------------------- loop
    def train(self) -> Dict[str, float]:
        """All epochs; stop signals checkpoint-and-stop only while this runs. Closes the
        stats writer (TensorBoard's files are complete when this returns)."""
        previous = self._install_signal_handlers()
        try:
            last_val = self._train_epochs()
            if not self.stopping and self._agree_on_stop():  # e.g. during the final validation
                logger.warning("stop signal after the final checkpoint: training is complete, "
                               "the test phase is skipped")
            return last_val
        finally:
            self.writer.close()
            if self._sample_log is not None:
                self._sample_log.close()
                self._sample_log = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _train_epochs(self) -> Dict[str, float]:
        cfg = self.cfg
        last_val: Dict[str, float] = {}
        for epoch in range(self.start_epoch, cfg.SOLVER.MAX_EPOCH):
            resumed = epoch == self.start_epoch
            first_step = self.start_step if resumed else 0
            finished = self.train_epoch(epoch, first_step, self.start_position if resumed else None)
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

    def train_epoch(self, epoch: int, first_step: int = 0, position: Optional[int] = None) -> bool:
        """Train one epoch from step `first_step`, after `position` videos of its global order
        (default: those of `first_step` steps); False if stopped early by a signal."""
        cfg, accum = self.cfg, self.accum
        self.ddp_model.train()
        sampler = self.train_loader.sampler
        sampler.set_epoch(epoch)
        if position is None:
            position = first_step * self.videos_per_step
        sampler.set_start_position(position)
        # position in micro-batches of this run beyond first_step's (0 unless the epoch was
        # begun by another number of processes): keeps the learning rate on the schedule
        lr_offset = position / (self.videos_per_step // accum) - first_step * accum
        lr_offset = int(lr_offset) if lr_offset == int(lr_offset) else lr_offset
        available = len(sampler.epoch_keys(position)) // self.train_loader.batch_size // accum
        self._epoch_start = (first_step, position)
        self._epoch_end = min(self.steps_per_epoch, first_step + available)
        # Making an iterator draws the workers' base seed from the global torch RNG, at a
        # point of the stream that differs after a resume (persistent workers draw once per
        # run, not per epoch): keep that draw off the stream dropout and drop-path use.
        with torch.random.fork_rng(devices=[]), _stop_signals_blocked():  # workers start here
            it = iter(self.train_loader)
        replaced = 0
        t_data = time.perf_counter()
        bar = progress(range(first_step, self._epoch_end), cfg, f"epoch {epoch + 1}",
                       total=self._epoch_end, initial=first_step)
        for step in bar:
            micro = [next(it) for _ in range(accum)]
            data_time = time.perf_counter() - t_data
            replaced += sum(int(b.get("num_replaced", 0)) for b in micro)
            batches = [self._prepare(b, epoch, step, i) for i, b in enumerate(micro)]
            t0 = time.perf_counter()
            res = self.run_step(batches, epoch, step, lr_offset)
            self.num_skipped_steps += int(res.skipped)
            if cfg.TRAIN.LOG_SAMPLES:
                self._log_samples(epoch, step, micro)
            set_postfix(bar, loss=res.losses["loss"], lr=self.optimizer.param_groups[0]["lr"])
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

    def run_step(self, batches: List[dict], epoch: int, step: int,
                 lr_offset: float = 0) -> StepResult:
        """One optimizer step (forward, loss, backward, clip, update) on `batches`: the
        micro-batches of step `step` of `epoch`, on the device with Mixup applied
        (`prepare_train_batch`); the LR is the schedule's at that step (`lr_offset`
        micro-batches later, after a resume on another world size)."""
        return train_step(
            self.ddp_model, batches, self._compute_losses, self.optimizer, self.scaler,
            clip_norm=self.clip_norm, clip_value=self.clip_value,
            amp_dtype=self.amp_dtype, device=self.device,
            set_lr=lambda i: self._set_lr(epoch, step * self.accum + i + lr_offset))

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
        if steps_done >= self._epoch_end:  # the end-of-epoch checkpoint follows
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

    def _log_samples(self, epoch: int, step: int, micro) -> None:
        """Append this rank's items of the step (sampler indices, padding excluded) and the
        epoch position after it to OUTPUT_DIR/samples_rank<R>.jsonl."""
        items = []
        for b in micro:
            k = b["clips_per_video"] if isinstance(b["clips_per_video"], int) else 1
            items += [int(i) for i, v in zip(b["item"][::k], b["valid"][::k]) if v]
        first, position = self._epoch_start
        if self._sample_log is None:
            path = os.path.join(self.cfg.OUTPUT_DIR, f"samples_rank{self.rank}.jsonl")
            self._sample_log = open(path, "a")
        self._sample_log.write(json.dumps({
            "epoch": epoch, "step": step, "world_size": self.world_size, "items": items,
            "position": position + (step + 1 - first) * self.videos_per_step}) + "\n")
        self._sample_log.flush()

    def _install_signal_handlers(self) -> dict:
        """SIGTERM / SIGUSR1 (sent by SLURM before preemption) / SIGINT: checkpoint, then
        stop; a second SIGINT raises KeyboardInterrupt at once. Returns the handlers
        replaced, to be restored."""
        interrupts = []

        def handler(signum, _frame):
            if signum == signal.SIGINT:
                interrupts.append(signum)
                if len(interrupts) > 1:
                    raise KeyboardInterrupt("second Ctrl-C: stopping without a checkpoint")
            logger.warning("received signal %d: will checkpoint after this step and stop%s", signum,
                           " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "")
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

