"""MViTv2 for video, in the two variants MultiTrain uses.

"MViTv2: Improved Multiscale Vision Transformers for Classification and Detection",
Li, Wu, Fan, Mangalam, Xiong, Malik, Feichtenhofer, CVPR 2022 (arXiv:2112.01526), as
modified in "Multi-dataset Training of Transformers for Robust Action Recognition",
Liang, Zhang, Zhang, Shen, NeurIPS 2022.

Reading order: the stage layout (`block_layout`: widths, heads and pooling strides per
block), the patch embedding, then `MViT` (positions, blocks, final norm and mean/cls
pooling, heads, expander). The blocks live in `attention.py`, the heads in `heads.py`.

Variants (see docs/MODEL.md):
  "multitrain": separate space/time position tables, widening inside attention with a linear
      skip (`proj_max_pool`), Q pooled in every block, residual Q pooling, pool norms eps 1e-5.
  "official":   PySlowFast MViTv2: decomposed relative positions, class token, residual
      pooling (cls token excluded), widening inside attention with skip `proj(norm1(x))`,
      pool norms eps 1e-6.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .attention import ATTENTION_IMPLS, BLOCK_NORM_EPS, Mlp, MultiScaleBlock

VARIANTS = ("multitrain", "official")
POOL_NORM_EPS = {"multitrain": 1e-5, "official": 1e-6}
EXPANDER_HIDDEN = 4096
MODEL_OUTPUTS = ("train", "probs")  # MViT.forward(output=...): training dict or probabilities


def round_width(width: float, multiplier: float, divisor: int = 1) -> int:
    """width * multiplier rounded half up to a multiple of divisor (+divisor if < 90%)."""
    if not multiplier:
        return int(width)
    width = width * multiplier
    out = max(1, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


@dataclass
class BlockSpec:
    """Shape of one block: widths, heads, pooling, and the token grid it receives."""
    dim: int
    dim_out: int
    num_heads: int
    kernel_q: List[int]
    stride_q: List[int]
    kernel_kv: List[int]
    stride_kv: List[int]
    input_size: List[int]
    drop_path: float


def _indexed(pairs: Sequence[Sequence[float]], depth: int, what: str) -> List[float]:
    """[[block, factor], ...] -> per-block factors (1.0 elsewhere), depth+1 long."""
    out = [1.0] * (depth + 1)
    for pair in pairs:
        idx = int(pair[0])
        if not 0 <= idx <= depth:
            raise ValueError(f"MVIT.{what}: block index {idx} outside [0, {depth}]")
        out[idx] = float(pair[1])
    return out


def _pool_schedule(depth, pool_q_stride, pool_kv_stride, pool_kv_stride_adaptive,
                   pool_kvq_kernel, q_pool_all):
    """Per-block (kernel_q, stride_q, kernel_kv, stride_kv); [] means no pooling."""
    def kernel_for(stride):
        if pool_kvq_kernel:
            return [int(k) for k in pool_kvq_kernel]
        return [s + 1 if s > 1 else s for s in stride]

    stride_q = [[] for _ in range(depth)]
    kernel_q = [[] for _ in range(depth)]
    for entry in pool_q_stride:
        i = int(entry[0])
        if not 0 <= i < depth:
            raise ValueError(f"MVIT.POOL_Q_STRIDE: block index {i} outside [0, {depth})")
        stride_q[i] = [int(s) for s in entry[1:]]
        kernel_q[i] = kernel_for(stride_q[i])
    if q_pool_all:
        if not pool_kvq_kernel:
            raise ValueError("MVIT.Q_POOL_ALL needs MVIT.POOL_KVQ_KERNEL")
        for i in range(depth):
            if not kernel_q[i]:
                kernel_q[i], stride_q[i] = kernel_for([1, 1, 1]), [1, 1, 1]

    kv_entries = [list(e) for e in pool_kv_stride]
    if pool_kv_stride_adaptive:
        running = [int(s) for s in pool_kv_stride_adaptive]
        kv_entries = []
        for i in range(depth):
            if stride_q[i]:
                running = [max(r // s, 1) for r, s in zip(running, stride_q[i])]
            kv_entries.append([i] + running)
    stride_kv = [[] for _ in range(depth)]
    kernel_kv = [[] for _ in range(depth)]
    for entry in kv_entries:
        i = int(entry[0])
        stride_kv[i] = [int(s) for s in entry[1:]]
        kernel_kv[i] = kernel_for(stride_kv[i])
    return kernel_q, stride_q, kernel_kv, stride_kv


def block_layout(*, depth: int, embed_dim: int, num_heads: int, patch_dims: Sequence[int],
                 dim_mul: Sequence = (), head_mul: Sequence = (), pool_q_stride: Sequence = (),
                 pool_kv_stride: Sequence = (), pool_kv_stride_adaptive: Sequence = (),
                 pool_kvq_kernel: Optional[Sequence[int]] = None, q_pool_all: bool = False,
                 expand: str = "front", width_rule: str = "multitrain",
                 drop_path_rate: float = 0.0) -> List[BlockSpec]:
    """Widths, heads and pooling of every block, from the MVIT.* lists.

    `expand` front/in_att: block i widens by DIM_MUL[i] inside its attention; none (MViTv1):
    block i's MLP widens to block i+1's width. `width_rule` reproduces each code base's
    rounding divisor ("multitrain" or "official"); they differ only for unusual head counts.
    """
    dmul = _indexed(dim_mul, depth, "DIM_MUL")
    hmul = _indexed(head_mul, depth, "HEAD_MUL")
    kq, sq, kkv, skv = _pool_schedule(depth, pool_q_stride, pool_kv_stride,
                                      pool_kv_stride_adaptive, pool_kvq_kernel, q_pool_all)
    dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist() if depth > 0 else []
    specs, heads, dim, dim_out = [], num_heads, embed_dim, embed_dim
    size = list(patch_dims)
    for i in range(depth):
        heads = round_width(heads, hmul[i])
        if expand == "none":
            dim_out = round_width(dim, dmul[i + 1], divisor=round_width(heads, hmul[i + 1]))
        elif width_rule == "multitrain":
            dim = round_width(dim, dmul[i - 1] if i > 0 else 1.0, divisor=heads)
            dim_out = round_width(dim_out, dmul[i], divisor=heads)
        else:
            dim_out = round_width(dim, dmul[i], divisor=round_width(heads, hmul[i]))
        specs.append(BlockSpec(dim, dim_out, heads, kq[i], sq[i], kkv[i], skv[i],
                               list(size), dpr[i]))
        if sq[i]:
            size = [s // st for s, st in zip(size, sq[i])]
        if expand == "none" or width_rule != "multitrain":
            dim = dim_out
    return specs


class PatchEmbed(nn.Module):
    """Conv3d patchify: [B, C, T, H, W] -> ([B, T'H'W', dim], [T', H', W'])."""

    def __init__(self, in_chans: int, dim: int, kernel, stride, padding):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, tuple(kernel), tuple(stride), tuple(padding))

    def forward(self, x: torch.Tensor):
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), list(x.shape[2:])


class MViT(nn.Module):
    """MViT backbone + classification head(s) (+ expander for the informative loss).

    Train-mode forward returns what the losses need (see `forward`); eval-mode forward
    returns probabilities. Parameter names equal the original MultiTrain / PySlowFast ones.
    """

    def __init__(self, *, head: nn.Module, num_frames: int, crop_size: int, in_chans: int = 3,
                 patch_kernel=(3, 7, 7), patch_stride=(2, 4, 4), patch_padding=(1, 3, 3),
                 embed_dim: int = 96, num_heads: int = 1, depth: int = 16,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, dim_mul=(), head_mul=(), pool_q_stride=(),
                 pool_kv_stride=(), pool_kv_stride_adaptive=(), pool_kvq_kernel=None,
                 variant: str = "multitrain", expand: str = "front", q_pool_all: bool = False,
                 residual_pooling: bool = False, cls_embed_on: bool = False,
                 sep_pos_embed: bool = True, use_abs_pos: bool = True,
                 rel_pos_spatial: bool = False, rel_pos_temporal: bool = False,
                 rel_pos_zero_init: bool = False, expander: Optional[nn.Module] = None,
                 return_inf_feature: bool = False, attention_impl: str = "sdpa",
                 act_checkpoint: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} not in {VARIANTS}")
        if attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl {attention_impl!r} not in {ATTENTION_IMPLS}")
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_kernel, patch_stride,
                                      patch_padding)
        self.patch_dims = [num_frames // patch_stride[0], crop_size // patch_stride[1],
                           crop_size // patch_stride[2]]
        self.cls_embed_on = cls_embed_on
        self.sep_pos_embed = sep_pos_embed and use_abs_pos
        self.abs_pos_embed = use_abs_pos and not sep_pos_embed
        self.act_checkpoint = act_checkpoint
        self.return_inf_feature = return_inf_feature
        self._init_tokens(embed_dim)
        self.pos_drop = nn.Dropout(drop_rate) if drop_rate > 0.0 else nn.Identity()

        self.specs = block_layout(
            depth=depth, embed_dim=embed_dim, num_heads=num_heads, patch_dims=self.patch_dims,
            dim_mul=dim_mul, head_mul=head_mul, pool_q_stride=pool_q_stride,
            pool_kv_stride=pool_kv_stride, pool_kv_stride_adaptive=pool_kv_stride_adaptive,
            pool_kvq_kernel=pool_kvq_kernel, q_pool_all=q_pool_all, expand=expand,
            width_rule=variant, drop_path_rate=drop_path_rate)
        self.blocks = nn.ModuleList(
            MultiScaleBlock(
                s.dim, s.dim_out, s.num_heads, input_size=s.input_size, mlp_ratio=mlp_ratio,
                drop_rate=drop_rate, drop_path=s.drop_path, stride_q=s.stride_q, expand=expand,
                has_cls=cls_embed_on, qkv_bias=qkv_bias, kernel_q=s.kernel_q,
                kernel_kv=s.kernel_kv, stride_kv=s.stride_kv,
                pool_norm_eps=POOL_NORM_EPS[variant], residual_pooling=residual_pooling,
                residual_pool_cls=(variant == "multitrain"), rel_pos_spatial=rel_pos_spatial,
                rel_pos_temporal=rel_pos_temporal, rel_pos_zero_init=rel_pos_zero_init,
                attention_impl=attention_impl)
            for s in self.specs)
        self.num_features = self.specs[-1].dim_out if self.specs else embed_dim
        self.norm = nn.LayerNorm(self.num_features, eps=BLOCK_NORM_EPS)
        self.head = head
        if expander is not None:
            self.expander = expander
        self._init_weights()

    def _init_tokens(self, dim: int) -> None:
        """Class token and absolute position tables (sized from the configured input)."""
        t, h, w = self.patch_dims
        if self.cls_embed_on:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if self.sep_pos_embed:
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, dim))
            if self.cls_embed_on:
                self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, dim))
        elif self.abs_pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, t * h * w + int(self.cls_embed_on), dim))

    def _init_weights(self) -> None:
        """Linear: truncated normal std 0.02, bias 0; LayerNorm 1/0; position tables std 0.02."""
        for name in ("pos_embed_spatial", "pos_embed_temporal", "pos_embed_class", "pos_embed",
                     "cls_token"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_attention_impl(self, impl: str) -> None:
        """Switch every block between "sdpa" (fused kernels) and "reference" (plain softmax)."""
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl {impl!r} not in {ATTENTION_IMPLS}")
        for blk in self.blocks:
            blk.attn.attention_impl = impl

    def _add_positions(self, x: torch.Tensor, thw: List[int]) -> torch.Tensor:
        """x: [B, (1+)N, C] -> x + absolute positions (if any)."""
        if not (self.sep_pos_embed or self.abs_pos_embed):
            return x
        if list(thw) != self.patch_dims:
            raise ValueError(
                f"input gives a {thw} token grid but the position tables were sized for "
                f"{self.patch_dims} (DATA.NUM_FRAMES / DATA.TRAIN_CROP_SIZE); feed clips of that size")
        if self.abs_pos_embed:
            return x + self.pos_embed
        t, h, w = self.patch_dims
        pos = (self.pos_embed_spatial.repeat(1, t, 1)
               + torch.repeat_interleave(self.pos_embed_temporal, h * w, dim=1))
        if self.cls_embed_on:
            pos = torch.cat((self.pos_embed_class, pos), dim=1)
        return x + pos

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T, H, W] -> pooled feature [B, C_last] (cls token, or mean of tokens)."""
        x, thw = self.patch_embed(x)
        if self.cls_embed_on:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.pos_drop(self._add_positions(x, thw))
        use_ckpt = self.act_checkpoint and self.training and torch.is_grad_enabled()
        for blk in self.blocks:
            if use_ckpt:
                x, thw = checkpoint(blk, x, thw, use_reentrant=False)
            else:
                x, thw = blk(x, thw)
        x = self.norm(x)
        return x[:, 0] if self.cls_embed_on else x.mean(dim=1)

    def forward(self, x, dataset_name: Optional[str] = None, output: str = "train"):
        """What `output` asks for, in train and eval mode alike (the mode only switches
        dropout, drop path and activation checkpointing):

        "train": {"logits": {d: [B, K_d]}, "proj": {"a_b": [B, K_b]}, ["inf_feature": [B, C]]};
        "probs": probabilities [B, K_d] of head `dataset_name` (the single head answers for
        any name), or {d: [B, K_d]} for every head when no name is given.
        x: [B, 3, T, H, W] (a one-element list is unwrapped).
        """
        if output not in MODEL_OUTPUTS:
            raise ValueError(f"model output {output!r} not in {MODEL_OUTPUTS}")
        if dataset_name is not None and output != "probs":
            raise ValueError("dataset_name selects the head of output='probs'")
        if isinstance(x, (list, tuple)):
            x = x[0]
        feat = self.forward_features(x)
        if output == "probs":
            return self.head.predict(feat, dataset_name)
        logits = self.head(feat)
        out: Dict[str, object] = {"logits": logits, "proj": self.head.project(logits)}
        if self.return_inf_feature:
            out["inf_feature"] = self.expander(feat) if hasattr(self, "expander") else feat
        return out


def build_expander(dim: int) -> nn.Module:
    """dim -> 4096 -> dim MLP (GELU, no dropout, no norm) on the pooled feature."""
    return Mlp(dim, EXPANDER_HIDDEN, dim, drop_rate=0.0)
