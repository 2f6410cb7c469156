"""The original code's outputs, reproduced from its weights.

tests/fixtures/conformance holds reduced copies of the original's fixtures (see the README
there), enough to check every output of both variants; the full-size ones in
../shared/conformance are checked too where that folder exists.
"""
import importlib.util
import json
import os

import pytest
import torch

from multitrain.config import get_cfg, merge
from multitrain.models import build_model
from multitrain.checkpoint.weights import adapt_keys
from multitrain.models.conformance import TOLERANCE, check_fixture, find_config, relative_error
from multitrain.models.heads import MultiDatasetHead
from multitrain.models.losses import InformativeLoss, MultiHeadLoss

from model_helpers import REFERENCE_CONFIGS, multitrain_first_clip_fixture
from mt_testing import CONFORMANCE, REPO

PER_SAMPLE = {"train_preds.kinetics", "train_preds.mit_ssv2", "train_inf_feature", "eval_probs.ssv2"}
EXPECTED_OUTPUTS = {
    "multitrain_tiny.pt": PER_SAMPLE | {"multihead_loss", "inf_loss"},
    "multitrain_tiny_first_clip.pt": PER_SAMPLE,
    "pyslowfast_mvitv2_tiny.pt": {"eval_probs"},
}


def _assert_conforms(path, name, impl):
    checks = check_fixture(path, attention_impl=impl)
    computed = {c.name for c in checks if c.rel_error is not None}
    assert EXPECTED_OUTPUTS[name] <= computed, f"outputs not compared: {EXPECTED_OUTPUTS[name] - computed}"
    bad = [(c.name, c.rel_error) for c in checks if not c.ok]
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


def _full_size(name):
    """../shared/conformance/<name> (the original's full-size fixture), or None without it."""
    path = os.path.join(CONFORMANCE, name)
    return path if os.path.isfile(path) else None


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_official_variant_outputs_match(conformance_dir, impl):
    """The official MViTv2 variant: original weights, one clip, the original's probabilities
    (and, where ../shared exists, the full-size fixture's two clips)."""
    name = "pyslowfast_mvitv2_tiny.pt"
    _assert_conforms(os.path.join(conformance_dir, name), name, impl)
    if _full_size(name):
        _assert_conforms(_full_size(name), name, impl)


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_multitrain_variant_outputs_match(conformance_dir, tmp_path, impl):
    """The MultiTrain variant end to end on the original's first clip: its backbone, MLP heads,
    projections and a quarter of its expander's hidden units (the other units' sum is stored),
    against its train-mode logits, projections and expander output and its eval-mode
    probabilities (and, where ../shared exists, the full-size fixture: four clips, every
    weight, the losses)."""
    name = "multitrain_tiny_first_clip.pt"
    torch.save(multitrain_first_clip_fixture(conformance_dir), tmp_path / name)
    _assert_conforms(str(tmp_path / name), name, impl)
    if _full_size("multitrain_tiny.pt"):
        _assert_conforms(_full_size("multitrain_tiny.pt"), "multitrain_tiny.pt", impl)


@pytest.fixture(scope="module")
def original_train_outputs():
    fx = torch.load(os.path.join(REPO, "tests", "fixtures", "conformance", "multitrain_tiny_loss.pt"),
                    weights_only=True)
    cfg = get_cfg()
    merge(cfg, [find_config(fx["config_file"])], list(fx["config_overrides"]))
    return cfg, fx


def test_multihead_loss_of_the_original_outputs(original_train_outputs):
    """Our loss on the original's logits, projections, labels and masks = the original's loss."""
    cfg, fx = original_train_outputs
    m = cfg.MODEL
    loss = MultiHeadLoss(list(m.MULTI_DATASETS), list(m.MULTI_LOSS_FUNCS), list(m.MULTI_LOSS_WEIGHTS),
                         m.MULTI_PROJ_LOSS_WEIGHT, m.MULTI_PROJ_LOSS_FUNC)
    preds = fx["train_preds"]
    logits = {d: preds[d] for d in m.MULTI_DATASETS}
    proj = {k: v for k, v in preds.items() if k not in logits}
    assert len(proj) == 6
    terms = loss(logits, fx["labels"], fx["masks"], proj)
    assert set(terms) == {"loss_cls", "loss_proj"}
    assert relative_error(sum(terms.values()), fx["multihead_loss"]) < TOLERANCE
    assert relative_error(terms["loss_cls"], fx["multihead_loss"]) > 10 * TOLERANCE  # projections count


def test_informative_loss_of_the_original_feature(original_train_outputs):
    cfg, fx = original_train_outputs
    inf = InformativeLoss(cfg.MODEL.INF_STD_WEIGHT, cfg.MODEL.INF_COVAR_WEIGHT)
    assert relative_error(inf(fx["train_inf_feature"]), fx["inf_loss"]) < TOLERANCE


