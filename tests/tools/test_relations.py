"""tools/relations.py on checkpoints whose projections encode known relations.

The projection weights are set by hand from the synthetic corpus's relations.json
(W_ab[j, i] = P(b's class j | a's class i)): the tool must rank the truly related classes
first, score full agreement, and the same scorer must see the disagreement of negated
weights.
"""
import csv
import io
import json
import os
import re
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from mt_testing import DEMO_CONFIG, load_tool

from multitrain.analysis.relations import PROJ_PREFIX, split_pair
from multitrain.preparation.synthetic import class_relations

relations_tool = load_tool("relations")

TRUTH = class_relations()  # what relations.json holds


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    """A folder with the corpus's relations.json (the tool reads nothing else of it)."""
    root = tmp_path_factory.mktemp("relations_truth")
    (root / "relations.json").write_text(json.dumps(TRUTH))
    return str(root)


def make_checkpoint(path, sign=1.0, prefix="", seed=0):
    """The demo model with projection a_b = sign * fractions[a_b]^T + small noise."""
    from multitrain.config import load_config
    from multitrain.models import build_model

    cfg = load_config(DEMO_CONFIG)
    state = build_model(cfg).state_dict()
    g = torch.Generator().manual_seed(seed)
    for pair, frac in TRUTH["fractions"].items():
        w = torch.tensor(frac, dtype=torch.float32).t()  # [K_b, K_a]
        state[f"{PROJ_PREFIX}{pair}.weight"] = sign * w + 0.01 * torch.randn(w.shape, generator=g)
    torch.save({"epoch": 11, "model_state": {prefix + k: v for k, v in state.items()},
                "cfg": cfg.dump()}, path)
    return str(path)


