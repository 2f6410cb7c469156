"""Predict the classes of videos with a trained model: top-k of every dataset head.

The views are those of the multi-view test (`engine.evaluator`), per dataset:

- Kinetics / MiT (clip sampling): ``num_views`` temporal windows of ``NUM_FRAMES x
  SAMPLING_RATE`` frames at ``TARGET_FPS`` placed as the test places them
  (``DATA.USE_OFFSET_SAMPLING``), times ``num_crops`` spatial crops;
- SSv2 (segment sampling): the midpoint of each of ``NUM_FRAMES`` segments. Its temporal
  views would all be the same frames, so only the spatial crops are computed (the mean or
  max over identical views is the same);
- one crop: short side ``TRAIN_JITTER_SCALES[0]``, centre crop ``TEST_CROP_SIZE``; three
  crops, and always for SSv2: short side ``TEST_CROP_SIZE``, crops at both ends and the
  centre of the long side.

A video is decoded once per distinct protocol; datasets that share a protocol share one
forward pass (a multi-head model in eval mode returns every head's probabilities).
Scores are the mean (``DATA.ENSEMBLE_METHOD sum``, rescaled to stay probabilities) or the
max over views.

Class names (:func:`load_class_names`, :func:`resolve_class_names`): a JSON list, a JSON
``{dataset: [names]}``, a synthetic corpus root (its ``relations.json``) or a prepared
dataset folder (its ``classnames.json``); otherwise the maps shipped in
``multitrain/data/classnames/`` when the dataset name and class count match.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import torch

from ..decoding.decoder import VideoDecodeError, open_video
from ..data.sampling import segment_indices, test_clip_indices
from ..transforms import eval_view
from ..data.video_dataset import default_random_flip, default_temporal_sampling

__all__ = ["CLASSNAMES_DIR", "builtin_class_names", "load_class_names", "resolve_class_names",
           "ViewProtocol", "view_protocol", "Predictor", "load_model_weights", "topk_entries",
           "format_table", "head_class_counts"]

logger = logging.getLogger(__name__)

CLASSNAMES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "data", "classnames")
# Dataset names people use for the three sets -> the key of BUILTIN_CLASSNAMES.
_ALIASES = {"kinetics": "kinetics", "k400": "kinetics", "kinetics400": "kinetics",
            "kinetics-400": "kinetics", "mit": "mit", "moments": "mit",
            "moments_in_time": "mit", "ssv2": "ssv2", "sthv2": "ssv2", "sth-sth-v2": "ssv2",
            "something-something-v2": "ssv2"}
# (dataset, class count) -> shipped file (see multitrain/data/classnames/README.md).
BUILTIN_CLASSNAMES = {("kinetics", 400): "kinetics400.json",
                      ("mit", 305): "moments_in_time_v2.json",
                      ("mit", 339): "moments_in_time_v1.json",
                      ("ssv2", 174): "ssv2.json"}


# ------------------------------------------------------------------------------ names
def builtin_class_names(dataset: str, num_classes: int) -> Optional[List[str]]:
    """The shipped class list of ``dataset`` when one has ``num_classes`` entries."""
    key = (_ALIASES.get(dataset.lower(), dataset.lower()), int(num_classes))
    name = BUILTIN_CLASSNAMES.get(key)
    if name is None:
        return None
    with open(os.path.join(CLASSNAMES_DIR, name)) as f:
        return list(json.load(f))


def _check_list(names, source: str, what: str) -> List[str]:
    if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
        raise ValueError(f"{source}: {what} must be a JSON list of class names")
    return [str(n) for n in names]


def load_class_names(source: str, default_dataset: Optional[str] = None) -> Dict[str, List[str]]:
    """``{dataset: [names]}`` from ``source``.

    ``source`` is one of: a JSON list (the classes of ``default_dataset``); a JSON object
    ``{dataset: [names]}``; a ``relations.json`` of the synthetic corpus, or a folder
    holding one; a folder holding ``classnames.json`` (a prepared dataset, for
    ``default_dataset``).
    """
    path = source
    if os.path.isdir(source):
        for name in ("relations.json", "classnames.json"):
            if os.path.isfile(os.path.join(source, name)):
                path = os.path.join(source, name)
                break
        else:
            raise FileNotFoundError(f"class names: folder {source} holds neither relations.json "
                                    "nor classnames.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class names: no such file {path}")
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"class names: {path} is not valid JSON ({e})") from None
    if isinstance(data, list):
        if not default_dataset:
            raise ValueError(f"class names: {path} is a plain list; say which dataset it names "
                             "(TEST.DATASET or a {dataset: [names]} file)")
        return {default_dataset: _check_list(data, path, "the file")}
    if not isinstance(data, dict):
        raise ValueError(f"class names: {path} must hold a list or an object")
    if isinstance(data.get("datasets"), dict):  # relations.json of the synthetic corpus
        return {k: _check_list(v.get("classes"), path, f"datasets.{k}.classes")
                for k, v in data["datasets"].items()}
    return {k: _check_list(v, path, f"entry {k!r}") for k, v in data.items()}


def resolve_class_names(num_classes: Mapping[str, int], sources: Sequence[str] = (),
                        default_dataset: Optional[str] = None) -> Dict[str, Optional[List[str]]]:
    """Names of each head's classes: the first of ``sources`` that names the dataset, else
    the shipped list matching name and count, else None (indices are shown).

    Raises ValueError when a source's list does not have the head's class count.
    """
    out: Dict[str, Optional[List[str]]] = {d: None for d in num_classes}
    for src in sources:
        if not src:
            continue
        for d, names in load_class_names(src, default_dataset).items():
            if d in out and out[d] is None:
                if len(names) != num_classes[d]:
                    raise ValueError(f"class names: {src} lists {len(names)} classes for {d!r}, "
                                     f"but its head has {num_classes[d]}")
                out[d] = names
    for d, k in num_classes.items():
        if out[d] is None:
            out[d] = builtin_class_names(d, k)
    return out


# ------------------------------------------------------------------------------ views
@dataclass(frozen=True)
class ViewProtocol:
    """How the test views of one dataset are made (see the module docstring)."""

    sampling: str  # "clip" or "segment"
    num_views: int  # temporal views (1 for segment sampling)
    num_crops: int  # spatial crops per temporal view (1 or 3)
    short_side: int  # short side the frames are scaled to before cropping
    crop_size: int

    @property
    def total(self) -> int:
        return self.num_views * self.num_crops


def view_protocol(dataset: str, num_views: int, num_crops: int, crop_size: int,
                  one_crop_short_side: int, temporal_sampling: str = "") -> ViewProtocol:
    """The test protocol of ``dataset`` (``temporal_sampling`` "" = from its name)."""
    if num_views < 1 or num_crops not in (1, 3):
        raise ValueError(f"views: need >= 1 temporal view (got {num_views}) and 1 or 3 "
                         f"spatial crops (got {num_crops})")
    kind = temporal_sampling or default_temporal_sampling(dataset)
    # SSv2-like sets (never flipped) always scale the short side to the crop size.
    short = crop_size if (num_crops > 1 or not default_random_flip(dataset)) else one_crop_short_side
    return ViewProtocol(kind, 1 if kind == "segment" else int(num_views), int(num_crops),
                        int(short), int(crop_size))


class Predictor:
    """Multi-view (or single-view) prediction of every selected head.

    Args:
        model: the network; eval mode returns ``{dataset: [B, K]}`` probabilities
            (multi-head) or ``[B, K]`` (single head, reported under ``datasets[0]``).
        protocols: ``{dataset: ViewProtocol}``, the heads to report, in order.
        num_frames, sampling_rate, target_fps, use_offset_sampling: clip sampling.
        mean, std: normalisation (``DATA.MEAN`` / ``DATA.STD``).
        ensemble: "sum" (reported as the mean over views) or "max".
        backend: decoder, "decord" or "pyav".
        device: where the model runs (the model is moved there).
        batch_size: views per forward pass.
    """

    def __init__(self, model: torch.nn.Module, protocols: Mapping[str, ViewProtocol], *,
                 num_frames: int, sampling_rate: int, target_fps: float,
                 use_offset_sampling: bool = False, mean: Sequence[float] = (0.45,) * 3,
                 std: Sequence[float] = (0.225,) * 3, ensemble: str = "sum",
                 backend: str = "decord", device: str = "cpu", batch_size: int = 8):
        if ensemble not in ("sum", "max"):
            raise ValueError(f"DATA.ENSEMBLE_METHOD must be sum or max, got {ensemble!r}")
        if not protocols:
            raise ValueError("Predictor: no dataset head selected")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.protocols = dict(protocols)
        self.num_frames, self.sampling_rate, self.target_fps = num_frames, sampling_rate, target_fps
        self.use_offset_sampling = bool(use_offset_sampling)
        self.mean, self.std = tuple(mean), tuple(std)
        self.ensemble, self.backend, self.batch_size = ensemble, backend, max(1, int(batch_size))

    @classmethod
    def from_cfg(cls, cfg, model: torch.nn.Module, datasets: Optional[Sequence[str]] = None,
                 num_views: Optional[int] = None, num_crops: Optional[int] = None,
                 single_view: bool = False, device: Optional[str] = None,
                 batch_size: Optional[int] = None) -> "Predictor":
        """Heads, views and device from the config; arguments left None take
        ``TEST.NUM_ENSEMBLE_VIEWS`` / ``NUM_SPATIAL_CROPS`` / ``TEST.BATCH_SIZE``;
        ``single_view`` = 1 x 1. Device: cuda when ``NUM_GPUS > 0`` and available."""
        heads = head_class_counts(cfg)
        names = list(datasets) if datasets else list(heads)
        unknown = [d for d in names if d not in heads]
        if unknown:
            raise ValueError(f"datasets {unknown} have no head; the model's heads are {list(heads)} "
                             "(MODEL.MULTI_DATASETS, or TEST.DATASET for a single-head model)")
        views = 1 if single_view else int(num_views or cfg.TEST.NUM_ENSEMBLE_VIEWS)
        crops = 1 if single_view else int(num_crops or cfg.TEST.NUM_SPATIAL_CROPS)
        d = cfg.DATA
        protocols = {n: view_protocol(n, views, crops, d.TEST_CROP_SIZE, d.TRAIN_JITTER_SCALES[0],
                                      d.TEMPORAL_SAMPLING) for n in names}
        if device is None:
            device = "cuda" if cfg.NUM_GPUS > 0 and torch.cuda.is_available() else "cpu"
        return cls(model, protocols, num_frames=d.NUM_FRAMES, sampling_rate=d.SAMPLING_RATE,
                   target_fps=d.TARGET_FPS, use_offset_sampling=d.USE_OFFSET_SAMPLING,
                   mean=d.MEAN, std=d.STD, ensemble=d.ENSEMBLE_METHOD, backend=d.DECODING_BACKEND,
                   device=device, batch_size=batch_size or cfg.TEST.BATCH_SIZE)

    def make_views(self, path: str, protocol: ViewProtocol) -> torch.Tensor:
        """Every view of ``path`` under ``protocol``: float ``[V, 3, T, S, S]``, temporal
        view major, crop minor (the order of the test dataset's items)."""
        with open_video(path, self.backend) as reader:
            if protocol.sampling == "segment":
                windows = [segment_indices(reader.num_frames, self.num_frames, train=False)]
            else:
                windows = test_clip_indices(reader.num_frames, reader.fps, self.num_frames,
                                            self.sampling_rate, self.target_fps,
                                            protocol.num_views, self.use_offset_sampling)
            views = []
            for idx in windows:
                clip = reader.get_frames(idx)  # uint8 [T, H, W, 3]
                for crop in range(protocol.num_crops):
                    views.append(eval_view(clip, crop, protocol.num_crops,
                                           crop_size=protocol.crop_size,
                                           short_side=protocol.short_side,
                                           mean=self.mean, std=self.std))
        return torch.stack(views)

    @torch.no_grad()
    def _forward(self, views: torch.Tensor) -> Dict[str, torch.Tensor]:
        """views: [V, 3, T, S, S] -> {dataset: probabilities [V, K]} (all heads)."""
        chunks: Dict[str, List[torch.Tensor]] = {}
        for x in views.split(self.batch_size):
            out = self.model(x.to(self.device, non_blocking=True), output="probs")
            if not isinstance(out, dict):  # single head
                out = {next(iter(self.protocols)): out}
            for name, p in out.items():
                chunks.setdefault(name, []).append(p.float().cpu())
        return {name: torch.cat(ps) for name, ps in chunks.items()}

    def _combine(self, probs: torch.Tensor) -> torch.Tensor:
        """[V, K] -> [K]: mean (sum rescaled) or max over the views."""
        return probs.max(dim=0).values if self.ensemble == "max" else probs.mean(dim=0)

    def predict_video(self, path: str) -> Dict[str, torch.Tensor]:
        """``{dataset: scores [K]}`` of one video, for every selected head.

        Raises VideoDecodeError (naming the file) when it cannot be decoded.
        """
        groups: Dict[ViewProtocol, List[str]] = {}
        for name, proto in self.protocols.items():
            groups.setdefault(proto, []).append(name)
        scores: Dict[str, torch.Tensor] = {}
        for proto, names in groups.items():
            probs = self._forward(self.make_views(path, proto))
            for name in names:
                scores[name] = self._combine(probs[name])
        return {name: scores[name] for name in self.protocols}

    def predict(self, paths: Sequence[str], topk: int = 5,
                class_names: Optional[Mapping[str, Optional[Sequence[str]]]] = None) -> List[dict]:
        """One result per video, in order: ``{"video", "views": {dataset: "VxC"},
        "predictions": {dataset: [entry, ...]}}`` (entries from :func:`topk_entries`), or
        ``{"video", "error"}`` when the file cannot be decoded."""
        names = class_names or {}
        results = []
        for path in paths:
            try:
                scores = self.predict_video(path)
            except VideoDecodeError as e:
                logger.error("%s", e)
                results.append({"video": path, "error": str(e)})
                continue
            results.append({
                "video": path,
                "views": {d: f"{p.num_views}x{p.num_crops}" for d, p in self.protocols.items()},
                "predictions": {d: topk_entries(s, topk, names.get(d)) for d, s in scores.items()},
            })
        return results


def head_class_counts(cfg) -> Dict[str, int]:
    """``{dataset: classes}`` of the model's heads (a single head is named TEST.DATASET,
    the dataset whose test protocol and class names it is used with)."""
    m = cfg.MODEL
    if m.USE_MULTI_HEAD:
        return {str(d): int(k) for d, k in zip(m.MULTI_DATASETS, m.MULTI_NUM_CLASSES)}
    return {str(cfg.TEST.DATASET): int(m.NUM_CLASSES)}


def topk_entries(scores: torch.Tensor, k: int, names: Optional[Sequence[str]] = None) -> List[dict]:
    """scores: [K] -> the k best as ``{"rank", "index", "name", "score"}`` (name = the
    index as text when no names are known)."""
    k = max(1, min(int(k), scores.numel()))
    vals, idx = scores.topk(k)
    return [{"rank": r + 1, "index": int(i), "name": names[int(i)] if names else str(int(i)),
             "score": round(float(v), 6)} for r, (v, i) in enumerate(zip(vals, idx))]


def format_table(results: Sequence[dict]) -> str:
    """A text table: per video and head, rank, score and class."""
    lines = []
    for res in results:
        lines.append(res["video"])
        if "error" in res:
            lines.append(f"  ERROR: {res['error']}")
            continue
        for dataset, entries in res["predictions"].items():
            lines.append(f"  {dataset} ({res['views'][dataset]} views)")
            for e in entries:
                lines.append(f"    {e['rank']:>2}. {e['score']:7.4f}  {e['name']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ weights
def load_model_weights(model: torch.nn.Module, path: str) -> dict:
    """Load a checkpoint (ours or the original's) into ``model`` for inference.

    Modules inference never runs (projections, expander) may be absent; any other model
    tensor absent from the file or of another shape means the config does not describe
    this checkpoint: a :class:`~multitrain.checkpoint.CheckpointError` names the keys.
    """
    from ..checkpoint import INFERENCE_UNUSED_PREFIXES, load_weights, read_model_state

    _, state = read_model_state(path, "--checkpoint")
    return load_weights(model, state, path, may_skip=INFERENCE_UNUSED_PREFIXES,
                        what="--checkpoint", level=logging.DEBUG)
