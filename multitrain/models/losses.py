"""Losses of multi-dataset training, each returning named scalar terms.

Everything here is batch-agnostic: B is whatever first dimension the tensors have, so the
engine can all-gather logits, features, labels and masks across ranks first and call the
criterion on the global batch. Terms are computed in float32 with autocast disabled.

Learned parameters (uncertainty weights with MODEL.MULTI_USE_MTL_WEIGHT /
MODEL.USE_INF_LEARN_WEIGHT) live in the criterion: the engine must add
`criterion.parameters()` to the optimizer and save `criterion.state_dict()` in checkpoints.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

SOFTMAX_LOSSES = ("soft_cross_entropy", "cross_entropy")
SIGMOID_LOSSES = ("bce_logit", "bce")  # both applied to logits (heads emit logits in training)


def _fp32_region(t: torch.Tensor):
    """Disable autocast on t's device so that the loss math stays in float32."""
    return torch.autocast(device_type=t.device.type, enabled=False) if t.is_floating_point() \
        else contextlib.nullcontext()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits, target: [B, K] (soft target rows) -> per-sample loss [B]."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def bce_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE on logits, averaged over classes: [B, K] -> [B]."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=-1)


def per_sample_loss(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample loss [B] of loss `name` (a MODEL.*LOSS_FUNC* value)."""
    if target.ndim == 1:  # class indices -> one-hot rows
        target = F.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
    if name in SOFTMAX_LOSSES:
        return soft_cross_entropy(logits, target)
    if name in SIGMOID_LOSSES:
        return bce_with_logits(logits, target)
    raise ValueError(f"loss {name!r} not in {SOFTMAX_LOSSES + SIGMOID_LOSSES}")


def _init_log_sigma_sq(n: int) -> nn.Parameter:
    # The original draws s ~ U(0.2, 1.0); we learn log s so that s stays positive.
    return nn.Parameter(torch.empty(n).uniform_(0.2, 1.0).log())


class MultiHeadLoss(nn.Module):
    """Masked per-dataset loss with the cross-dataset projection loss.

    For dataset d and sample i:  l_d(i) = loss_d(logits_d(i), y_d(i))
        + w_proj * mean_{a != d} loss_proj(proj_{a_d}(i), y_d(i))   (with projections).
    L_d = sum_i mask_d(i) l_d(i), weighted by MULTI_LOSS_WEIGHTS[d] or, with learned
    uncertainty weights s_d, L_d/(2 s_d) + 0.5 log s_d. Total = sum_d / B.
    Terms: loss_cls, loss_proj (if projections), loss_mtl_log (if learned weights);
    their sum is that total.
    """

    def __init__(self, dataset_names: Sequence[str], loss_funcs: Sequence[str],
                 loss_weights: Optional[Sequence[float]] = None, proj_loss_weight: float = 1.0,
                 proj_loss_func: str = "soft_cross_entropy", use_mtl_weight: bool = False):
        super().__init__()
        if len(dataset_names) != len(loss_funcs):
            raise ValueError(f"{len(dataset_names)} datasets but {len(loss_funcs)} loss functions")
        for name in list(loss_funcs) + [proj_loss_func]:
            if name not in SOFTMAX_LOSSES + SIGMOID_LOSSES:
                raise ValueError(f"loss {name!r} not in {SOFTMAX_LOSSES + SIGMOID_LOSSES}")
        self.dataset_names = list(dataset_names)
        self.loss_funcs = dict(zip(dataset_names, loss_funcs))
        weights = list(loss_weights) if loss_weights else [1.0] * len(dataset_names)
        if len(weights) != len(dataset_names):
            raise ValueError(f"{len(dataset_names)} datasets but {len(weights)} loss weights")
        self.loss_weights = dict(zip(dataset_names, (float(w) for w in weights)))
        self.proj_loss_weight = float(proj_loss_weight)
        self.proj_loss_func = proj_loss_func
        self.use_mtl_weight = use_mtl_weight
        if use_mtl_weight:
            self.log_sigma_sq = _init_log_sigma_sq(len(dataset_names))

    def forward(self, logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor],
                proj: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
        """logits/labels: {d: [B, K_d]}; masks: {d: [B]} (1 = sample of d); proj: {"a_b": [B, K_b]}."""
        first = logits[self.dataset_names[0]]
        with _fp32_region(first):
            batch = first.shape[0]
            cls_sum = first.new_zeros((), dtype=torch.float32)
            proj_sum = cls_sum.clone()
            log_sum = cls_sum.clone()
            for idx, d in enumerate(self.dataset_names):
                mask, target = masks[d].float(), labels[d].float()
                cls_d = (mask * per_sample_loss(self.loss_funcs[d], logits[d].float(), target)).sum()
                proj_d = cls_sum.new_zeros(())
                sources = [f"{a}_{d}" for a in self.dataset_names
                           if a != d and f"{a}_{d}" in (proj or {})]
                if sources:
                    per_src = torch.stack([per_sample_loss(self.proj_loss_func, proj[k].float(), target)
                                           for k in sources], dim=1)
                    proj_d = (mask * self.proj_loss_weight * per_src.mean(dim=1)).sum()
                if self.use_mtl_weight:
                    s = self.log_sigma_sq[idx].float().exp()
                    cls_sum = cls_sum + cls_d / (2 * s)
                    proj_sum = proj_sum + proj_d / (2 * s)
                    log_sum = log_sum + 0.5 * self.log_sigma_sq[idx].float()
                else:
                    cls_sum = cls_sum + self.loss_weights[d] * cls_d
                    proj_sum = proj_sum + self.loss_weights[d] * proj_d
            terms = {"loss_cls": cls_sum / batch}
            if proj:
                terms["loss_proj"] = proj_sum / batch
            if self.use_mtl_weight:
                terms["loss_mtl_log"] = log_sum / batch
        return terms


class InformativeLoss(nn.Module):
    """Variance + covariance regulariser of the (expanded) feature z: [B, C] (B >= 2).

    z is centred over the batch; std = sqrt(var + 1e-4) (unbiased); L_std = mean(relu(1 - std));
    cov = z^T z / (B-1); L_cov = sum(offdiag(cov)^2) / C; L = std_w * L_std + cov_w * L_cov,
    or with learned weights s: L_std/(2 s0) + 0.5 log s0 + L_cov/(2 s1) + 0.5 log s1.
    """

    def __init__(self, std_weight: float = 25.0, covar_weight: float = 1.0,
                 learn_weight: bool = False):
        super().__init__()
        self.std_weight = float(std_weight)
        self.covar_weight = float(covar_weight)
        self.learn_weight = learn_weight
        if learn_weight:
            self.log_sigma_sq = _init_log_sigma_sq(2)

    def components(self, z: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Unweighted L_std and L_cov of z: [B, C]."""
        with _fp32_region(z):
            z = z.float()
            batch, channels = z.shape
            if batch < 2:
                raise ValueError(f"informative loss needs a batch of >= 2 samples, got {batch}")
            z = z - z.mean(dim=0)
            std = torch.sqrt(z.var(dim=0) + 1e-4)
            l_std = F.relu(1.0 - std).mean()
            cov = (z.t() @ z) / (batch - 1)
            off = cov.masked_fill(torch.eye(channels, dtype=torch.bool, device=z.device), 0.0)
            l_cov = off.pow(2).sum() / channels
        return {"std": l_std, "cov": l_cov}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, C] -> scalar loss (before MODEL.INF_LOSS_WEIGHT)."""
        c = self.components(z)
        if not self.learn_weight:
            return self.std_weight * c["std"] + self.covar_weight * c["cov"]
        s = self.log_sigma_sq.float().exp()
        return (c["std"] / (2 * s[0]) + c["cov"] / (2 * s[1])
                + 0.5 * self.log_sigma_sq.float().sum())


def l1_sparsity(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of |w| over all given projection matrices (scalar, float32)."""
    return torch.stack([w.float().abs().sum() for w in weights]).sum()


