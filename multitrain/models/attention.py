"""Pooling attention and the MViT block (MViTv2, Li et al. 2022; MultiTrain's variant of it).

Tokens are kept as `[B, (1+)T*H*W, C]` (an optional class token first) and the block tracks
the `(T, H, W)` grid they come from. Attention pools its queries, keys and values with a
depthwise Conv3d per head followed by a LayerNorm over the head dimension; the query's
stride sets the grid of the block's output. Relative positions (official MViTv2) are the
decomposed `q . R_h + q . R_w + q . R_t` terms added to the attention logits; here they are
built as one additive bias and handed to `scaled_dot_product_attention` as `attn_mask`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION_IMPLS = ("sdpa", "reference")
BLOCK_NORM_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability p."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """Linear -> GELU -> (dropout) -> Linear -> (dropout); names fc1/fc2 as in the original."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int,
                 drop_rate: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_features] -> [..., out_features]."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def attention_pool(x: torch.Tensor, pool: Optional[nn.Module], thw: Sequence[int],
                   has_cls: bool, norm: Optional[nn.Module] = None
                   ) -> Tuple[torch.Tensor, List[int]]:
    """Pool a token grid with `pool` (Conv3d or MaxPool3d); the class token is never pooled.

    x: [B, N, L, C] (N heads) or [B, L, C]; L = (1 if has_cls) + T*H*W.
    Returns the pooled tokens (same rank as x) and the new [T, H, W]. `norm` (over C) is
    applied after the class token is put back, so the class token is normalised too.
    """
    if pool is None:
        return x, list(thw)
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    if has_cls:
        cls_tok, x = x[:, :, :1], x[:, :, 1:]
    b, n, _, c = x.shape
    t, h, w = thw
    grid = x.reshape(b * n, t, h, w, c).permute(0, 4, 1, 2, 3)
    grid = pool(grid)
    new_thw = list(grid.shape[2:])
    x = grid.reshape(b, n, c, -1).transpose(2, 3)
    if has_cls:
        x = torch.cat((cls_tok, x), dim=2)
    if norm is not None:
        x = norm(x)
    return (x.squeeze(1) if squeeze else x), new_thw


def _rel_index(q_len: int, k_len: int) -> torch.Tensor:
    """Index into a (2*max(q,k)-1)-long table for every (query, key) position pair.

    When q and k grids differ in size, the coarser one is stretched onto the finer one's
    positions (the official MViTv2 rule); computed in float32 and truncated like it.
    """
    q_ratio = max(k_len / q_len, 1.0)
    k_ratio = max(q_len / k_len, 1.0)
    dist = torch.arange(q_len)[:, None] * q_ratio - torch.arange(k_len)[None, :] * k_ratio
    dist += (k_len - 1) * k_ratio
    return dist.long()


def _resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """table: [L, D] -> [length, D], linearly interpolated along L when the sizes differ."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear")
    return resized.squeeze(0).t()


def rel_pos_bias(q: torch.Tensor, q_thw: Sequence[int], k_thw: Sequence[int], has_cls: bool,
                 rel_pos_h: Optional[torch.Tensor] = None,
                 rel_pos_w: Optional[torch.Tensor] = None,
                 rel_pos_t: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Decomposed relative-position logits as an additive attention bias.

    q: [B, N, Lq, D] pooled (unscaled) queries, Lq = (1 if has_cls) + qt*qh*qw.
    Returns [B, N, Lq, Lk]: bias[.., (t,h,w), (t',h',w')] = q.R_h[h,h'] + q.R_w[w,w'] + q.R_t[t,t']
    (spatial terms if rel_pos_h/w are given, temporal if rel_pos_t is); zero on the class
    token's row and column.
    """
    qt, qh, qw = q_thw
    kt, kh, kw = k_thw
    b, n, _, d = q.shape
    r_q = q[:, :, 1:] if has_cls else q
    r_q = r_q.reshape(b, n, qt, qh, qw, d)
    bias = r_q.new_zeros(b, n, qt, qh, qw, kt, kh, kw)
    if rel_pos_h is not None:
        r_h = _resize_table(rel_pos_h, 2 * max(qh, kh) - 1)[_rel_index(qh, kh)]  # [qh, kh, D]
        r_w = _resize_table(rel_pos_w, 2 * max(qw, kw) - 1)[_rel_index(qw, kw)]  # [qw, kw, D]
        bias_h = torch.einsum("bnthwc,hkc->bnthwk", r_q, r_h.to(r_q.dtype))
        bias_w = torch.einsum("bnthwc,wkc->bnthwk", r_q, r_w.to(r_q.dtype))
        bias = bias + bias_h[:, :, :, :, :, None, :, None] + bias_w[:, :, :, :, :, None, None, :]
    if rel_pos_t is not None:
        r_t = _resize_table(rel_pos_t, 2 * max(qt, kt) - 1)[_rel_index(qt, kt)]  # [qt, kt, D]
        bias_t = torch.einsum("bnthwc,tkc->bnthwk", r_q, r_t.to(r_q.dtype))
        bias = bias + bias_t[:, :, :, :, :, :, None, None]
    bias = bias.reshape(b, n, qt * qh * qw, kt * kh * kw)
    if has_cls:
        bias = F.pad(bias, (1, 0, 1, 0))
    return bias


