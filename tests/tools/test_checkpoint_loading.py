"""Every tool reads checkpoints through one reader, on real files and the synthetic corpus:

- keys wrapped by DDP (`module.`), `torch.compile` (`_orig_mod.`) or the original code's
  activation checkpointing (`_checkpoint_wrapped_module.`) give exactly the plain file's
  scores in run_net's test and in tools/predict.py, and the same training from an init;
- a file whose keys match nothing ends run_net with one line and a non-zero exit;
- a file that pickles its yacs config (code of the original's era) tests the same and inits;
- a file that pickles code is refused by run_net (test and init), predict and relations
  with one line, and its code never runs.
"""
import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest
import torch
from yacs.config import CfgNode

from mt_testing import DEMO_CONFIG, REPO, corpus_overrides

sys.path.insert(0, os.path.join(REPO, "tools"))
import predict as predict_tool  # noqa: E402  tools/predict.py
import relations as relations_tool  # noqa: E402  tools/relations.py
import run_net as run_net_tool  # noqa: E402  tools/run_net.py

# One view per video and no loader workers: a test pass over the corpus takes seconds.
FAST = ["TEST.NUM_ENSEMBLE_VIEWS", 1, "TEST.NUM_SPATIAL_CROPS", 1, "NUM_GPUS", 0,
        "DATA_LOADER.NUM_WORKERS", 0, "LOG_MODEL_INFO", False]


def wrap_key(key: str, how: str) -> str:
    """``key`` as another tool saves it."""
    if how == "module.":
        return f"module.{key}"
    if how == "_orig_mod.":
        return f"_orig_mod.{key}"
    if how == "_checkpoint_wrapped_module." and key.startswith("blocks."):
        i, rest = key[len("blocks."):].split(".", 1)  # the original wraps each block
        return f"blocks.{i}._checkpoint_wrapped_module.{rest}"
    return key


WRAPPERS = ["plain", "module.", "_orig_mod.", "_checkpoint_wrapped_module."]


class CodeRunner:
    """Unpickling this creates the folder ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def as_args(opts):
    return [repr(o) if isinstance(o, list) else str(o) for o in opts]


@pytest.fixture(scope="module")
def files(small_corpus, tmp_path_factory):
    """A tiny demo model's checkpoint saved plain, wrapped, with foreign keys and with code."""
    from multitrain.config import load_config
    from multitrain.models import build_model

    out = tmp_path_factory.mktemp("ckpt_files")
    opts = corpus_overrides(small_corpus, str(out / "unused")) + FAST
    ann, videos = opts[1][0], opts[3][0]  # the kinetics-like set is the one tested
    opts += ["DATA.PATH_TO_DATA_DIR", ann, "DATA.PATH_PREFIX", videos, "TEST.DATASET", "kinetics",
             "DATA.NUM_CLASSES", 6]
    cfg = load_config(DEMO_CONFIG, opts)
    torch.manual_seed(3)
    state = build_model(cfg).state_dict()
    paths = {}
    for how in WRAPPERS:
        paths[how] = str(out / f"{how.strip('._') or 'plain'}.pyth")
        torch.save({"epoch": 0, "cfg": cfg.dump(),
                    "model_state": {wrap_key(k, how): v for k, v in state.items()}}, paths[how])
    paths["foreign"] = str(out / "foreign.pyth")
    torch.save({"epoch": 0, "model_state": {f"net.{k}": v for k, v in state.items()}},
               paths["foreign"])
    paths["cfgnode"] = str(out / "cfgnode.pyth")  # as code of the original's era saved it
    torch.save({"epoch": 0, "cfg": CfgNode.load_cfg(cfg.dump()),
                "model_state": {f"module.{k}": v for k, v in state.items()}}, paths["cfgnode"])
    paths["code"] = str(out / "code.pyth")
    torch.save({"epoch": 0, "cfg": cfg.dump(), "model_state": state,
                "hook": CodeRunner(out / "code_ran")}, paths["code"])
    return {"paths": paths, "opts": opts, "marker": out / "code_ran", "out": out}


def run_net(files, out_dir, *extra):
    """tools/run_net.py in-process (one CPU process runs in this one): its exit status."""
    opts = [o if o != str(files["out"] / "unused") else str(out_dir) for o in files["opts"]]
    return run_net_tool.main(["--cfg", DEMO_CONFIG] + as_args(opts) + as_args(extra))


def test_stats(out_dir):
    from multitrain.engine.writers import parse_json_stats

    with open(os.path.join(out_dir, "stdout.log")) as f:
        return [s for s in parse_json_stats(f) if s["_type"] == "test"]


test_stats.__test__ = False  # a helper, not a test


def predict_json(path, video, cfg_file):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = predict_tool.main(["--cfg", cfg_file, "--checkpoint", path, video, "--format", "json"])
    return rc, buf.getvalue()


def test_run_net_test_scores_equal_for_wrapped_keys(files, tmp_path, restore_logging, caplog):
    """The wrapped files and the one pickling its yacs config."""
    scores = {}
    for how in WRAPPERS + ["cfgnode"]:
        out = tmp_path / how.strip("._")
        with caplog.at_level("INFO"):
            rc = run_net(files, out, "TRAIN.ENABLE", False, "TEST.ENABLE", True,
                         "TEST.CHECKPOINT_FILE_PATH", files["paths"][how])
        assert rc == 0
        (stats,) = test_stats(out)
        scores[how] = stats
    assert all(scores[how] == scores["plain"] for how in scores), scores
    n = len(torch.load(files["paths"]["plain"], weights_only=True)["model_state"])
    assert caplog.text.count(f"loaded {n}/{n} model tensors") == len(scores)


