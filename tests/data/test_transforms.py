"""The clip recipes on real decoded frames: shapes, ranges, determinism, statistics, views.

Frames come from real H.264 files made with PyAV and decoded by the project's reader.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from benchmarks.pil_baseline import pil_eval_view, pil_train_clip
from multitrain.transforms import (EvalViewTransform, TrainClipRecipe, build_clip_transform,
                                   eval_view, uniform_crop_offsets)
from multitrain.transforms import geometry as G
from multitrain.transforms import rand_augment as RA
from multitrain.transforms.color import use_cpu_kernels
from multitrain.transforms.erasing import apply_erasing, draw_erasing_params

from multitrain.decoding.decoder import open_video
from mt_testing import write_pattern_video

SEED_AA = "rand-m7-n4-mstd0.5-inc1"
MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
LOW, HIGH = (0 - 0.45) / 0.225, (1 - 0.45) / 0.225  # normalised range of [0, 255]


def decode(path, n):
    with open_video(str(path), "decord", num_threads=1) as reader:
        return reader.get_frames(list(range(n)))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the loader workers
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clip320(tmp_path_factory):
    """uint8 [4, 320, 426, 3]: the original recipe's 320p input."""
    path = tmp_path_factory.mktemp("recipe") / "v320.mp4"
    write_pattern_video(path, 4, 320, 426)
    return decode(path, 4)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """uint8 [3, 90, 120, 3]."""
    path = tmp_path_factory.mktemp("recipe") / "small.mp4"
    write_pattern_video(path, 3, 90, 120)
    return decode(path, 3)


def seed_recipe(**kw):
    args = dict(crop_size=224, jitter_scales=(256, 320), relative_scale=(0.08, 1.0),
                relative_aspect=(0.75, 1.3333), rand_augment=SEED_AA, re_prob=0.25)
    args.update(kw)
    return TrainClipRecipe(**args)


def small_recipe(**kw):
    args = dict(crop_size=48, jitter_scales=(56, 70), relative_scale=(0.08, 1.0),
                relative_aspect=(0.75, 1.3333), rand_augment=SEED_AA, re_prob=0.25)
    args.update(kw)
    return TrainClipRecipe(**args)


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- train recipe
def test_train_clip_shape_dtype_and_range(clip320):
    recipe = seed_recipe(re_prob=0.0)
    for seed in range(3):
        out = recipe(clip320, gen(seed))
        assert out.shape == (3, 4, 224, 224) and out.dtype == torch.float32
        assert out.is_contiguous() and torch.isfinite(out).all()
        assert out.min() >= LOW - 1e-5 and out.max() <= HIGH + 1e-5
    erased = seed_recipe(re_prob=1.0)(clip320, gen(0))
    assert erased.min() < LOW or erased.max() > HIGH  # normal noise leaves [0, 255]


def test_same_seed_same_clip_other_seed_differs(small):
    recipe = small_recipe()
    a, b = recipe(small, gen(7)), recipe(small, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, recipe(small, gen(8)))
    # draw/apply split: params drawn once give the same clip every time
    params = recipe.draw(gen(3), small.shape[1:3])
    assert torch.equal(recipe.apply(small, params), recipe.apply(small, params))


def test_recipe_matches_per_frame_pil_baseline(small):
    """Same draws through the original's per-frame PIL pipeline (normalise the full frame,
    then crop/resize): equal up to float rounding when no geometric op is drawn; with
    one, PIL-vs-ours off-by-one levels (see test_transforms_ops) leave tiny differences."""
    recipe = small_recipe(re_prob=0.5)
    checked = 0
    for seed in range(30):
        params = recipe.draw(gen(seed), small.shape[1:3])
        ours, ref = recipe.apply(small, params), pil_train_clip(small, params, recipe)
        diff = (ours - ref).abs()
        geometric = any(n in RA._GEOMETRIC for n, *_ in params.rand_augment.active())
        if not geometric:
            assert diff.max() < 1e-4, params
            checked += 1
        else:
            assert diff.mean() < 0.01, params
    assert checked >= 5