def _make_pool(channels: int, kernel: Sequence[int], stride: Sequence[int]) -> Optional[nn.Module]:
    """Depthwise Conv3d pooling, or None when there is nothing to pool (kernel and stride 1)."""
    if len(kernel) == 0 or (math.prod(kernel) == 1 and math.prod(stride) == 1):
        return None
    padding = [k // 2 for k in kernel]
    return nn.Conv3d(channels, channels, tuple(kernel), stride=tuple(stride),
                     padding=tuple(padding), groups=channels, bias=False)


class MultiScaleAttention(nn.Module):
    """Pooling attention: qkv projection, per-head Q/K/V pooling, attention, output projection.

    dim -> dim_out (dim_out != dim when the block widens inside attention). Parameter names
    (qkv, proj, pool_{q,k,v}, norm_{q,k,v}, rel_pos_{h,w,t}) are the original's.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, *, input_size: Sequence[int],
                 qkv_bias: bool = True, drop_rate: float = 0.0,
                 kernel_q: Sequence[int] = (), stride_q: Sequence[int] = (),
                 kernel_kv: Sequence[int] = (), stride_kv: Sequence[int] = (),
                 has_cls: bool = False, pool_norm_eps: float = 1e-5,
                 residual_pooling: bool = False, residual_pool_cls: bool = False,
                 rel_pos_spatial: bool = False, rel_pos_temporal: bool = False,
                 rel_pos_zero_init: bool = False, attention_impl: str = "sdpa"):
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"attention width {dim_out} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dim_out = dim_out
        head_dim = dim_out // num_heads
        self.scale = head_dim ** -0.5
        self.has_cls = has_cls
        self.residual_pooling = residual_pooling
        # MultiTrain adds the pooled query to every token, the official code skips the cls token.
        self.residual_pool_cls = residual_pool_cls
        self.attention_impl = attention_impl

        self.qkv = nn.Linear(dim, dim_out * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)
        self.proj_drop = nn.Dropout(drop_rate) if drop_rate > 0.0 else nn.Identity()

        self.pool_q = _make_pool(head_dim, kernel_q, stride_q)
        self.norm_q = nn.LayerNorm(head_dim, eps=pool_norm_eps) if self.pool_q is not None else None
        self.pool_k = _make_pool(head_dim, kernel_kv, stride_kv)
        self.norm_k = nn.LayerNorm(head_dim, eps=pool_norm_eps) if self.pool_k is not None else None
        self.pool_v = _make_pool(head_dim, kernel_kv, stride_kv)
        self.norm_v = nn.LayerNorm(head_dim, eps=pool_norm_eps) if self.pool_v is not None else None

        self.rel_pos_spatial = rel_pos_spatial
        self.rel_pos_temporal = rel_pos_temporal
        if rel_pos_spatial:
            if input_size[1] != input_size[2]:
                raise ValueError(f"relative positions need a square token grid, got {input_size}")
            size = input_size[1]
            q_size = size // stride_q[1] if len(stride_q) > 0 else size
            kv_size = size // stride_kv[1] if len(stride_kv) > 0 else size
            length = 2 * max(q_size, kv_size) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(length, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(length, head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
                nn.init.trunc_normal_(self.rel_pos_w, std=0.02)
        if rel_pos_temporal:
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_t, std=0.02)

    def _bias(self, q: torch.Tensor, q_thw, k_thw) -> Optional[torch.Tensor]:
        if not (self.rel_pos_spatial or self.rel_pos_temporal):
            return None
        return rel_pos_bias(
            q, q_thw, k_thw, self.has_cls,
            rel_pos_h=self.rel_pos_h if self.rel_pos_spatial else None,
            rel_pos_w=self.rel_pos_w if self.rel_pos_spatial else None,
            rel_pos_t=self.rel_pos_t if self.rel_pos_temporal else None,
        )

    def forward(self, x: torch.Tensor, thw: Sequence[int]) -> Tuple[torch.Tensor, List[int]]:
        """x: [B, L, dim] on grid thw -> ([B, Lq, dim_out], q grid [T', H', W'])."""
        b, length, _ = x.shape
        qkv = self.qkv(x).reshape(b, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B, heads, L, head_dim]
        q, q_thw = attention_pool(q, self.pool_q, thw, self.has_cls, self.norm_q)
        k, k_thw = attention_pool(k, self.pool_k, thw, self.has_cls, self.norm_k)
        v, _ = attention_pool(v, self.pool_v, thw, self.has_cls, self.norm_v)

        bias = self._bias(q, q_thw, k_thw)
        if self.attention_impl == "sdpa":
            if bias is not None:
                bias = bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        elif self.attention_impl == "reference":
            # The plain formulation, kept as the yardstick for the fused path in tests.
            logits = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                logits = logits + bias
            out = logits.softmax(dim=-1) @ v
        else:
            raise ValueError(f"attention_impl {self.attention_impl!r} not in {ATTENTION_IMPLS}")

        if self.residual_pooling:
            if self.has_cls and not self.residual_pool_cls:
                out = torch.cat((out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]), dim=2)
            else:
                out = out + q
        out = out.transpose(1, 2).reshape(b, -1, self.dim_out)
        return self.proj_drop(self.proj(out)), q_thw


class MultiScaleBlock(nn.Module):
    """One MViT block: pooling attention and MLP, each with a (pooled) residual path.

    How a width change dim -> dim_out is made (`expand`):
      "front"  (MultiTrain CHANNEL_EXPAND_FRONT): attention outputs dim_out; the skip path is
               `proj_max_pool(x)` on the un-normalised input, then max-pooled.
      "in_att" (official DIM_MUL_IN_ATT): attention outputs dim_out; skip is `proj(norm1(x))`.
      "none"   (MViTv1): attention keeps dim; the MLP widens and its residual is `proj(norm2(x))`.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, *, input_size: Sequence[int],
                 mlp_ratio: float = 4.0, drop_rate: float = 0.0, drop_path: float = 0.0,
                 stride_q: Sequence[int] = (), expand: str = "front", has_cls: bool = False,
                 **attn_kwargs):
        super().__init__()
        if expand not in ("front", "in_att", "none"):
            raise ValueError(f"expand must be front, in_att or none, got {expand!r}")
        self.dim, self.dim_out = dim, dim_out
        self.expand = expand if dim != dim_out else "none"
        self.has_cls = has_cls
        att_dim = dim_out if expand in ("front", "in_att") else dim
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = MultiScaleAttention(dim, att_dim, num_heads, input_size=input_size,
                                        drop_rate=drop_rate, stride_q=stride_q, has_cls=has_cls,
                                        **attn_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(att_dim, eps=BLOCK_NORM_EPS)
        self.mlp = Mlp(att_dim, int(att_dim * mlp_ratio), dim_out, drop_rate=drop_rate)
        if dim != dim_out:
            if expand == "front":
                self.proj_max_pool = nn.Linear(dim, dim_out)
            else:
                self.proj = nn.Linear(dim, dim_out)
        self.pool_skip = None
        if len(stride_q) > 0 and math.prod(stride_q) > 1:
            kernel = [s + 1 if s > 1 else s for s in stride_q]
            self.pool_skip = nn.MaxPool3d(kernel, tuple(stride_q), [k // 2 for k in kernel])

    def forward(self, x: torch.Tensor, thw: Sequence[int]) -> Tuple[torch.Tensor, List[int]]:
        """x: [B, L, dim] on grid thw -> ([B, L', dim_out], new grid)."""
        x_norm = self.norm1(x)
        x_att, new_thw = self.attn(x_norm, thw)
        if self.expand == "front":
            x = self.proj_max_pool(x)
        elif self.expand == "in_att":
            x = self.proj(x_norm)
        skip, _ = attention_pool(x, self.pool_skip, thw, self.has_cls)
        x = skip + self.drop_path(x_att)
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if self.dim != self.dim_out and self.expand == "none":
            x = self.proj(x_norm)
        return x + self.drop_path(x_mlp), new_thw