def test_run_net_inits_from_a_file_pickling_its_config(files, tmp_path, restore_logging, caplog):
    """Its epoch is the last one, so the init is all that runs."""
    path = files["paths"]["cfgnode"]
    with caplog.at_level("INFO"):
        rc = run_net(files, tmp_path, "TRAIN.ENABLE", True, "TEST.ENABLE", False,
                     "SOLVER.MAX_EPOCH", 1, "TRAIN.AUTO_RESUME", False,
                     "TRAIN.CHECKPOINT_FILE_PATH", path)
    assert rc == 0
    assert f"initialised from {path} with its training state" in caplog.text
    n = len(torch.load(files["paths"]["plain"], weights_only=True)["model_state"])
    # every model tensor (the total also counts the loss's own, which the file lacks)
    assert re.search(rf"loaded {n}/\d+ model tensors from {re.escape(path)}", caplog.text)


def test_predict_scores_equal_for_wrapped_keys(files, tmp_path):
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(torch.load(files["paths"]["plain"], weights_only=True)["cfg"])
    ann = files["opts"][files["opts"].index("MODEL.MULTI_PATH_PREFIX") + 1][0]
    video = os.path.join(ann, sorted(os.listdir(ann))[0])
    outputs = {how: predict_json(files["paths"][how], video, str(cfg_file)) for how in WRAPPERS}
    assert outputs["plain"][0] == 0 and json.loads(outputs["plain"][1])[0]["predictions"]
    assert all(outputs[how] == outputs["plain"] for how in WRAPPERS)


def test_run_net_refuses_a_file_matching_nothing(files, tmp_path):
    """As users run it: a real process, its exit status and its stderr."""
    opts = [o if o != str(files["out"] / "unused") else str(tmp_path) for o in files["opts"]]
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", DEMO_CONFIG]
                       + as_args(opts) + ["TRAIN.ENABLE", "False", "TEST.ENABLE", "True",
                                          "TEST.CHECKPOINT_FILE_PATH", files["paths"]["foreign"]],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and '"_type": "test"' not in open(tmp_path / "stdout.log").read()
    (line,) = [ln for ln in r.stderr.splitlines() if files["paths"]["foreign"] in ln]
    assert "TEST.CHECKPOINT_FILE_PATH" in line and "does not match the config's model" in line
    assert "(0 match)" in line


def test_init_refuses_a_file_matching_nothing(files, tmp_path, restore_logging, capsys):
    rc = run_net(files, tmp_path, "TRAIN.ENABLE", True, "TEST.ENABLE", False, "SOLVER.MAX_EPOCH", 1,
                 "TRAIN.CHECKPOINT_FILE_PATH", files["paths"]["foreign"])
    err = capsys.readouterr().err
    assert rc != 0 and "TRAIN.CHECKPOINT_FILE_PATH" in err and "does not match" in err
    assert not os.path.isdir(tmp_path / "checkpoints") or not os.listdir(tmp_path / "checkpoints")


def _one_error_line(err, path):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and path in lines[0] and "mkdir" in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("tool", ["run_net test", "run_net init", "predict", "relations"])
def test_every_tool_refuses_a_file_that_pickles_code(files, tmp_path, restore_logging, capsys, tool):
    path = files["paths"]["code"]
    if tool == "run_net test":
        rc = run_net(files, tmp_path, "TRAIN.ENABLE", False, "TEST.ENABLE", True,
                     "TEST.CHECKPOINT_FILE_PATH", path)
    elif tool == "run_net init":
        rc = run_net(files, tmp_path, "TRAIN.ENABLE", True, "TEST.ENABLE", False,
                     "SOLVER.MAX_EPOCH", 1, "TRAIN.CHECKPOINT_FILE_PATH", path)
    elif tool == "predict":
        cfg_file = tmp_path / "config.yaml"
        cfg_file.write_text(torch.load(files["paths"]["plain"], weights_only=True)["cfg"])
        rc, _ = predict_json(path, path, str(cfg_file))  # the video is never reached
    else:
        rc = relations_tool.main(["--checkpoint", path])
    assert rc != 0
    err = capsys.readouterr().err
    _one_error_line(err, path)
    assert not files["marker"].exists()


@pytest.mark.slow
def test_init_from_wrapped_keys_trains_the_same(files, tmp_path, restore_logging):
    """One epoch from the plain file and from the `_orig_mod.` one: the same weights after."""
    final = {}
    for how in ("plain", "_orig_mod."):
        out = tmp_path / how.strip("._")
        rc = run_net(files, out, "TRAIN.ENABLE", True, "TEST.ENABLE", False, "SOLVER.MAX_EPOCH", 1,
                     "TRAIN.CHECKPOINT_FILE_PATH", files["paths"][how], "TRAIN.CHECKPOINT_EPOCH_RESET",
                     True, "TRAIN.AUTO_RESUME", False)
        assert rc == 0
        ckpt = out / "checkpoints" / "checkpoint_epoch_00001.pyth"
        final[how] = torch.load(ckpt, weights_only=True)["model_state"]
    assert final["plain"].keys() == final["_orig_mod."].keys()
    assert all(torch.equal(v, final["_orig_mod."][k]) for k, v in final["plain"].items())