def test_device_code_path_equals_cpu_path(small):
    """The code path used on accelerators (no PIL kernels, gather warps) gives the same
    clip on CPU tensors, within the float rounding of the warps."""
    recipe = small_recipe()
    for seed in range(10):
        params = recipe.draw(gen(seed), small.shape[1:3])
        cpu = recipe.apply(small, params)
        with use_cpu_kernels(False):
            generic = recipe.apply(small, params)
        assert (cpu - generic).abs().max() <= 1.0 / (255 * 0.225) + 1e-5, params


def test_rand_augment_region_equals_crop_of_full(clip320):
    """Computing only the crop box of the augmented frames changes nothing."""
    policy = RA.parse_rand_augment(SEED_AA)
    for seed in range(12):
        g = gen(seed)
        params = RA.draw_rand_augment_params(g, policy)
        box = G.draw_resized_crop_box(g, (320, 426), (0.08, 1.0), (0.75, 1.3333))
        full = RA.apply_rand_augment(clip320, params)
        t, l, h, w = box
        assert torch.equal(RA.apply_rand_augment(clip320, params, out_box=box),
                           full[:, t:t + h, l:l + w]), (params.active(), box)


def test_apply_many_handles_different_sizes(small, clip320):
    recipe = small_recipe()
    clips = [small, clip320[:3]]
    params = [recipe.draw(gen(i), c.shape[1:3]) for i, c in enumerate(clips)]
    out = recipe.apply_many(clips, params)
    assert out.shape == (2, 3, 3, 48, 48)
    for i in range(2):
        assert torch.equal(out[i], recipe.apply(clips[i], params[i]))
    with pytest.raises(ValueError, match="drawn for frames"):
        recipe.apply(clip320, params[0])


def _one_op(params, op):
    return dataclasses.replace(params, rand_augment=RA.RandAugmentParams(
        ops=(op,), applied=(True,), magnitudes=(7.0,), signs=(1,), kernels=("bicubic",)))


def test_crop_first_is_cheaper_order_not_the_same_clip(clip320):
    """Same crop box, resize and flip as the paper order; RandAugment moves after the crop,
    which keeps a pixel-wise op's result and changes a geometric one's."""
    paper, fast = seed_recipe(re_prob=0.0), seed_recipe(crop_first=True, re_prob=0.0)
    params = paper.draw(gen(5), clip320.shape[1:3])
    plain = dataclasses.replace(params, rand_augment=None)
    assert torch.allclose(fast.apply(clip320, plain), paper.apply(clip320, plain), atol=1e-3)
    base = fast.apply(clip320, plain)
    brightness = _one_op(params, "BrightnessIncreasing")
    a, b = paper.apply(clip320, brightness), fast.apply(clip320, brightness)
    assert (b - base).abs().mean() > 0.2  # the op was applied
    assert (a - b).abs().mean() < 0.1  # pixel-wise: nearly the same clip
    shift = _one_op(params, "TranslateYRel")
    a, b = paper.apply(clip320, shift), fast.apply(clip320, shift)
    assert (b - base).abs().mean() > 0.2 and (a - b).abs().mean() > 0.2  # a different clip
    assert fast(clip320, gen(1)).shape == (3, 4, 224, 224)


def test_resized_crop_box_statistics():
    H, W = 320, 426
    areas = []
    g = gen(0)
    for _ in range(2000):
        t, l, h, w = G.draw_resized_crop_box(g, (H, W), (0.08, 1.0), (0.75, 4 / 3))
        assert 0 <= t and 0 <= l and t + h <= H and l + w <= W and h > 0 and w > 0
        areas.append(h * w / (H * W))
        assert 0.75 - 0.01 <= w / h <= 4 / 3 + 0.01
    areas = np.array(areas)
    assert areas.min() >= 0.07 and areas.max() <= 1.0
    assert 0.4 < areas.mean() < 0.6  # U(0.08, 1) minus rejected large boxes


