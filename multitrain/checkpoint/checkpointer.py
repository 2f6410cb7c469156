"""One checkpointer: save (atomic, rank 0), resume, init from a foreign file, load for test.

Layout (PySlowFast's): ``OUTPUT_DIR/checkpoints/checkpoint_epoch_{N:05d}.pyth``
is written after the N-th epoch and stores the 0-based ``epoch`` N-1; resuming from it
starts at epoch N. Mid-epoch files are ``checkpoint_epoch_{N:05d}_iter_{I:06d}.pyth``:
epoch N-1 (0-based) in progress with its first I iterations done; resuming runs its
iteration I next. Ordering is ``(N, I) < (N, end) < (N+1, ...)``.

A file holds ``epoch``, ``model_state`` (no ``module.`` prefix), ``optimizer_state``,
``scaler_state`` (AMP only), ``cfg`` (YAML string), ``iter_in_epoch`` (mid-epoch files
only) and ``extra`` (the caller's dict: RNG states, sampler position, accumulation step...).
Everything is tensors, numbers, strings, lists, tuples and dicts, so
``torch.load(path, weights_only=True)`` reads every file this module writes.
"""

import errno
import logging
import os
import re
from typing import List, Optional, Tuple

import torch

from ..utils.io import atomic_write
from .weights import (FINE_TUNE_PREFIXES, INFERENCE_UNUSED_PREFIXES, CheckpointError,
                      adapt_keys, extract_model_state, load_weights, read_checkpoint,
                      strip_module_prefix, unwrap_model)


__all__ = [
    "CHECKPOINT_SUBDIR", "CheckpointError", "Checkpointer", "checkpoint_dir", "checkpoint_name",
    "parse_checkpoint_name", "list_checkpoints", "find_latest", "atomic_save",
]

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
_NAME_RE = re.compile(r"^checkpoint_epoch_(\d{5,})(?:_iter_(\d{6,}))?\.pyth$")
_TMP_MARK = ".tmp."  # temp files: ".<final name>.tmp.<pid>" in the same folder
_END = float("inf")  # iteration key of an end-of-epoch file
_START_KEYS = {"mode", "path", "extra", "start_epoch", "start_iter"}  # resume_or_init's own keys


# ---------------------------------------------------------------------------------------
# Names and discovery
# ---------------------------------------------------------------------------------------
def checkpoint_dir(output_dir: str) -> str:
    """``output_dir/checkpoints``."""
    return os.path.join(output_dir, CHECKPOINT_SUBDIR)


def checkpoint_name(epoch: int, iter_in_epoch: Optional[int] = None) -> str:
    """File name for 0-based ``epoch`` (finished, or in progress with ``iter_in_epoch`` done)."""
    if iter_in_epoch is None:
        return f"checkpoint_epoch_{epoch + 1:05d}.pyth"
    return f"checkpoint_epoch_{epoch + 1:05d}_iter_{iter_in_epoch:06d}.pyth"


def parse_checkpoint_name(name: str) -> Optional[Tuple[int, float]]:
    """Sort key ``(N, I)`` of a checkpoint file name (``I = inf`` at an epoch's end), else None."""
    m = _NAME_RE.match(os.path.basename(name))
    if not m:
        return None
    return int(m.group(1)), (_END if m.group(2) is None else int(m.group(2)))


def list_checkpoints(ckpt_dir: str) -> List[str]:
    """Paths of the checkpoint files in ``ckpt_dir``, oldest first (by (epoch, iter))."""
    if not os.path.isdir(ckpt_dir):
        return []
    named = [(parse_checkpoint_name(f), f) for f in os.listdir(ckpt_dir)]
    return [os.path.join(ckpt_dir, f) for key, f in sorted(n for n in named if n[0] is not None)]


