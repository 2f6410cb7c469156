"""tools/check_dataset.py and its library on a small synthetic corpus, clean and damaged."""
import importlib.util
import os
import shutil

import pytest

from multitrain.config import load_config
from multitrain.preparation.dataset_check import (
    DatasetSource, check_datasets, format_report, probe_video, read_annotations, sources_from_cfg,
)
from multitrain.preparation.synthetic import DATASETS, make_synthetic_corpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def clean_corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("check_corpus"))
    make_synthetic_corpus(root, {"train": 1, "val": 1, "test": 1}, seed=1, num_workers=2)
    return root


def _sources(root):
    return [DatasetSource(d.key, os.path.join(root, d.dirname, "pyslowfast_annotations"),
                          os.path.join(root, d.dirname, "videos_320p"), len(d.classes))
            for d in DATASETS]


def _yaml(tmp_path, root):
    """A multi-dataset config pointing at the corpus under ``root``."""
    ann = [os.path.join(root, d.dirname, "pyslowfast_annotations") for d in DATASETS]
    vid = [os.path.join(root, d.dirname, "videos_320p") for d in DATASETS]
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "TRAIN:\n  DATASET: multi_dataset_seq\n"
        "MODEL:\n  USE_MULTI_HEAD: True\n  MULTI_DATASETS: [kinetics, mit, ssv2]\n"
        "  MULTI_REPLICAS: [1, 1, 1]\n  MULTI_NUM_CLASSES: [6, 4, 4]\n"
        "  MULTI_LOSS_FUNCS: [soft_cross_entropy, soft_cross_entropy, soft_cross_entropy]\n"
        "  MULTI_HEAD_ACT: [softmax, softmax, softmax]\n  MULTI_LOSS_WEIGHTS: [1, 1, 1]\n"
        f"  MULTI_PATH_TO_DATA_DIR: {ann}\n  MULTI_PATH_PREFIX: {vid}\n")
    return str(path)