def test_short_side_jitter_and_val_recipe(small):
    val = TrainClipRecipe(crop_size=48, jitter_scales=(56, 70), random_flip=True)
    assert val.policy is None and val.relative_scale is None
    sizes = set()
    for seed in range(40):
        p = val.draw(gen(seed), small.shape[1:3])
        assert isinstance(p.crop, G.JitterCrop) and p.rand_augment is None and p.erasing is None
        sizes.add(p.crop.size)
        h, w = G.short_side_hw((90, 120), p.crop.size)
        assert p.crop.top + 48 <= h and p.crop.left + 48 <= w
    assert min(sizes) >= 56 and max(sizes) <= 70 and len(sizes) > 5
    out = val(small, gen(0))
    assert out.shape == (3, 3, 48, 48) and LOW - 1e-5 <= out.min() and out.max() <= HIGH + 1e-5


def test_flip_probability_and_ssv2_never_flips(small):
    flips = [small_recipe().draw(gen(s), (90, 120)).flip for s in range(400)]
    assert 0.42 < np.mean(flips) < 0.58
    never = small_recipe(random_flip=False)
    assert not any(never.draw(gen(s), (90, 120)).flip for s in range(50))
    # a flipped clip is the mirror of the unflipped one with the same other draws
    recipe = small_recipe(rand_augment=None, re_prob=0)
    p = recipe.draw(gen(0), (90, 120))
    other = type(p)(p.frame_hw, p.rand_augment, p.crop, not p.flip, p.erasing)
    assert torch.allclose(recipe.apply(small, p), recipe.apply(small, other).flip(-1), atol=1e-5)


def test_random_erasing_boxes_and_noise():
    x = torch.zeros(3, 4, 64, 64)
    for seed in range(50):
        params = draw_erasing_params(gen(seed), (64, 64), prob=1.0, mode="pixel", max_count=1)
        assert len(params.boxes) <= 1
        if not params.boxes:
            continue
        t, l, h, w = params.boxes[0]
        assert 0.02 * 64 * 64 * 0.8 <= h * w <= 64 * 64 / 3 * 1.2
        out = apply_erasing(x.clone(), params)
        region = out[:, :, t:t + h, l:l + w]
        assert region.abs().sum() > 0 and not torch.equal(region[:, 0], region[:, 1])
        mask = torch.ones(64, 64, dtype=torch.bool)
        mask[t:t + h, l:l + w] = False
        assert (out[:, :, mask] == 0).all()  # same box on every frame, nothing else
        assert torch.equal(out, apply_erasing(x.clone(), params))  # noise from the seed
    hits = [draw_erasing_params(gen(s), (64, 64), prob=0.25) is not None for s in range(800)]
    assert 0.20 < np.mean(hits) < 0.30


# ------------------------------------------------------------------------ test views
def test_uniform_crop_offsets():
    assert [uniform_crop_offsets((256, 341), 224, i) for i in range(3)] == [(16, 0), (16, 59), (16, 117)]
    assert [uniform_crop_offsets((341, 256), 224, i) for i in range(3)] == [(0, 16), (59, 16), (117, 16)]
    with pytest.raises(ValueError):
        uniform_crop_offsets((256, 256), 224, 3)


def test_three_crop_views_cover_both_ends_and_centre(clip320):
    """Short side to the crop size, crops at the left end, centre and right end."""
    views = [eval_view(clip320, i, 3, crop_size=224, short_side=224) for i in range(3)]
    resized = G.scale_and_crop(clip320, 224, 0, 0, 224)  # left end, unnormalised
    assert torch.allclose(views[0], G.normalize_(resized.contiguous(), MEAN, STD), atol=1e-5)
    w = G.short_side_hw((320, 426), 224)[1]
    right = G.scale_and_crop(clip320, 224, 0, w - 224, 224).contiguous()
    assert torch.allclose(views[2], G.normalize_(right, MEAN, STD), atol=1e-5)
    for i, v in enumerate(views):
        ref = pil_eval_view(clip320, i, 3, 224, 224)
        assert v.shape == (3, 4, 224, 224) and torch.allclose(v, ref, atol=1e-4)


