"""Consistency checks of a merged config; each error names the key and where it was set."""
from __future__ import annotations

from typing import Dict

from yacs.config import CfgNode as CN

from .errors import ConfigError

MULTI_LIST_KEYS = (
    "MULTI_REPLICAS", "MULTI_LOSS_FUNCS", "MULTI_NUM_CLASSES",
    "MULTI_HEAD_ACT", "MULTI_LOSS_WEIGHTS",
)
MULTI_PATH_KEYS = ("MULTI_PATH_TO_DATA_DIR", "MULTI_PATH_PREFIX")
CHOICES = {
    "DATA.DECODING_BACKEND": ("decord", "pyav", "torchvision"),
    "DATA.ENSEMBLE_METHOD": ("sum", "max"),
    "DATA.TEMPORAL_SAMPLING": ("", "clip", "segment"),
    "MODEL.ARCH": ("mvit",),
    "MODEL.HEAD_ACT": ("softmax", "sigmoid"),
    "MODEL.MULTI_PROJ_SPARSITY_LOSS_TYPE": ("", "l1"),
    "MVIT.MODE": ("conv",),
    "MVIT.ATTENTION_IMPL": ("sdpa", "reference"),
    "SOLVER.OPTIMIZING_METHOD": ("adamw", "sgd"),
    "SOLVER.LR_POLICY": ("cosine",),
    "SOLVER.GRAD_REFERENCE": ("original", "global_batch"),
    "TRAIN.MIXED_PRECISION_DTYPE": ("float16", "bfloat16"),
    "AUG.RE_MODE": ("pixel", "rand", "const"),
}
ACTS = ("softmax", "sigmoid")
LOSSES = ("soft_cross_entropy", "cross_entropy", "bce", "bce_logit")
# Original options we accept but whose non-default behaviour we do not implement.
UNSUPPORTED = {
    "MODEL.MULTI_CROSS_PROJ_ADD_TO_PRED": False,
    "MODEL.LOAD_MULTI_PROJ_INIT_FILE": "",
    "AUG.RE_SPLIT": False,
    "MVIT.SEPARATE_QKV": False,
    "MVIT.PATCH_2D": False,
    "MVIT.POOL_FIRST": False,
    "MVIT.NORM_STEM": False,
    "TRAIN.CHECKPOINT_INFLATE": False,
}