class Criterion(nn.Module):
    """The training objective: classification (+projection), informative, sparsity terms.

    forward(outputs, labels, masks) -> {term: scalar}; the training loss is the sum of the
    values (each is already weighted). `outputs` is the model's train-mode dict.
    Single-head models: labels may be a tensor [B, K] (soft) or [B] (indices); masks unused.

    `grad_scale` multiplies the gradient of the terms computed from parameters alone, not
    from the (gathered) batch: the L1 sparsity term and the gradients of the learned loss
    weights. With W (engine/grad_reference.py) it restores their weight relative to the
    gathered terms that the original code had.
    """

    def __init__(self, head_loss: Optional[MultiHeadLoss] = None, single_loss_func: str = "",
                 inf_loss: Optional[InformativeLoss] = None, inf_loss_weight: float = 0.1,
                 proj_weights: Optional[List[torch.Tensor]] = None,
                 proj_sparsity_weight: float = 0.0, grad_scale: float = 1.0):
        super().__init__()
        if head_loss is None and not single_loss_func:
            raise ValueError("Criterion needs a MultiHeadLoss or a single_loss_func")
        self.head_loss = head_loss
        self.single_loss_func = single_loss_func
        self.inf_loss = inf_loss
        self.inf_loss_weight = float(inf_loss_weight)
        # Plain list (not registered): these are the model's parameters, optimised there.
        self._proj_weights = list(proj_weights or [])
        self.proj_sparsity_weight = float(proj_sparsity_weight)
        self.grad_scale = float(grad_scale)
        if self.grad_scale != 1.0:  # learned loss weights: the only parameters of the criterion
            for p in self.parameters():
                p.register_hook(functools.partial(torch.mul, other=self.grad_scale))

    def forward(self, outputs: Mapping, labels, masks: Optional[Mapping] = None
                ) -> Dict[str, torch.Tensor]:
        logits = outputs["logits"]
        if self.head_loss is not None:
            terms = self.head_loss(logits, labels, masks, outputs.get("proj"))
        else:
            (single,) = logits.values()
            target = next(iter(labels.values())) if isinstance(labels, Mapping) else labels
            with _fp32_region(single):
                terms = {"loss_cls": per_sample_loss(self.single_loss_func, single.float(),
                                                     target if target.ndim == 1 else target.float()
                                                     ).mean()}
        if self.inf_loss is not None:
            if "inf_feature" not in outputs:
                raise KeyError("MODEL.USE_INF_LOSS is on but the model output has no inf_feature")
            terms["loss_inf"] = self.inf_loss_weight * self.inf_loss(outputs["inf_feature"])
        if self._proj_weights and self.proj_sparsity_weight:
            terms["loss_proj_l1"] = (self.proj_sparsity_weight * self.grad_scale
                                     * l1_sparsity(self._proj_weights))
        return terms