def _quick_check(path: str) -> None:
    """Cheap completeness test: the zip's directory and the pickle must read (tensor data is
    memory-mapped, not read). Raises on a truncated or foreign file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        # legacy (non-zip) files and some filesystems cannot be memory-mapped: read it all
        ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model_state" not in ckpt:
        raise CheckpointError(f"{path} holds no 'model_state'")


def find_latest(ckpt_dir: str) -> Optional[str]:
    """Newest COMPLETE checkpoint in ``ckpt_dir`` by (epoch, iteration), or None.

    A truncated or unreadable file is skipped with a warning naming it.
    """
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            _quick_check(path)
            return path
        except Exception as e:  # any failure means: not a usable checkpoint
            logger.warning("skipping incomplete or unreadable checkpoint %s: %s", path, e)
    return None


# ---------------------------------------------------------------------------------------
# Restoring training state
# ---------------------------------------------------------------------------------------
def _check_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, source: str) -> None:
    """Refuse an optimizer state whose groups or tensor shapes do not fit the parameters
    (``load_state_dict`` only compares group sizes; a shape error would surface later)."""
    groups = state.get("param_groups", [])
    ours = optimizer.param_groups
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in ours]:
        raise CheckpointError(
            f"{source}: optimizer state has groups of sizes {[len(g['params']) for g in groups]}, "
            f"the model's optimizer {[len(g['params']) for g in ours]}; set "
            "TRAIN.CHECKPOINT_EPOCH_RESET True to start from its weights only")
    params = [p for g in ours for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    for p, pid in zip(params, ids):
        for name, t in state.get("state", {}).get(pid, {}).items():
            if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape != p.shape:
                raise CheckpointError(
                    f"{source}: optimizer state '{name}' of shape {tuple(t.shape)} for a "
                    f"parameter of shape {tuple(p.shape)}; set TRAIN.CHECKPOINT_EPOCH_RESET "
                    "True to start from its weights only")


def _find_oserror(exc: BaseException) -> Optional[OSError]:
    """The OSError behind ``exc`` (torch wraps write errors in RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not allow opening a folder; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: dict, path: str) -> None:
    """``torch.save`` to a temp file in the same folder, flush + fsync, rename, fsync folder.

    Raises:
        CheckpointError: on any write failure (disk full named as such); the temp file is
            removed and an existing file at ``path`` is left untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}{_TMP_MARK}{os.getpid()}")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    try:
        atomic_write(path, write, tmp=tmp)
    except (OSError, RuntimeError) as e:
        os_err = _find_oserror(e)
        if os_err is not None and os_err.errno == errno.ENOSPC:
            raise CheckpointError(f"disk full while writing checkpoint {path} (in {folder}); "
                                  "the temp file was removed and earlier checkpoints are "
                                  "intact: free space and resume") from e
        raise CheckpointError(f"could not write checkpoint {path}: {os_err or e}") from e
    _fsync_dir(folder)


def _check_serialisable(obj, where: str = "checkpoint") -> None:
    """Raise TypeError naming the entry that ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (int, float, bool, str, bytes):
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_serialisable(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict) and type(obj).__module__ in ("builtins", "collections"):
        for k, v in obj.items():
            if type(k) not in (int, str):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} (int or str only)")
            _check_serialisable(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}; checkpoints hold "
                    "only tensors, numbers, strings, lists, tuples and dicts (weights_only)")