def test_one_crop_view_and_ssv2_short_side(clip320):
    one = eval_view(clip320, 0, 1, crop_size=224, short_side=256)  # index ignored: centre
    assert torch.allclose(one, pil_eval_view(clip320, 1, 1, 224, 256), atol=1e-4)
    with pytest.raises(ValueError, match="TEST_CROP_SIZE"):
        eval_view(clip320, 1, 1, crop_size=300, short_side=256)


def test_from_cfg_reads_the_keys(small):
    from multitrain.config import get_cfg

    cfg = get_cfg()
    cfg.AUG.ENABLE, cfg.AUG.AA_TYPE, cfg.AUG.RE_PROB = True, SEED_AA, 0.25
    cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE = [0.08, 1.0]
    cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE = [0.75, 1.3333]
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 48, 40
    cfg.DATA.TRAIN_JITTER_SCALES = [56, 70]
    cfg.TEST.NUM_SPATIAL_CROPS = 1
    train = build_clip_transform(cfg, "train", "kinetics")
    assert train.policy == RA.parse_rand_augment(SEED_AA) and train.re_prob == 0.25
    assert train.relative_scale == (0.08, 1.0) and train.random_flip
    assert not build_clip_transform(cfg, "train", "ssv2").random_flip
    val = build_clip_transform(cfg, "val", "kinetics")
    assert val.policy is None and val.re_prob == 0 and val.relative_scale is None
    assert val(small, gen(0)).shape == (3, 3, 48, 48)
    cfg.AUG.ENABLE = False
    plain = build_clip_transform(cfg, "train", "kinetics")
    assert plain.policy is None and plain.re_prob == 0
    test = build_clip_transform(cfg, "test", "kinetics")
    assert isinstance(test, EvalViewTransform) and test.short_side == 56
    assert test(small, 1).shape == (3, 3, 40, 40)
    cfg.TEST.NUM_SPATIAL_CROPS = 3
    assert build_clip_transform(cfg, "test", "kinetics").short_side == 40
    cfg.TEST.NUM_SPATIAL_CROPS = 1
    assert build_clip_transform(cfg, "test", "ssv2").short_side == 40


def test_policy_parsing_errors():
    p = RA.parse_rand_augment("rand-m7-n4-mstd0.5-inc1")
    assert (p.magnitude, p.num_ops, p.magnitude_std, p.increasing, p.prob) == (7, 4, 0.5, True, 0.5)
    assert p.ops == RA.RAND_INCREASING_OPS and len(p.ops) == 15
    with pytest.raises(ValueError, match="unknown section"):
        RA.parse_rand_augment("rand-m7-x3")
    with pytest.raises(ValueError, match="only RandAugment"):
        RA.parse_rand_augment("v0")