def run_tool(args):
    """(exit status, stdout, stderr) of tools/relations.py run in-process."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = relations_tool.main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def related_rows():
    """(pair, row) of every class with at least one truly related class in the other set."""
    return [(p, i) for p, rel in TRUTH["relations"].items() for i, row in enumerate(rel) if any(row)]


def names_of(dataset):
    return TRUTH["datasets"][dataset]["classes"]


def test_hand_set_projections_rank_the_true_classes_first(tmp_path, corpus_root):
    ckpt = make_checkpoint(tmp_path / "ckpt.pyth")
    listing = tmp_path / "rel.json"
    rc, stdout, _ = run_tool(["--checkpoint", ckpt, "--classnames", corpus_root, "--truth", corpus_root,
                              "-k", 3, "--format", "json", "--output", listing])
    assert rc == 0
    rows = json.loads(listing.read_text())
    by_class = {}
    for r in rows:
        by_class.setdefault((r["from_dataset"], r["from_class"], r["to_dataset"]), []).append(r)
    assert len(by_class) == sum(len(names_of(a)) for a in TRUTH["datasets"]) * 2  # every class, 2 targets
    for pair, i in related_rows():
        a, b = split_pair(pair, list(TRUTH["datasets"]))
        truth_row = TRUTH["relations"][pair][i]
        listed = sorted(by_class[(a, names_of(a)[i], b)], key=lambda r: r["rank"])
        assert [r["rank"] for r in listed] == list(range(1, min(3, len(names_of(b))) + 1))
        true_names = {names_of(b)[j] for j, t in enumerate(truth_row) if t}
        n_first = min(len(true_names), 3)
        assert {r["to_class"] for r in listed[:n_first]} <= true_names, (pair, i, listed)
        assert listed[0]["weight"] >= listed[-1]["weight"]
    scores = json.loads(stdout)["agreement_with_truth"]
    assert scores["overall"] == {"top1": 1.0, "all_first": 1.0, "classes": len(related_rows())}


def test_negated_projections_disagree_with_the_truth(tmp_path, corpus_root):
    ckpt = make_checkpoint(tmp_path / "neg.pyth", sign=-1.0)
    rc, _, stderr = run_tool(["--checkpoint", ckpt, "--truth", os.path.join(corpus_root, "relations.json")])
    assert rc == 0
    scores = json.loads(stderr.splitlines()[0])["agreement_with_truth"]
    # Negated, a class's best match is an unrelated one, unless every class is related to it.
    rows = related_rows()
    everything = sum(all(TRUTH["relations"][p][i]) for p, i in rows)
    assert scores["overall"]["top1"] == pytest.approx(everything / len(rows))
    assert scores["overall"]["top1"] < 0.5


def test_csv_and_text_formats(tmp_path, corpus_root):
    ckpt = make_checkpoint(tmp_path / "ckpt.pyth", prefix="module.")  # a DDP-saved state dict
    common = ["--checkpoint", ckpt, "--classnames", corpus_root, "-k", 2]
    rc_j, js, _ = run_tool(common + ["--format", "json"])
    rc_c, cs, _ = run_tool(common + ["--format", "csv"])
    assert rc_j == rc_c == 0
    rows = list(csv.DictReader(io.StringIO(cs)))
    expected = json.loads(js)
    assert len(rows) == len(expected) == 2 * 2 * sum(len(names_of(a)) for a in TRUTH["datasets"])
    for r, e in zip(rows, expected):
        assert {**r, "rank": int(r["rank"]), "weight": float(r["weight"])} == e
    rc, text, _ = run_tool(common + ["--truth", corpus_root, "--format", "text"])
    lines = text.splitlines()
    assert rc == 0 and lines[0] == "mit -> kinetics"  # projections grouped by target, as the model
    red_moving = lines[lines.index("mit -> kinetics") + 1]
    # red_moving's two best kinetics classes are its two halves (weight 0.5 each), marked true.
    assert red_moving.split()[0] == "red_moving"
    half = r"red_(horizontal|vertical)\* \(\+0\.[45]\d\)"
    assert re.search(f"{half}, {half}", red_moving), red_moving


def test_heatmap_png(tmp_path, corpus_root):
    import matplotlib.image as mpimg

    ckpt = make_checkpoint(tmp_path / "ckpt.pyth")
    png = tmp_path / "heat.png"
    rc, _, err = run_tool(["--checkpoint", ckpt, "--classnames", corpus_root, "--truth", corpus_root,
                           "--heatmap", "kinetics_ssv2", "--heatmap-out", png])
    assert rc == 0 and str(png) in err
    img = mpimg.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    assert float(img[..., :3].std()) > 0.1  # a picture, not a blank canvas
    with pytest.raises(SystemExit, match=r"no such projection.*kinetics_ssv2"):
        run_tool(["--checkpoint", ckpt, "--heatmap", "kinetics_k400"])


def test_checkpoint_without_projections_is_a_clear_error(tmp_path):
    from multitrain.config import load_config
    from multitrain.models import build_model

    cfg = load_config(DEMO_CONFIG, ["MODEL.MULTI_ADD_CROSS_PROJ", False])
    path = tmp_path / "noproj.pyth"
    torch.save({"model_state": build_model(cfg).state_dict()}, path)
    rc, _, err = run_tool(["--checkpoint", path])
    assert rc == 1 and "MULTI_ADD_CROSS_PROJ" in err and str(path) in err


def test_class_names_must_fit_the_heads(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt.pyth")
    bad = tmp_path / "names.json"
    bad.write_text(json.dumps({"mit": ["a", "b", "c"]}))
    with pytest.raises(SystemExit, match=r"3 names for 'mit'.*4 classes"):
        run_tool(["--checkpoint", ckpt, "--classnames", bad])


def test_split_pair_with_underscores_in_names():
    assert split_pair("k_400_mit_v2", ["k_400", "mit_v2", "ssv2"]) == ("k_400", "mit_v2")
    with pytest.raises(ValueError, match="does not match two of the datasets"):
        split_pair("kinetics_ucf", ["kinetics", "mit"])
