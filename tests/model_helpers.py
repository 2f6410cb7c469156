"""Small models of both variants, built without a config (plain keyword arguments), and the
original's MultiTrain fixture assembled from the repository's reduced copies."""
import os

import torch

from multitrain.config import get_cfg
from multitrain.models.heads import MultiDatasetHead, TransformerBasicHead
from multitrain.models.mvit import EXPANDER_HIDDEN, MViT, build_expander

from mt_testing import CONFORMANCE, FIXTURES, SHARED  # noqa: F401  (re-exported)

REFERENCE_CONFIGS = os.path.join(SHARED, "reference", "configs")
DATASETS = ["kinetics", "mit", "ssv2"]
CLASSES = [5, 4, 3]


def multitrain_tiny(*, use_mlp=True, cross_proj=True, expander=True, drop_path=0.0,
                    act_checkpoint=False, attention_impl="sdpa", num_frames=8, crop=32):
    """MultiTrain variant: 4 blocks, widths 16-32-32-64, 8x32x32 input, three heads."""
    head = MultiDatasetHead(64, DATASETS, CLASSES, ["softmax"] * 3, dropout_rate=0.0,
                            use_mlp=use_mlp, cross_proj=cross_proj)
    return MViT(
        head=head, expander=build_expander(64) if expander else None,
        return_inf_feature=expander, num_frames=num_frames, crop_size=crop, embed_dim=16,
        num_heads=1, depth=4, dim_mul=[[1, 2.0], [3, 2.0]], head_mul=[[1, 2.0], [3, 2.0]],
        pool_q_stride=[[1, 1, 2, 2], [3, 1, 2, 2]], pool_kv_stride_adaptive=[1, 4, 4],
        pool_kvq_kernel=[3, 3, 3], variant="multitrain", expand="front", q_pool_all=True,
        residual_pooling=True, cls_embed_on=False, sep_pos_embed=True,
        drop_path_rate=drop_path, attention_impl=attention_impl, act_checkpoint=act_checkpoint)


def official_tiny(*, temporal_stride=False, rel_pos=(True, True), attention_impl="sdpa",
                  drop_path=0.0, act_checkpoint=False, crop=32):
    """Official variant: cls token, relative positions, 3 blocks with 2 -> 4 heads."""
    q_stride = [[0, 1, 1, 1], [1, 2 if temporal_stride else 1, 2, 2], [2, 1, 1, 1]]
    return MViT(
        head=TransformerBasicHead(48, 5, act="softmax", name="kinetics"), num_frames=8,
        crop_size=crop, embed_dim=24, num_heads=2, depth=3, dim_mul=[[1, 2.0]],
        head_mul=[[1, 2.0]], pool_q_stride=q_stride, pool_kv_stride_adaptive=[1, 4, 4],
        pool_kvq_kernel=[3, 3, 3], variant="official", expand="in_att", residual_pooling=True,
        cls_embed_on=True, sep_pos_embed=False, use_abs_pos=False,
        rel_pos_spatial=rel_pos[0], rel_pos_temporal=rel_pos[1], drop_path_rate=drop_path,
        attention_impl=attention_impl, act_checkpoint=act_checkpoint)


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Add noise to every parameter so that zero-initialised ones matter too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def labels_and_masks(batch: int, seed: int = 0):
    """One-hot labels {d: [B, K_d]} and masks {d: [B]}: sample i belongs to dataset i mod 3."""
    g = torch.Generator().manual_seed(seed)
    labels, masks = {}, {}
    for j, (d, k) in enumerate(zip(DATASETS, CLASSES)):
        idx = torch.randint(0, k, (batch,), generator=g)
        labels[d] = torch.nn.functional.one_hot(idx, k).float()
        masks[d] = (torch.arange(batch) % 3 == j).float()
    return labels, masks


def tiny_cfg():
    """Config of `multitrain_tiny` (MultiTrain variant, MLP heads, projections, expander, L1)."""
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = 8, 32
    m = cfg.MVIT
    m.DEPTH, m.EMBED_DIM, m.NUM_HEADS = 4, 16, 1
    m.DIM_MUL, m.HEAD_MUL = [[1, 2.0], [3, 2.0]], [[1, 2.0], [3, 2.0]]
    m.POOL_Q_STRIDE, m.POOL_KV_STRIDE_ADAPTIVE = [[1, 1, 2, 2], [3, 1, 2, 2]], [1, 4, 4]
    m.POOL_KVQ_KERNEL, m.PATCH_PADDING = [3, 3, 3], [1, 3, 3]
    m.CLS_EMBED_ON, m.SEP_POS_EMBED = False, True
    m.CHANNEL_EXPAND_FRONT = m.Q_POOL_ALL = m.Q_POOL_RESIDUAL = True
    mc = cfg.MODEL
    mc.USE_MULTI_HEAD, mc.MULTI_DATASETS, mc.MULTI_NUM_CLASSES = True, DATASETS, CLASSES
    mc.MULTI_HEAD_ACT, mc.MULTI_LOSS_FUNCS = ["softmax"] * 3, ["soft_cross_entropy"] * 3
    mc.MULTI_LOSS_WEIGHTS, mc.MULTI_USE_MLP, mc.MULTI_ADD_CROSS_PROJ = [1, 1, 1], True, True
    mc.USE_INF_LOSS = mc.USE_INF_EXPANDER = True
    mc.MULTI_PROJ_SPARSITY_LOSS_TYPE = "l1"
    return cfg


def _zero_padded_expander(kept: dict, hidden: int) -> dict:
    """The expander tensors of `kept` (its first hidden units) at full width, the other hidden
    units' weights and biases zero (so those units add nothing to the output)."""
    fc1_w, fc1_b, fc2_w = (kept[f"expander.{k}"] for k in ("fc1.weight", "fc1.bias", "fc2.weight"))
    missing = hidden - fc1_w.shape[0]
    return {"expander.fc1.weight": torch.cat([fc1_w, fc1_w.new_zeros(missing, fc1_w.shape[1])]),
            "expander.fc1.bias": torch.cat([fc1_b, fc1_b.new_zeros(missing)]),
            "expander.fc2.weight": torch.cat([fc2_w, fc2_w.new_zeros(fc2_w.shape[0], missing)], dim=1),
            "expander.fc2.bias": kept["expander.fc2.bias"]}


def multitrain_first_clip_fixture(conformance_dir: str) -> dict:
    """The original's multitrain_tiny fixture for its first clip, in the format `check_fixture`
    reads, assembled from the repository's reduced copies (tests/fixtures/README.md): the
    original's model_state (original key names) with the expander's hidden units that are not
    stored set to zero, its first input clip, and its per-sample outputs for that clip, the
    expander's output less the stored sum of the zeroed units (`expander_rest`)."""
    backbone = torch.load(os.path.join(conformance_dir, "multitrain_tiny_backbone.pt"), weights_only=True)
    heads = torch.load(os.path.join(conformance_dir, "multitrain_tiny_heads.pt"), weights_only=True)
    state = {**backbone["backbone_state"], **heads["head_state"],
             **_zero_padded_expander(heads["expander_state"], EXPANDER_HIDDEN)}
    outputs = dict(heads["outputs"])
    outputs["train_inf_feature"] = outputs["train_inf_feature"] - heads["expander_rest"]
    return {"config_file": heads["config_file"], "config_overrides": heads["config_overrides"],
            "model_state": state, "input": backbone["input"], "outputs": outputs}