def test_rand_augment_draw_statistics():
    """The original's RandAugment: ops uniform with replacement, p = 0.5, magnitude ~ N(7, 0.5) clipped to
    [0, 10], signs 50/50."""
    policy = RA.parse_rand_augment(SEED_AA)
    g = gen(0)
    draws = [RA.draw_rand_augment_params(g, policy) for _ in range(5000)]
    ops = [o for d in draws for o in d.ops]
    counts = np.array([ops.count(name) for name in RA.RAND_INCREASING_OPS])
    expected = len(ops) / 15
    assert np.abs(counts - expected).max() < 5 * math.sqrt(expected)  # ~5 sigma
    repeats = np.mean([len(set(d.ops)) < 4 for d in draws])
    assert abs(repeats - (1 - 15 * 14 * 13 * 12 / 15 ** 4)) < 0.03  # with replacement
    applied = np.mean([a for d in draws for a in d.applied])
    assert abs(applied - 0.5) < 0.02
    mags = np.array([m for d in draws for m in d.magnitudes])
    assert abs(mags.mean() - 7.0) < 0.02 and abs(mags.std() - 0.5) < 0.02
    assert mags.min() >= 0 and mags.max() <= 10
    signs = np.array([s for d in draws for s in d.signs])
    assert set(signs.tolist()) == {-1, 1} and abs((signs > 0).mean() - 0.5) < 0.02
    clipped = RA.draw_rand_augment_params(g, RA.parse_rand_augment("rand-m10-n50-mstd3"))
    assert max(clipped.magnitudes) == 10.0 and min(clipped.magnitudes) >= 0


def test_op_arguments_follow_the_spec():
    hw = (100, 200)
    assert RA.op_arguments("Rotate", 10, -1, hw) == -30.0
    assert RA.op_arguments("PosterizeIncreasing", 7, 1, hw) == 4 - int(2.8)
    assert RA.op_arguments("SolarizeIncreasing", 7, 1, hw) == 256 - int(256 * 0.7)
    assert RA.op_arguments("SolarizeAdd", 7, 1, hw) == int(110 * 0.7)
    assert RA.op_arguments("ColorIncreasing", 5, -1, hw) == pytest.approx(1 - 0.45)
    assert RA.op_arguments("ShearX", 10, 1, hw) == pytest.approx(0.3)
    assert RA.op_arguments("TranslateXRel", 10, -1, hw) == pytest.approx(-0.45 * 200)
    assert RA.op_arguments("TranslateYRel", 10, 1, hw) == pytest.approx(0.45 * 100)


def test_device_recipe_on_a_raw_batch(small, clip320):
    """AUG.ON_DEVICE: raw uint8 clips of different sizes -> K adjacent clips per video,
    a function of the item seed only; test items get their spatial view."""
    from multitrain.config import get_cfg
    from multitrain.data.multi_dataset import collate_multi
    from multitrain.data import device_recipe

    cfg = get_cfg()
    cfg.AUG.ENABLE, cfg.AUG.AA_TYPE, cfg.AUG.NUM_SAMPLE = True, SEED_AA, 2
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_JITTER_SCALES = 48, [56, 70]
    cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE, cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE = [0.08, 1.0], [0.75, 1.3333]
    items = [dict(frames=small, dataset="kinetics", label=1, seed=11, flip=True),
             dict(frames=clip320[:3], dataset="ssv2", label=0, seed=12, flip=False)]
    batch = collate_multi(items, ["kinetics", "ssv2"], [3, 2])
    out = device_recipe.apply_train_batch(batch, cfg)
    assert out["inputs"].shape == (4, 3, 3, 48, 48) and out["clips_per_video"] == 2
    assert out["masks"]["ssv2"].tolist() == [0, 0, 1, 1]
    again = device_recipe.apply_train_batch(batch, cfg)["inputs"]
    assert torch.equal(out["inputs"], again)
    recipe = TrainClipRecipe.from_cfg(cfg, "ssv2", random_flip=False)
    g = gen(12)
    first = recipe.apply(clip320[:3], recipe.draw(g, (320, 426)))
    assert torch.equal(out["inputs"][2], first)
    cfg.DATA.TEST_CROP_SIZE, cfg.TEST.NUM_SPATIAL_CROPS = 40, 3
    test_items = [dict(frames=small, dataset="kinetics", label=1, seed=1, spatial_idx=i)
                  for i in range(3)]
    views = device_recipe.apply_eval_batch(collate_multi(test_items, ["kinetics"], [3]), cfg)
    assert views.shape == (3, 3, 3, 40, 40)
    assert torch.equal(views[2], eval_view(small, 2, 3, crop_size=40, short_side=40))