def build_loss(cfg, model: Optional[nn.Module] = None, grad_scale: float = 1.0) -> Criterion:
    """The Criterion of cfg.MODEL. `model` (unwrapped from DDP) supplies the projection
    weights for MULTI_PROJ_SPARSITY_LOSS_TYPE "l1". `grad_scale`: see `Criterion`."""
    m = cfg.MODEL
    head_loss = None
    if m.USE_MULTI_HEAD:
        head_loss = MultiHeadLoss(
            list(m.MULTI_DATASETS), list(m.MULTI_LOSS_FUNCS), list(m.MULTI_LOSS_WEIGHTS),
            proj_loss_weight=m.MULTI_PROJ_LOSS_WEIGHT, proj_loss_func=m.MULTI_PROJ_LOSS_FUNC,
            use_mtl_weight=m.MULTI_USE_MTL_WEIGHT)
    inf = None
    if m.USE_INF_LOSS:
        inf = InformativeLoss(m.INF_STD_WEIGHT, m.INF_COVAR_WEIGHT, m.USE_INF_LEARN_WEIGHT)
    proj_weights, sparsity = None, 0.0
    kind = m.MULTI_PROJ_SPARSITY_LOSS_TYPE.lower()
    if kind and m.USE_MULTI_HEAD and m.MULTI_ADD_CROSS_PROJ:
        if kind != "l1":
            raise ValueError(f"MODEL.MULTI_PROJ_SPARSITY_LOSS_TYPE {kind!r}: only 'l1' is supported")
        if model is None:
            raise ValueError("build_loss: the L1 projection sparsity term needs the model")
        proj_weights = model.head.projection_weights()
        sparsity = m.MULTI_PROJ_SPARSITY_LOSS_WEIGHT
    return Criterion(head_loss, "" if m.USE_MULTI_HEAD else m.LOSS_FUNC, inf,
                     m.INF_LOSS_WEIGHT, proj_weights, sparsity, grad_scale)
