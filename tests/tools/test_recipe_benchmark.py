"""benchmarks/recipe_speed.py (tools/benchmark.py recipe): the recipe in the workers vs on
the device, and the end-to-end figures, on real generated videos and a tiny model."""
import json

import pytest
import torch  # noqa: F401  (before decord)

from benchmarks import recipe_speed
from benchmarks.recipe_benchmark import end_to_end
from mt_testing import TINY_MVIT

# The tiny MViT on 8 x 32 x 32 clips.
TINY = ["DATA.NUM_FRAMES", "8", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32"] + TINY_MVIT


def _positive_numbers(tree, path=""):
    """Every number in the figures' tree that must be > 0 (skips counts of 0 and flags)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k in ("load_avg_start", "load_avg_end", "last_loss", "same_draws", "re_prob"):
                continue
            yield from _positive_numbers(v, f"{path}.{k}")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


def test_recipe_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "recipe.json"
    result = recipe_speed.run(["--videos", "1", "--seconds", "2", "--items", "2", "--warmup", "0",
                             "--batch", "2", "--repeats", "1", "--threads", "1", "--step",
                             "--json", str(out)] + TINY)
    figures = json.loads(out.read_text())
    assert figures["config"].endswith("MVITV2_FULL_B_32x3_CONV_k400.yaml")
    assert figures["overrides"] == TINY
    w = figures["workers"]
    for mode in ("on_device_false", "on_device_true", "pil"):
        assert set(w[mode]) >= {"cpu_s", "wall_s"}
    assert w["same_draws"] is True  # the PIL reference saw the workers' own draws
    assert w["clip_shape"] == [3, 8, 32, 32] and w["decoded_shape"] == [8, 320, 426, 3]
    # Decode only does strictly less than decode + recipe on the same items.
    assert w["on_device_true"]["cpu_s"] < w["on_device_false"]["cpu_s"]
    d = figures["device_recipe"]
    assert (d["batch"], d["clips"]) == (2, 4)  # AUG.NUM_SAMPLE 2 clips per video
    assert d["raw_batch_mb"] == pytest.approx(2 * 8 * 320 * 426 * 3 / 1e6)
    assert d["augmented_batch_mb"] == pytest.approx(4 * 3 * 8 * 32 * 32 * 4 / 1e6)
    s, e = figures["train_step"], figures["end_to_end"]
    assert s["clips"] == 4 and s["amp"] == "none"
    assert e["on_device_true"]["samples_per_s"] < e["on_device_false"]["samples_per_s"]
    bad = [(p, v) for p, v in _positive_numbers(figures) if not v > 0]
    assert not bad, bad
    assert figures == json.loads(json.dumps(result))


def test_end_to_end_arithmetic():
    workers = {"on_device_false": {"cpu_s": 0.5}, "on_device_true": {"cpu_s": 0.1}}
    recipe = {"s_per_batch": 0.75, "copy_raw_s": 0.25, "copy_augmented_s": 1.0}
    e = end_to_end(workers, recipe, {"step_s": 2.5, "mixup_s": 0.5}, batch=8, k=2)
    # True: copy 0.25 + recipe 0.75 + Mixup 0.5 + step 2.5 = 4 s; False: 1 + 0.5 + 2.5 = 4 s
    assert e["on_device_true"]["samples_per_s"] == pytest.approx(8 / 4.0)
    assert e["on_device_true"]["clips_per_s"] == pytest.approx(16 / 4.0)
    assert e["on_device_true"]["worker_cores_needed"] == pytest.approx(2.0 * 0.1)
    assert e["on_device_false"]["samples_per_s"] == pytest.approx(8 / 4.0)
    assert e["on_device_false"]["worker_cores_needed"] == pytest.approx(2.0 * 0.5)
    e = end_to_end(workers, dict(recipe, copy_augmented_s=0.0), {"step_s": 2.5, "mixup_s": 0.5},
                   batch=8, k=2)
    assert e["on_device_false"]["samples_per_s"] == pytest.approx(8 / 3.0)
    assert e["recipe_share_of_step"] == pytest.approx(0.75 / 2.5)