# ---------------------------------------------------------------------------------------
# The checkpointer
# ---------------------------------------------------------------------------------------
class Checkpointer:
    """Save, resume, init and test-load checkpoints of one run.

    Args:
        output_dir: the run's ``OUTPUT_DIR``; files go to ``output_dir/checkpoints``.
        model: the model (a DDP wrapper is unwrapped).
        optimizer: restored on resume; None to ignore optimizer state.
        scaler: ``torch.amp.GradScaler``; its state is saved when it is enabled.
        keep: keep only the newest ``keep`` files after each save (0 keeps all).
        rank: global rank; only rank 0 writes or deletes files.
        cfg_yaml: the run's config as a YAML string, stored under ``cfg``.

    Every file is read and its weights loaded through :mod:`multitrain.checkpoint.weights`.
    """

    def __init__(self, output_dir: str, model: torch.nn.Module,
                 optimizer: Optional[torch.optim.Optimizer] = None, scaler=None, keep: int = 0,
                 rank: int = 0, cfg_yaml: str = ""):
        self.dir = checkpoint_dir(output_dir)
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.keep = int(keep)
        self.rank = int(rank)
        self.cfg_yaml = cfg_yaml

    @classmethod
    def from_config(cls, cfg, model, optimizer=None, scaler=None, rank: int = 0) -> "Checkpointer":
        """Build from ``OUTPUT_DIR`` and ``TRAIN.CHECKPOINT_KEEP``; stores ``cfg.dump()``."""
        return cls(cfg.OUTPUT_DIR, model, optimizer, scaler, keep=cfg.TRAIN.CHECKPOINT_KEEP,
                   rank=rank, cfg_yaml=cfg.dump())

    # ------------------------------------------------------------------ saving
    def state_dict(self, epoch: int, iteration: Optional[int] = None,
                   extra: Optional[dict] = None) -> dict:
        """The payload :meth:`save` writes (see the module docstring for its keys)."""
        ckpt = {
            "epoch": int(epoch),
            "model_state": strip_module_prefix(unwrap_model(self.model).state_dict()),
            "cfg": self.cfg_yaml,
            "extra": dict(extra or {}),
        }
        if self.optimizer is not None:
            ckpt["optimizer_state"] = self.optimizer.state_dict()
        if self.scaler is not None and self.scaler.is_enabled():
            ckpt["scaler_state"] = self.scaler.state_dict()
        if iteration is not None:
            ckpt["iter_in_epoch"] = int(iteration)
        return ckpt

    def save(self, epoch: int, extra: Optional[dict] = None,
             iteration: Optional[int] = None) -> Optional[str]:
        """Write a checkpoint atomically (rank 0 only; other ranks return None at once).

        Not a collective: per-rank state (e.g. every rank's RNG state) must be gathered
        into ``extra`` by the caller beforehand.

        Args:
            epoch: 0-based epoch just finished, or in progress when ``iteration`` is given.
            extra: caller's state (RNG, sampler position, accumulation step...), returned
                by :meth:`resume_or_init` (as ``start["extra"]`` and merged into ``start``).
                Its keys must differ from the start dict's own keys.
            iteration: iterations of ``epoch`` already done (mid-epoch checkpoint).
        Returns:
            the path written (rank 0), else None.
        Raises:
            CheckpointError: write failure (disk full...); earlier checkpoints stay intact.
            TypeError: an entry that ``weights_only`` loading would refuse, named.
        """
        clash = _START_KEYS & set(extra or {})
        if clash:
            raise ValueError(f"Checkpointer.save: extra keys {sorted(clash)} are reserved")
        if self.rank != 0:
            return None
        ckpt = self.state_dict(epoch, iteration, extra)
        _check_serialisable(ckpt)
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, checkpoint_name(epoch, iteration))
        atomic_save(ckpt, path)
        logger.info("saved checkpoint %s", path)
        self._prune(path)
        return path

    def _prune(self, newest: str) -> None:
        """Delete mid-epoch files older than ``newest`` (superseded), then all but the newest
        ``keep`` files, then temp files that dead processes left behind."""
        newest_key = parse_checkpoint_name(newest)
        for p in list_checkpoints(self.dir):
            key = parse_checkpoint_name(p)
            if key < newest_key and key[1] != _END:
                self._remove(p)
        if self.keep > 0:
            for p in list_checkpoints(self.dir)[:-self.keep]:
                self._remove(p)
        mine = f"{_TMP_MARK}{os.getpid()}"
        for f in os.listdir(self.dir):
            if f.startswith(".checkpoint_epoch_") and _TMP_MARK in f and not f.endswith(mine):
                self._remove(os.path.join(self.dir, f))

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
            logger.info("removed old checkpoint %s", path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ loading
    def latest(self) -> Optional[str]:
        """Newest complete own checkpoint, or None."""
        return find_latest(self.dir)

    def _load_model(self, ckpt: dict, path: str, may_skip=(), what: str = "checkpoint") -> dict:
        state = adapt_keys(extract_model_state(ckpt, path))
        return load_weights(self.model, state, path, may_skip=may_skip, what=what)

    def _restore_training(self, ckpt: dict, path: str) -> None:
        if self.optimizer is not None and ckpt.get("optimizer_state"):
            _check_optimizer_state(self.optimizer, ckpt["optimizer_state"], path)
            self.optimizer.load_state_dict(ckpt["optimizer_state"])
        elif self.optimizer is not None:
            logger.warning("%s has no optimizer state: the optimizer starts fresh", path)
        if self.scaler is not None and self.scaler.is_enabled():
            if ckpt.get("scaler_state"):
                self.scaler.load_state_dict(ckpt["scaler_state"])
            else:
                logger.warning("%s has no grad-scaler state: the scaler starts fresh", path)

    @staticmethod
    def _start(ckpt: dict, path: str, mode: str) -> dict:
        """Where training continues: after ``epoch`` for an end-of-epoch file, inside it
        (at ``iter_in_epoch``) for a mid-epoch one."""
        if "epoch" not in ckpt:
            raise CheckpointError(f"{path} has no 'epoch' entry; set "
                                  "TRAIN.CHECKPOINT_EPOCH_RESET True to load its weights only")
        epoch, it = int(ckpt["epoch"]), ckpt.get("iter_in_epoch")
        extra = ckpt.get("extra") or {}
        return {**extra, "mode": mode, "path": path, "extra": extra,
                "start_epoch": epoch + 1 if it is None else epoch,
                "start_iter": 0 if it is None else int(it)}

    def resume(self, path: str, ckpt: Optional[dict] = None) -> dict:
        """Load model, optimizer, scaler and position from one of our own files
        (``ckpt``: its content when already read)."""
        if ckpt is None:
            ckpt = read_checkpoint(path, "resume")
        self._load_model(ckpt, path)
        self._restore_training(ckpt, path)
        start = self._start(ckpt, path, "resume")
        logger.info("resumed from %s: epoch %d, iteration %d", path, start["start_epoch"],
                    start["start_iter"])
        return start

    def resume_or_init(self, cfg) -> dict:
        """Decide where training starts and load the state for it.

        1. ``TRAIN.AUTO_RESUME`` and an own complete checkpoint exists: resume from the
           newest (unreadable newer files are skipped with a warning naming them).
        2. ``TRAIN.CHECKPOINT_FILE_PATH``: init from that file; only head tensors may
           differ (they keep their initialisation and are listed); with ``TRAIN.CHECKPOINT_EPOCH_RESET`` from epoch 0 with a fresh
           optimizer, else with its epoch, optimizer and scaler.
        3. otherwise from scratch.

        Returns:
            ``{"mode": "resume"|"init"|"scratch", "path", "start_epoch", "start_iter",
            "extra", **extra}``; ``start_epoch`` is 0-based, ``start_iter`` the first
            iteration to run in it, ``extra`` the dict given to :meth:`save` ({} for
            foreign files), whose entries are also merged at the top level.
        """
        if cfg.TRAIN.AUTO_RESUME:
            for path in reversed(list_checkpoints(self.dir)):
                try:
                    ckpt = read_checkpoint(path, "TRAIN.AUTO_RESUME")
                    extract_model_state(ckpt, path)
                except CheckpointError as e:
                    logger.warning("skipping incomplete or unreadable checkpoint %s: %s", path, e)
                    continue
                return self.resume(path, ckpt)
            logger.info("TRAIN.AUTO_RESUME: no complete checkpoint in %s", self.dir)
        path = cfg.TRAIN.CHECKPOINT_FILE_PATH
        if path:
            what = "TRAIN.CHECKPOINT_FILE_PATH"
            ckpt = read_checkpoint(path, what)
            self._load_model(ckpt, path, may_skip=FINE_TUNE_PREFIXES, what=what)
            if cfg.TRAIN.CHECKPOINT_EPOCH_RESET:
                logger.info("initialised from %s; TRAIN.CHECKPOINT_EPOCH_RESET: epoch 0, "
                            "fresh optimizer", path)
                return {"mode": "init", "path": path, "start_epoch": 0, "start_iter": 0,
                        "extra": {}}
            if "epoch" in ckpt:
                start = self._start(ckpt, path, "init")
            else:  # e.g. a weights-only release file: the original code started at epoch 0
                start = {"mode": "init", "path": path, "start_epoch": 0, "start_iter": 0, "extra": {}}
            self._restore_training(ckpt, path)
            logger.info("initialised from %s with its training state: epoch %d, iteration %d",
                        path, start["start_epoch"], start["start_iter"])
            return start
        return {"mode": "scratch", "path": None, "start_epoch": 0, "start_iter": 0, "extra": {}}

    def load_for_test(self, cfg) -> Optional[str]:
        """Load model weights for testing from ``TEST.CHECKPOINT_FILE_PATH``, else the newest
        own checkpoint, else ``TRAIN.CHECKPOINT_FILE_PATH``.

        Returns:
            the path loaded, or None (with a warning) when there is none: the model keeps
            its random initialisation.
        Raises:
            CheckpointError: the file is unreadable, or a model tensor that testing uses is
                absent from it or of another shape (other class counts, crop size...):
                testing partly random weights would report a wrong score.
        """
        path, what = cfg.TEST.CHECKPOINT_FILE_PATH, "TEST.CHECKPOINT_FILE_PATH"
        if not path:
            path, what = self.latest(), "newest own checkpoint"
        if not path and cfg.TRAIN.CHECKPOINT_FILE_PATH:
            path, what = cfg.TRAIN.CHECKPOINT_FILE_PATH, "TRAIN.CHECKPOINT_FILE_PATH"
        if not path:
            logger.warning("no checkpoint to test (TEST.CHECKPOINT_FILE_PATH empty, none in %s, "
                           "TRAIN.CHECKPOINT_FILE_PATH empty): testing random weights", self.dir)
            return None
        ckpt = read_checkpoint(path, what)
        self._load_model(ckpt, path, may_skip=INFERENCE_UNUSED_PREFIXES, what=what)
        logger.info("testing weights of %s (%s)", path, what)
        return path