def _cli():
    spec = importlib.util.spec_from_file_location("_cli_check", os.path.join(REPO, "tools", "check_dataset.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clean_corpus_passes_with_statistics(clean_corpus):
    report = check_datasets(_sources(clean_corpus), workers=2, progress=False)
    assert report.ok, format_report(report)
    assert report.lines == {f"{d.key}/{s}": len(d.classes) for d in DATASETS
                            for s in ("train", "val", "test")}
    stats = report.stats["all"]
    assert 24 <= stats["frames"]["min"] <= stats["frames"]["median"] <= stats["frames"]["max"] <= 72
    assert {stats["fps"]["min"], stats["fps"]["max"]} <= {24.0, 25.0, 30.0}
    assert 96 <= stats["short_side"]["min"] <= stats["short_side"]["max"] <= 160
    assert all(not v for v in report.classes_without_videos.values())


def test_damaged_corpus_reports_every_problem(clean_corpus, tmp_path):
    root = str(tmp_path / "corpus")
    shutil.copytree(clean_corpus, root)
    kin_ann = os.path.join(root, "kinetics400", "pyslowfast_annotations", "train.csv")
    lines = open(kin_ann).read().splitlines()
    missing = os.path.join(root, "kinetics400", "videos_320p", lines[0].split(" ")[0])
    os.remove(missing)
    with open(kin_ann, "a") as f:
        f.write("no_label_here.mp4\n" + lines[1].split(" ")[0] + " 6\n")
    mit_val = os.path.join(root, "moments_in_time", "pyslowfast_annotations", "val.csv")
    truncated = os.path.join(root, "moments_in_time", "videos_320p",
                             open(mit_val).readline().split(" ")[0])
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    ssv2_test = os.path.join(root, "ssv2", "pyslowfast_annotations", "test.csv")
    garbage = os.path.join(root, "ssv2", "videos_320p", open(ssv2_test).readline().split(" ")[0])
    open(garbage, "wb").write(os.urandom(5000))
    empty = os.path.join(root, "ssv2", "videos_320p", open(ssv2_test).readlines()[1].split(" ")[0])
    open(empty, "wb").close()

    report = check_datasets(_sources(root), workers=2, progress=False)
    assert not report.ok
    found = {(p.kind, p.where) for p in report.problems}
    assert ("missing", missing) in found
    assert ("corrupt", truncated) in found
    assert ("corrupt", garbage) in found
    assert ("empty", empty) in found
    assert ("malformed", f"{kin_ann}:{len(lines) + 1}") in found
    assert ("bad_label", f"{kin_ann}:{len(lines) + 2}") in found
    assert len(report.problems) == 6, format_report(report)
    assert report.classes_without_videos["kinetics/train"] == []  # the missing one still counts


def test_cli_exit_codes_and_output(clean_corpus, tmp_path, capsys):
    cli = _cli()
    cfg = _yaml(tmp_path, clean_corpus)
    assert cli.main(["--cfg", cfg, "--workers", "2", "--no-progress", "NUM_GPUS", "0"]) == 0
    assert "OK: no problem found" in capsys.readouterr().out

    root = str(tmp_path / "damaged")
    shutil.copytree(clean_corpus, root)
    ann = os.path.join(root, "ssv2", "pyslowfast_annotations", "val.csv")
    first, second = [line.split(" ")[0] for line in open(ann).read().splitlines()[:2]]
    os.remove(os.path.join(root, "ssv2", "videos_320p", first))
    bad = os.path.join(root, "ssv2", "videos_320p", second)
    open(bad, "r+b").truncate(600)
    report_json = tmp_path / "report.json"
    rc = cli.main(["--cfg", _yaml(tmp_path, root), "--split", "val", "--workers", "1",
                   "--no-progress", "--json", str(report_json)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "PROBLEMS: 1 corrupt, 1 missing" in out
    assert os.path.join(root, "ssv2", "videos_320p", first) in out and bad in out
    assert "kinetics/train" not in out  # only the requested split
    assert '"kind": "missing"' in report_json.read_text()
    assert cli.main(["--cfg", cfg, "NO_SUCH.KEY", "1"]) == 2


def test_read_annotations_rules(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("a dir/clip one.mp4 3\n\nb.mp4 1,2\nc.mp4 x\n")
    entries, problems = read_annotations(str(csv), "/videos", num_classes=4, multi_label=True)
    assert [(e.video, e.labels) for e in entries] == [("/videos/a dir/clip one.mp4", (3,)),
                                                      ("/videos/b.mp4", (1, 2))]
    assert [(p.kind, p.where) for p in problems] == [("malformed", f"{csv}:4")]
    entries, problems = read_annotations(str(csv), "", num_classes=4)
    assert [p.where for p in problems] == [f"{csv}:3", f"{csv}:4"]  # "1,2" needs MULTI_LABEL
    (tmp_path / "empty.csv").write_text("\n")
    _, problems = read_annotations(str(tmp_path / "empty.csv"), "", num_classes=4)
    assert [p.kind for p in problems] == ["empty_csv"]


def test_probe_reads_real_metadata(clean_corpus):
    rel, _ = open(os.path.join(clean_corpus, "ssv2", "pyslowfast_annotations", "train.csv")).readline().split(" ")
    info = probe_video(os.path.join(clean_corpus, "ssv2", "videos_320p", rel), "pyav")
    assert info.ok and 24 <= info.num_frames <= 72 and info.fps in (24.0, 25.0, 30.0)
    assert min(info.width, info.height) in (96, 112, 128, 144, 160)


def test_sources_single_dataset_mode(clean_corpus, tmp_path):
    cfg = load_config(None, ["TRAIN.DATASET", "ssv2", "DATA.PATH_TO_DATA_DIR", "/a",
                             "DATA.PATH_PREFIX", "/v", "DATA.NUM_CLASSES", "174"])
    assert sources_from_cfg(cfg) == [DatasetSource("ssv2", "/a", "/v", 174)]
    # The original README's inference command: a multi-dataset YAML, one dataset tested.
    cfg = load_config(_yaml(tmp_path, clean_corpus), [
        "TRAIN.ENABLE", "False", "TRAIN.DATASET", "mit", "TEST.DATASET", "mit",
        "DATA.PATH_TO_DATA_DIR", "/m", "DATA.PATH_PREFIX", "/mv", "DATA.NUM_CLASSES", "4"])
    assert sources_from_cfg(cfg) == [DatasetSource("mit", "/m", "/mv", 4)]
    multi = sources_from_cfg(load_config(_yaml(tmp_path, clean_corpus)))
    assert [(s.name, s.num_classes) for s in multi] == [("kinetics", 6), ("mit", 4), ("ssv2", 4)]