def test_projection_layers_map_the_original_logits(original_train_outputs):
    """Each a_b projection applied to the original's a logits gives the original's a_b output."""
    cfg, fx = original_train_outputs
    m = cfg.MODEL
    head = MultiDatasetHead(16, list(m.MULTI_DATASETS), list(m.MULTI_NUM_CLASSES), ["softmax"] * 3,
                            use_mlp=True, cross_proj=True)
    state = {k[len("head."):]: v for k, v in adapt_keys(fx["projection_state"]).items()}
    result = head.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if "cross" in k]
    logits = {d: fx["train_preds"][d] for d in m.MULTI_DATASETS}
    with torch.no_grad():
        ours = head.project(logits)
    assert set(ours) == {k for k in fx["train_preds"] if k not in logits}
    for key, value in ours.items():
        assert relative_error(value, fx["train_preds"][key]) < TOLERANCE, key


def _tool_main():
    spec = importlib.util.spec_from_file_location("conformance_tool",
                                                  os.path.join(REPO, "tools", "conformance.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_passes_and_fails(conformance_dir, tmp_path, capsys):
    """The tool returns 0 on a real fixture and 1 when a stored output is tampered with."""
    main = _tool_main()
    path = os.path.join(conformance_dir, "pyslowfast_mvitv2_tiny.pt")
    assert main([path]) == 0
    assert "PASS" in capsys.readouterr().out
    fixture = torch.load(path, weights_only=True)
    fixture["eval_probs"] = fixture["eval_probs"] * (1 + 1e-3)
    bad_path = tmp_path / "tampered.pt"
    torch.save(fixture, bad_path)
    assert main([str(bad_path)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_find_config_prefers_kinetics_and_searches_recursively(tmp_path):
    for sub in ("SSv2", "PySlowFast", "Kinetics/deeper"):
        os.makedirs(tmp_path / sub)
        (tmp_path / sub / "X.yaml").write_text("MVIT:\n  DEPTH: 2\n")
    (tmp_path / "SSv2" / "only_here.yaml").write_text("")
    assert find_config("X.yaml", [str(tmp_path)]).startswith(str(tmp_path / "Kinetics"))
    assert find_config("only_here.yaml", [str(tmp_path / "nope"), str(tmp_path)]).endswith(
        os.path.join("SSv2", "only_here.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        find_config("missing.yaml", [str(tmp_path)])


def _released_cfg():
    name = "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml"
    try:
        path = find_config(name)
    except FileNotFoundError:
        pytest.skip(f"{name} not under configs/ nor {REFERENCE_CONFIGS}")
    cfg = get_cfg()
    merge(cfg, [path])
    return cfg


def test_released_architecture_keys_and_shapes(conformance_dir):
    """MViTv2-B 32x3 with heads 400/305/174: exactly the released model's state_dict."""
    expected = json.load(open(os.path.join(conformance_dir, "multitrain_mvitv2_b_32x3_keys.json")))
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(_released_cfg())
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(expected["keys"]), (
        f"missing {sorted(set(expected['keys']) - set(ours))[:10]}, "
        f"extra {sorted(set(ours) - set(expected['keys']))[:10]}")
    wrong = {k: (ours[k], v) for k, v in expected["keys"].items() if ours[k] != v}
    assert not wrong, wrong
    assert sum(p.numel() for p in model.parameters()) == expected["num_parameters"] == 64297643


@pytest.mark.slow
def test_released_architecture_gflops():
    """fvcore counts ~223.8 GFLOPs (multiply-adds) for one 32x224x224 view."""
    from multitrain.models.model_info import gflops_one_view

    cfg = _released_cfg()
    model = build_model(cfg)
    gflops = gflops_one_view(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE)
    assert abs(gflops - 223.8) < 0.5, gflops


def test_multitrain_backbone_feature(conformance_dir):
    """The MultiTrain variant's backbone (original weights) gives the pooled feature our model
    gave when it reproduced every output of the original's full fixture (see the README)."""
    fx = torch.load(os.path.join(conformance_dir, "multitrain_tiny_backbone.pt"), weights_only=True)
    cfg = get_cfg()
    merge(cfg, [find_config(fx["config_file"])], list(fx["config_overrides"]))
    model = build_model(cfg).eval()
    result = model.load_state_dict(adapt_keys(fx["backbone_state"]), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(k.startswith(("head.", "expander.")) for k in result.missing_keys)
    with torch.no_grad():
        feature = model.forward_features(fx["input"].float())
    assert relative_error(feature, fx["feature"]) < TOLERANCE
