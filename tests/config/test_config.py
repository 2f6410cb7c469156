"""The config loader: types, overrides, `_BASE_`, validation errors naming key and source."""
import json
import os

import pytest

from fixtures.make_fixtures import flat_config
from multitrain.config import ConfigError, get_cfg, load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# For every original YAML, the keys it sets and the values they resolve to
# (tests/fixtures/make_fixtures.py writes it); every other key keeps its default.
REFERENCE_TABLE = os.path.join(REPO, "tests", "fixtures", "reference_configs.json")
with open(REFERENCE_TABLE) as _f:
    REFERENCE = json.load(_f)
MULTI = os.path.join(REPO, "configs", "Multi_dataset", "MVITV2_FULL_B_32x3_CONV_k400+mit+ssv2_docker.yaml")


def test_defaults_are_fresh_copies():
    a, b = get_cfg(), get_cfg()
    a.TRAIN.BATCH_SIZE = 3
    assert b.TRAIN.BATCH_SIZE != 3


@pytest.mark.parametrize("key,text,expected", [
    ("TRAIN.BATCH_SIZE", "16", 16),
    ("SOLVER.BASE_LR", "1", 1.0),  # int accepted for a float key
    ("SOLVER.BASE_LR", "2e-4", 2e-4),
    ("TRAIN.MIXED_PRECISION", "True", True),
    ("TEST.DATASET", "mit", "mit"),
    ("DATA.PATH_PREFIX", "/data/videos_320p", "/data/videos_320p"),
    ("MVIT.PATCH_KERNEL", "(3, 5, 5)", [3, 5, 5]),
    ("MODEL.MULTI_NUM_CLASSES", "[5, 4, 3]", [5, 4, 3]),
    ("SOLVER.CLIP_GRAD_L2NORM", "8.0", 8.0),  # None default takes any type
])
def test_override_types(key, text, expected):
    cfg = load_config(MULTI, [key, text, "NUM_GPUS", "0"])
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert node == expected and type(node) is type(expected)


def test_native_values_as_in_fixtures():
    cfg = load_config(MULTI, ["MVIT.DEPTH", 4, "MVIT.DIM_MUL", [[1, 2.0]], "MODEL.MULTI_NUM_CLASSES", [5, 4, 3]])
    assert cfg.MVIT.DEPTH == 4 and cfg.MVIT.DIM_MUL == [[1, 2.0]]


def test_unknown_key_on_command_line_is_named():
    with pytest.raises(ConfigError, match=r"command-line override TRAIN\.BATCH_SIZ.*unknown config key TRAIN\.BATCH_SIZ"):
        load_config(MULTI, ["TRAIN.BATCH_SIZ", "4"])


def test_unknown_key_in_yaml_names_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("TRAIN:\n  ENABLE: True\n  EPOCHZ: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key TRAIN\.EPOCHZ"):
        load_config(str(p))


def test_wrong_type_names_key_and_source():
    with pytest.raises(ConfigError, match=r"command-line override TRAIN\.BATCH_SIZE: TRAIN\.BATCH_SIZE must be of type int"):
        load_config(MULTI, ["TRAIN.BATCH_SIZE", "abc"])
    with pytest.raises(ConfigError, match="must be of type bool"):
        load_config(MULTI, ["TRAIN.ENABLE", "1"])


def test_odd_override_count():
    with pytest.raises(ConfigError, match="has no value"):
        load_config(MULTI, ["TRAIN.BATCH_SIZE"])


def test_base_inheritance_and_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 7\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\nSOLVER:\n  MAX_EPOCH: 9\n")
    cfg = load_config(str(tmp_path / "b.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.MAX_EPOCH == 9
    (tmp_path / "c.yaml").write_text("_BASE_: d.yaml\n")
    (tmp_path / "d.yaml").write_text("_BASE_: c.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "c.yaml"))
    (tmp_path / "e.yaml").write_text("_BASE_: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(str(tmp_path / "e.yaml"))


def test_multi_list_lengths_must_agree():
    with pytest.raises(ConfigError, match=r"command-line override MODEL\.MULTI_NUM_CLASSES: MODEL\.MULTI_NUM_CLASSES has 2 entries"):
        load_config(MULTI, ["MODEL.MULTI_NUM_CLASSES", "[400, 305]"])


def test_test_dataset_must_be_a_head():
    with pytest.raises(ConfigError, match=r"TEST\.DATASET = 'ucf101' is not among MODEL\.MULTI_DATASETS"):
        load_config(MULTI, ["TEST.ENABLE", "True", "TEST.DATASET", "ucf101"])


def test_batch_divisible_by_processes():
    with pytest.raises(ConfigError, match=r"TRAIN\.BATCH_SIZE = 64 .* divisible by .* = 3"):
        load_config(MULTI, ["NUM_GPUS", "3"])


def test_frozen():
    cfg = load_config(MULTI)
    with pytest.raises(AttributeError):
        cfg.NUM_GPUS = 3


def test_reference_table_covers_every_original_yaml():
    assert len(REFERENCE) == 8 and all(len(v) > 50 for v in REFERENCE.values())


@pytest.mark.parametrize("ref", sorted(REFERENCE), ids=os.path.basename)
def test_our_configs_mean_what_the_reference_ones_mean(ref):
    """Same file names; every resulting value equal, except documented differences."""
    ours = os.path.join(REPO, "configs", ref)
    b = flat_config(load_config(ours))
    a = {**flat_config(get_cfg()), **REFERENCE[ref]}
    assert a.keys() == b.keys(), f"keys of the original unknown to us: {sorted(a.keys() - b.keys())[:10]}"
    allowed = {"DATA.NUM_CLASSES", "DATA.DECODING_BACKEND"}  # we set the class count; decord replaces torchvision
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in allowed}
    assert diff == {}
