"""Models: MViTv2 (MultiTrain and official variants), heads, losses.

`build_model(cfg)` and `build_loss(cfg, model)` are the only places that read the config.
"""
from __future__ import annotations

from typing import Dict

from .heads import MultiDatasetHead, TransformerBasicHead
from .losses import build_loss
from .model_info import log_model_info, model_info
from .mvit import MViT, build_expander

__all__ = [
    "build_model", "build_loss", "mvit_kwargs_from_cfg", "model_variant", "MViT",
    "log_model_info", "model_info",
]

_OFFICIAL_KEYS = ("DIM_MUL_IN_ATT", "RESIDUAL_POOLING", "REL_POS_SPATIAL", "REL_POS_TEMPORAL")
_MULTITRAIN_KEYS = ("CHANNEL_EXPAND_FRONT", "Q_POOL_ALL", "Q_POOL_RESIDUAL")


def model_variant(cfg) -> str:
    """"official" (PySlowFast MViTv2 keys set), else "multitrain"; both at once is an error."""
    official = [k for k in _OFFICIAL_KEYS if cfg.MVIT[k]]
    multitrain = [k for k in _MULTITRAIN_KEYS if cfg.MVIT[k]]
    if official and multitrain:
        raise ValueError(
            f"MVIT.{', MVIT.'.join(multitrain)} (MultiTrain variant) cannot be combined with "
            f"MVIT.{', MVIT.'.join(official)} (official MViTv2 variant); pick one variant")
    return "official" if official else "multitrain"


def mvit_kwargs_from_cfg(cfg) -> Dict:
    """The backbone keyword arguments of `MViT` from cfg.MVIT / cfg.DATA / cfg.MODEL."""
    m = cfg.MVIT
    variant = model_variant(cfg)
    if m.CHANNEL_EXPAND_FRONT:
        expand = "front"
    elif m.DIM_MUL_IN_ATT:
        expand = "in_att"
    else:
        expand = "none"
    return dict(
        num_frames=cfg.DATA.NUM_FRAMES, crop_size=cfg.DATA.TRAIN_CROP_SIZE,
        in_chans=cfg.DATA.INPUT_CHANNEL_NUM[0], patch_kernel=list(m.PATCH_KERNEL),
        patch_stride=list(m.PATCH_STRIDE), patch_padding=list(m.PATCH_PADDING),
        embed_dim=m.EMBED_DIM, num_heads=m.NUM_HEADS, depth=m.DEPTH, mlp_ratio=m.MLP_RATIO,
        qkv_bias=m.QKV_BIAS, drop_rate=m.DROPOUT_RATE, drop_path_rate=m.DROPPATH_RATE,
        dim_mul=m.DIM_MUL, head_mul=m.HEAD_MUL, pool_q_stride=m.POOL_Q_STRIDE,
        pool_kv_stride=m.POOL_KV_STRIDE, pool_kv_stride_adaptive=m.POOL_KV_STRIDE_ADAPTIVE,
        pool_kvq_kernel=m.POOL_KVQ_KERNEL, variant=variant, expand=expand,
        q_pool_all=m.Q_POOL_ALL, residual_pooling=m.Q_POOL_RESIDUAL or m.RESIDUAL_POOLING,
        cls_embed_on=m.CLS_EMBED_ON, sep_pos_embed=m.SEP_POS_EMBED, use_abs_pos=m.USE_ABS_POS,
        rel_pos_spatial=m.REL_POS_SPATIAL, rel_pos_temporal=m.REL_POS_TEMPORAL,
        rel_pos_zero_init=m.REL_POS_ZERO_INIT, attention_impl=m.ATTENTION_IMPL,
        act_checkpoint=cfg.MODEL.ACT_CHECKPOINT,
    )


def _final_width(kwargs: Dict) -> int:
    """Width of the pooled feature, without building the backbone."""
    from .mvit import block_layout
    specs = block_layout(
        depth=kwargs["depth"], embed_dim=kwargs["embed_dim"], num_heads=kwargs["num_heads"],
        patch_dims=[1, 1, 1], dim_mul=kwargs["dim_mul"], head_mul=kwargs["head_mul"],
        expand=kwargs["expand"], width_rule=kwargs["variant"])
    return specs[-1].dim_out if specs else kwargs["embed_dim"]


def build_model(cfg) -> MViT:
    """The MViT of cfg with its head(s) and, with MODEL.USE_INF_LOSS, the expander."""
    if cfg.MODEL.ARCH != "mvit":
        raise ValueError(f"MODEL.ARCH {cfg.MODEL.ARCH!r}: only 'mvit' is implemented")
    kwargs = mvit_kwargs_from_cfg(cfg)
    dim = _final_width(kwargs)
    mc = cfg.MODEL
    if mc.USE_MULTI_HEAD:
        head = MultiDatasetHead(dim, list(mc.MULTI_DATASETS), list(mc.MULTI_NUM_CLASSES),
                                list(mc.MULTI_HEAD_ACT), dropout_rate=mc.DROPOUT_RATE,
                                use_mlp=mc.MULTI_USE_MLP, cross_proj=mc.MULTI_ADD_CROSS_PROJ)
    else:
        head = TransformerBasicHead(dim, mc.NUM_CLASSES, dropout_rate=mc.DROPOUT_RATE,
                                    act=mc.HEAD_ACT, name=cfg.TRAIN.DATASET)
    expander = build_expander(dim) if (mc.USE_INF_LOSS and mc.USE_INF_EXPANDER) else None
    return MViT(head=head, expander=expander, return_inf_feature=mc.USE_INF_LOSS, **kwargs)
