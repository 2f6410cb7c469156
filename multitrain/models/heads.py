"""Classification heads: one per dataset, cross-dataset projections, and the single head.

Heads return logits in training; the activation (softmax or sigmoid) is applied only by
`predict`, which the model calls in eval mode. Module names match the original
(`heads.<dataset>`, `cross_dataset_heads.<a>_<b>`, `projection`) so checkpoints load as-is.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .attention import Mlp

HEAD_MLP_HIDDEN = 2048
ACTIVATIONS = ("softmax", "sigmoid")


def apply_activation(logits: torch.Tensor, act: str) -> torch.Tensor:
    """logits: [B, K] -> probabilities [B, K] (float32, whatever the input dtype)."""
    if act == "softmax":
        return logits.float().softmax(dim=-1)
    if act == "sigmoid":
        return logits.float().sigmoid()
    raise ValueError(f"head activation {act!r} not in {ACTIVATIONS}")


class MultiDatasetHead(nn.Module):
    """One classifier per dataset on the pooled feature, plus optional projections.

    With `use_mlp` each classifier is dim -> 2048 -> K_d (GELU; dropout after the activation
    and after the output); otherwise a Linear with dropout on its input. With `cross_proj`,
    for every ordered pair (a, b), a != b, a bias-free Linear `a_b` maps a's logits to b's
    class space (training only).
    """

    def __init__(self, dim_in: int, dataset_names: Sequence[str], num_classes: Sequence[int],
                 acts: Sequence[str], dropout_rate: float = 0.0, use_mlp: bool = False,
                 cross_proj: bool = False):
        super().__init__()
        if not (len(dataset_names) == len(num_classes) == len(acts)):
            raise ValueError(f"heads: {len(dataset_names)} names, {len(num_classes)} class "
                             f"counts and {len(acts)} activations must match")
        for act in acts:
            if act not in ACTIVATIONS:
                raise ValueError(f"head activation {act!r} not in {ACTIVATIONS}")
        self.dataset_names = list(dataset_names)
        self.acts = dict(zip(dataset_names, acts))
        if dropout_rate > 0.0 and not use_mlp:
            self.dropout = nn.Dropout(dropout_rate)
        heads = {}
        for name, classes in zip(dataset_names, num_classes):
            heads[name] = (Mlp(dim_in, HEAD_MLP_HIDDEN, int(classes), drop_rate=dropout_rate)
                           if use_mlp else nn.Linear(dim_in, int(classes)))
        self.heads = nn.ModuleDict(heads)
        # (source, target) pairs in the original's order: grouped by target dataset.
        self.proj_pairs: List[Tuple[str, str]] = []
        if cross_proj:
            projections = {}
            classes = dict(zip(dataset_names, num_classes))
            for target in dataset_names:
                for source in dataset_names:
                    if source != target:
                        projections[f"{source}_{target}"] = nn.Linear(
                            int(classes[source]), int(classes[target]), bias=False)
                        self.proj_pairs.append((source, target))
            self.cross_dataset_heads = nn.ModuleDict(projections)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [B, dim] -> {dataset: logits [B, K_d]}."""
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return {name: head(x) for name, head in self.heads.items()}

    def project(self, logits: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """{dataset: [B, K_d]} -> {"a_b": [B, K_b]} (a's logits, before activation, into b)."""
        return {f"{a}_{b}": self.cross_dataset_heads[f"{a}_{b}"](logits[a])
                for a, b in self.proj_pairs}

    def projection_weights(self) -> List[torch.Tensor]:
        """The projection matrices (for the L1 sparsity term); empty without projections."""
        if not self.proj_pairs:
            return []
        return [m.weight for m in self.cross_dataset_heads.values()]

    def predict(self, x: torch.Tensor, dataset_name: Optional[str] = None):
        """x: [B, dim] -> probabilities [B, K_d] of `dataset_name`, or a dict of all heads."""
        if dataset_name is None:
            return {name: apply_activation(head(x), self.acts[name])
                    for name, head in self.heads.items()}
        if dataset_name not in self.heads:
            raise KeyError(f"dataset {dataset_name!r} has no head; heads: {self.dataset_names}")
        return apply_activation(self.heads[dataset_name](x), self.acts[dataset_name])


class TransformerBasicHead(nn.Module):
    """The single-dataset head: dropout then Linear (`projection`), activation at eval."""

    def __init__(self, dim_in: int, num_classes: int, dropout_rate: float = 0.0,
                 act: str = "softmax", name: str = "default"):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"head activation {act!r} not in {ACTIVATIONS}")
        self.act = act
        self.name = name
        self.dataset_names = [name]
        self.proj_pairs: List[Tuple[str, str]] = []
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(dim_in, int(num_classes))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: [B, dim] -> {name: logits [B, K]}."""
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return {self.name: self.projection(x)}

    def project(self, logits: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {}

    def projection_weights(self) -> List[torch.Tensor]:
        return []

    def predict(self, x: torch.Tensor, dataset_name: Optional[str] = None) -> torch.Tensor:
        """x: [B, dim] -> probabilities [B, K]; the single head answers for any dataset name."""
        return apply_activation(self.projection(x), self.act)