def _get(cfg: CN, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _where(origins: Dict[str, str], key: str) -> str:
    return origins.get(key, "defaults")


def _fail(origins: Dict[str, str], key: str, msg: str) -> None:
    raise ConfigError(f"{_where(origins, key)}: {key} {msg}")


def validate(cfg: CN, origins: Dict[str, str]) -> None:
    """Raise ConfigError on the first inconsistency found."""
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            _fail(origins, key, f"is {_get(cfg, key)!r}; expected one of {list(allowed)}")
    for key, default in UNSUPPORTED.items():
        if _get(cfg, key) != default:
            _fail(origins, key, f"= {_get(cfg, key)!r} is not supported (only {default!r}); "
                  "it served experiments outside the published recipe")
    if cfg.NUM_GPUS < 0 or cfg.NUM_SHARDS < 1 or not 0 <= cfg.SHARD_ID < cfg.NUM_SHARDS:
        _fail(origins, "SHARD_ID", f"= {cfg.SHARD_ID} must lie in [0, NUM_SHARDS={cfg.NUM_SHARDS})"
              f" with NUM_GPUS={cfg.NUM_GPUS} >= 0")
    _check_batch(cfg, origins)
    _check_multi(cfg, origins)
    if cfg.TEST.NUM_SPATIAL_CROPS not in (1, 3):
        _fail(origins, "TEST.NUM_SPATIAL_CROPS", f"= {cfg.TEST.NUM_SPATIAL_CROPS}; must be 1 or 3")
    if cfg.TRAIN.GRAD_ACCU_NUM_BATCH < 1:
        _fail(origins, "TRAIN.GRAD_ACCU_NUM_BATCH", "must be >= 1")
    if cfg.AUG.NUM_SAMPLE < 1:
        _fail(origins, "AUG.NUM_SAMPLE", "must be >= 1")
    for key in ("DATA.TRAIN_JITTER_SCALES_RELATIVE", "DATA.TRAIN_JITTER_ASPECT_RELATIVE"):
        if len(_get(cfg, key)) not in (0, 2):
            _fail(origins, key, "must be [] or [low, high]")
    if cfg.TRAIN.ENABLE and cfg.SOLVER.COSINE_AFTER_WARMUP and cfg.SOLVER.MAX_EPOCH <= cfg.SOLVER.WARMUP_EPOCHS:
        _fail(origins, "SOLVER.MAX_EPOCH", f"= {cfg.SOLVER.MAX_EPOCH} must exceed SOLVER.WARMUP_EPOCHS = "
              f"{cfg.SOLVER.WARMUP_EPOCHS} (the cosine starts after the warm-up)")
    if cfg.TRAIN.ENABLE and cfg.MODEL.USE_INF_LOSS and not cfg.TRAIN.GATHER_BEFORE_LOSS:
        _fail(origins, "MODEL.USE_INF_LOSS", "needs TRAIN.GATHER_BEFORE_LOSS True (the informative "
              "loss is a statistic of the global batch)")
    if len(cfg.DATA.TRAIN_JITTER_SCALES) != 2:
        _fail(origins, "DATA.TRAIN_JITTER_SCALES", "must be [short_min, short_max]")


def _check_batch(cfg: CN, origins: Dict[str, str]) -> None:
    procs = max(1, cfg.NUM_GPUS) * cfg.NUM_SHARDS
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        value = _get(cfg, key)
        if value < 1:
            _fail(origins, key, f"= {value} must be >= 1")
    if cfg.TRAIN.ENABLE and cfg.TRAIN.BATCH_SIZE % procs:
        _fail(origins, "TRAIN.BATCH_SIZE", f"= {cfg.TRAIN.BATCH_SIZE} is the global batch and must be "
              f"divisible by max(1, NUM_GPUS) x NUM_SHARDS = {procs}")


def _check_multi(cfg: CN, origins: Dict[str, str]) -> None:
    m = cfg.MODEL
    if not m.USE_MULTI_HEAD:
        if cfg.TRAIN.ENABLE and cfg.TRAIN.DATASET == "multi_dataset_seq":
            _fail(origins, "TRAIN.DATASET", "= multi_dataset_seq needs MODEL.USE_MULTI_HEAD True")
        return
    names = list(m.MULTI_DATASETS)
    if not names:
        _fail(origins, "MODEL.MULTI_DATASETS", "is empty but MODEL.USE_MULTI_HEAD is True")
    if len(set(names)) != len(names):
        _fail(origins, "MODEL.MULTI_DATASETS", f"= {names} has duplicates")
    for k in MULTI_LIST_KEYS:
        if len(m[k]) != len(names):
            _fail(origins, f"MODEL.{k}", f"has {len(m[k])} entries but MODEL.MULTI_DATASETS has "
                  f"{len(names)} ({names})")
    for k in MULTI_PATH_KEYS:
        if len(m[k]) not in (0, len(names)):
            _fail(origins, f"MODEL.{k}", f"has {len(m[k])} entries but MODEL.MULTI_DATASETS has "
                  f"{len(names)} ({names})")
    for act in m.MULTI_HEAD_ACT:
        if act not in ACTS:
            _fail(origins, "MODEL.MULTI_HEAD_ACT", f"entry {act!r} not in {list(ACTS)}")
    for fn in list(m.MULTI_LOSS_FUNCS) + [m.MULTI_PROJ_LOSS_FUNC]:
        if fn not in LOSSES:
            _fail(origins, "MODEL.MULTI_LOSS_FUNCS", f"entry {fn!r} not in {list(LOSSES)}")
    if any(int(c) < 1 for c in m.MULTI_NUM_CLASSES):
        _fail(origins, "MODEL.MULTI_NUM_CLASSES", "entries must be >= 1")
    if cfg.TEST.ENABLE and cfg.TEST.DATASET not in names and not cfg.DATA.MODEL_DIFF_DATA:
        _fail(origins, "TEST.DATASET", f"= {cfg.TEST.DATASET!r} is not among MODEL.MULTI_DATASETS "
              f"{names} of this multi-head model")
    if cfg.TRAIN.ENABLE and cfg.TRAIN.DATASET == "multi_dataset_seq" and len(m.MULTI_PATH_PREFIX) == 0:
        _fail(origins, "MODEL.MULTI_PATH_TO_DATA_DIR", "must list one folder per dataset for "
              "TRAIN.DATASET multi_dataset_seq")
    if cfg.TRAIN.ENABLE and cfg.TRAIN.DATASET not in names + ["multi_dataset_seq"]:
        _fail(origins, "TRAIN.DATASET", f"= {cfg.TRAIN.DATASET!r} is neither multi_dataset_seq nor "
              f"one of MODEL.MULTI_DATASETS {names}")
