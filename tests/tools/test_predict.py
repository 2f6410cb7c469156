"""tools/predict.py and multitrain.analysis.predict on real videos and real checkpoints.

- the views are exactly the multi-view test's (compared with VideoDataset's test items);
- the CLI's scores equal the model's mean over those views, for every head;
- a tiny model trained here (a few hundred AdamW steps on decoded clips of the synthetic
  corpus) gets the classes of the videos right through the CLI (slow);
- the shipped class-name maps and the class-name sources.
"""
import io
import json
import os
from contextlib import redirect_stdout
from types import SimpleNamespace

import pytest
import torch

from mt_testing import DEMO_CONFIG, corpus_overrides, load_tool

from multitrain.analysis.predict import (CLASSNAMES_DIR, Predictor, builtin_class_names,
                                         load_class_names, load_model_weights,
                                         resolve_class_names, view_protocol)

predict_tool = load_tool("predict")

# Small inputs so a CPU trains the demo model in seconds: 8 frames of 32x32.
TINY_OPTS = ["DATA.TRAIN_CROP_SIZE", 32, "DATA.TEST_CROP_SIZE", 32, "DATA.TRAIN_JITTER_SCALES", [32, 40],
             "TEST.NUM_ENSEMBLE_VIEWS", 2, "TEST.NUM_SPATIAL_CROPS", 3, "NUM_GPUS", 0]
# The trained model: linear heads and no informative loss (fewer parameters, faster steps).
TRAINED_OPTS = ["MODEL.MULTI_USE_MLP", False, "MODEL.USE_INF_LOSS", False]


def tiny_cfg(root, out_dir, extra=()):
    from multitrain.config import load_config

    return load_config(DEMO_CONFIG, corpus_overrides(root, str(out_dir)) + TINY_OPTS + list(extra))


def save_checkpoint(model, cfg, path):
    """Our checkpoint layout, enough for inference."""
    torch.save({"epoch": 0, "model_state": model.state_dict(), "cfg": cfg.dump()}, path)
    return str(path)


def test_datasets(cfg, split):
    """{name: VideoDataset} of `split` in test mode (views as in multi-view testing)."""
    from multitrain.data.video_dataset import VideoDataset

    d, out = cfg.DATA, {}
    for i, name in enumerate(cfg.MODEL.MULTI_DATASETS):
        out[name] = VideoDataset(
            "test", os.path.join(cfg.MODEL.MULTI_PATH_TO_DATA_DIR[i], f"{split}.csv"),
            cfg.MODEL.MULTI_PATH_PREFIX[i], name, cfg.MODEL.MULTI_NUM_CLASSES[i],
            num_frames=d.NUM_FRAMES, sampling_rate=d.SAMPLING_RATE, target_fps=d.TARGET_FPS,
            num_ensemble_views=cfg.TEST.NUM_ENSEMBLE_VIEWS, num_spatial_crops=cfg.TEST.NUM_SPATIAL_CROPS,
            use_offset_sampling=d.USE_OFFSET_SAMPLING, backend=d.DECODING_BACKEND)
    return out


test_datasets.__test__ = False  # a helper, not a test


def dataset_views(cfg, ds, video):
    """All test views of one video through VideoDataset + the test transform: [V, 3, T, S, S]."""
    from multitrain.transforms import build_clip_transform

    tf = build_clip_transform(cfg, "test", ds.dataset_name)
    views = []
    for t in range(ds.num_ensemble_views):
        frames = ds.decode(video, view=t)
        views += [tf(frames, c) for c in range(ds.num_spatial_crops)]
    return torch.stack(views)


def run_cli(args):
    """tools/predict.py in-process: (exit status, stdout)."""
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = predict_tool.main([str(a) for a in args])
    return rc, buf.getvalue()


# ------------------------------------------------------------------------------ the trained model
def _training_clips(cfg):
    """Every test view of every train video: x [N, 3, T, S, S], labels [N], dataset ids [N]."""
    xs, ys, ids = [], [], []
    for i, (name, ds) in enumerate(test_datasets(cfg, "train").items()):
        from multitrain.transforms import build_clip_transform

        tf = build_clip_transform(cfg, "test", name)
        windows = 1 if ds.temporal_sampling == "segment" else ds.num_ensemble_views
        for v in range(ds.num_videos):
            for t in range(windows):
                frames = ds.decode(v, view=t)
                for c in range(ds.num_spatial_crops):
                    xs.append(tf(frames, c))
                    ys.append(ds.labels[v][0])
                    ids.append(i)
    return torch.stack(xs), torch.tensor(ys), torch.tensor(ids)


def _targets(cfg, y, ids):
    """One-hot labels {dataset: [B, K]} (zero rows for other datasets' samples) and masks."""
    import torch.nn.functional as F

    names, counts = list(cfg.MODEL.MULTI_DATASETS), list(cfg.MODEL.MULTI_NUM_CLASSES)
    masks = {n: (ids == i).float() for i, n in enumerate(names)}
    labels = {n: F.one_hot(y.clamp_max(k - 1), k).float() * masks[n][:, None]
              for n, k in zip(names, counts)}
    return labels, masks


def train_tiny_model(cfg, max_steps=120, target=0.1):
    """Fit the centre view of every train video (full-batch AdamW on the training objective:
    classification + projection losses) until every clip is classified right and the
    classification loss is below `target`. Returns (model in eval mode, final loss_cls, steps).

    One view per video and a small model keep this at a few dozen steps: on a shared
    2-core CPU a step of the whole network costs seconds.
    """
    from multitrain.models import build_loss, build_model

    one = cfg.clone()
    one.defrost()
    one.TEST.NUM_ENSEMBLE_VIEWS, one.TEST.NUM_SPATIAL_CROPS = 1, 1
    x, y, ids = _training_clips(one)
    torch.manual_seed(0)
    model, criterion = build_model(cfg), build_loss(cfg)
    opt = torch.optim.AdamW(list(model.parameters()) + list(criterion.parameters()), lr=3e-3,
                            weight_decay=0.01)
    labels, masks = _targets(cfg, y, ids)
    model.train()  # no dropout / drop-path in this config: train logits = eval logits
    for step in range(max_steps):
        out = model(x)
        terms = criterion(out, labels, masks)
        loss_cls = float(terms["loss_cls"].detach())
        right = all(bool((out["logits"][n][m > 0].argmax(1) == y[m > 0]).all()) for n, m in masks.items())
        if right and loss_cls < target:
            break
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    return model.eval(), loss_cls, step


@pytest.fixture(scope="session")
def trained_run(small_corpus, tmp_path_factory):
    """A tiny demo-config model trained on the small corpus's train split, saved in our
    checkpoint layout with its config (cached in the session's base temp folder)."""
    out = tmp_path_factory.getbasetemp() / "trained_tiny"
    ckpt = out / "checkpoint_epoch_00001.pyth"
    cfg = tiny_cfg(small_corpus, out, TRAINED_OPTS)
    info = out / "train_info.json"
    if not info.exists():
        out.mkdir(exist_ok=True)
        model, loss, steps = train_tiny_model(cfg)
        save_checkpoint(model, cfg, ckpt)
        info.write_text(json.dumps({"final_loss_cls": loss, "steps": steps}))
    return SimpleNamespace(root=small_corpus, cfg=cfg, ckpt=str(ckpt),
                           final_loss=json.loads(info.read_text())["final_loss_cls"])


@pytest.fixture(scope="module")
def untrained(small_corpus, tmp_path_factory):
    """A randomly initialised tiny model and its checkpoint (for exact comparisons)."""
    from multitrain.models import build_model

    out = tmp_path_factory.mktemp("untrained")
    cfg = tiny_cfg(small_corpus, out)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    return SimpleNamespace(cfg=cfg, model=model, ckpt=save_checkpoint(model, cfg, out / "ckpt.pyth"))


def manifest(root, split):
    with open(os.path.join(root, "manifest.json")) as f:
        rows = json.load(f)
    rel = json.load(open(os.path.join(root, "relations.json")))
    dirs = {k: v["dir"] for k, v in rel["datasets"].items()}
    return [(r["dataset"], os.path.join(root, dirs[r["dataset"]], "videos_320p", r["path"]), r["label"])
            for r in rows if r["split"] == split]


# ------------------------------------------------------------------------------ views
@pytest.mark.parametrize("dataset,opts", [
    ("kinetics", []),                                              # 2 windows x 3 crops, offsets
    ("kinetics", ["DATA.USE_OFFSET_SAMPLING", False]),             # uniform window starts
    ("mit", ["TEST.NUM_SPATIAL_CROPS", 1]),                         # 1 crop: short side 32 -> 32
    ("mit", ["TEST.NUM_SPATIAL_CROPS", 1, "DATA.TRAIN_JITTER_SCALES", [40, 48]]),  # short side 40
    ("ssv2", []),                                                  # segments; views differ in space only
])
def test_views_are_the_test_protocol(small_corpus, tmp_path, dataset, opts):
    cfg = tiny_cfg(small_corpus, tmp_path, opts)
    ds = test_datasets(cfg, "test")[dataset]
    pred = Predictor.from_cfg(cfg, torch.nn.Identity(), datasets=[dataset])
    proto = pred.protocols[dataset]
    for video in (0, ds.num_videos - 1):
        mine = pred.make_views(ds.video_path(video), proto)
        ref = dataset_views(cfg, ds, video)
        if dataset == "ssv2":  # every temporal view of the dataset is the same frames
            assert proto.num_views == 1
            assert torch.equal(ref[:3], ref[3:])
            ref = ref[:3]
        assert mine.shape == ref.shape == (proto.total, 3, 8, 32, 32)
        assert torch.equal(mine, ref)
        assert not torch.equal(mine[0], mine[-1])  # the views really differ


def test_view_protocol_rules():
    assert view_protocol("kinetics", 10, 3, 224, 256) == view_protocol("mit", 10, 3, 224, 256)
    one = view_protocol("kinetics", 5, 1, 224, 256)
    assert (one.short_side, one.total) == (256, 5)
    ssv2 = view_protocol("ssv2", 5, 1, 224, 256)  # SSv2: short side = crop, one window
    assert (ssv2.sampling, ssv2.short_side, ssv2.total) == ("segment", 224, 1)
    forced = view_protocol("kinetics", 4, 3, 224, 256, temporal_sampling="segment")
    assert (forced.sampling, forced.num_views) == ("segment", 1)
    with pytest.raises(ValueError, match="1 or 3 spatial crops"):
        view_protocol("kinetics", 2, 2, 224, 256)


# ------------------------------------------------------------------------------ CLI vs model
def reference_views(cfg, name, path, tmp_dir):
    """Test views of any video file under `name`'s protocol, through VideoDataset (a
    one-line CSV) and the test transform; SSv2's repeated temporal views kept once."""
    from multitrain.data.video_dataset import VideoDataset

    csv_path = os.path.join(str(tmp_dir), f"one_{name}.csv")
    with open(csv_path, "w") as f:
        f.write(f"{path} 0\n")
    d = cfg.DATA
    ds = VideoDataset("test", csv_path, "", name, 1, num_frames=d.NUM_FRAMES,
                      sampling_rate=d.SAMPLING_RATE, target_fps=d.TARGET_FPS,
                      num_ensemble_views=cfg.TEST.NUM_ENSEMBLE_VIEWS,
                      num_spatial_crops=cfg.TEST.NUM_SPATIAL_CROPS,
                      use_offset_sampling=d.USE_OFFSET_SAMPLING, backend=d.DECODING_BACKEND)
    views = dataset_views(cfg, ds, 0)
    return views[:ds.num_spatial_crops] if ds.temporal_sampling == "segment" else views


def test_cli_scores_are_the_mean_of_the_test_views(small_corpus, untrained, tmp_path):
    cfg, model = untrained.cfg, untrained.model
    sets = test_datasets(cfg, "test")
    videos = [sets["kinetics"].video_path(0), sets["ssv2"].video_path(1)]
    out = tmp_path / "pred.json"
    rc, _ = run_cli(["--checkpoint", untrained.ckpt, "--classnames", small_corpus, "--format", "json",
                     "--topk", 10, "--output", out] + videos)
    assert rc == 0
    results = json.loads(out.read_text())
    names = load_class_names(small_corpus)
    assert [r["video"] for r in results] == videos
    for res, video in zip(results, videos):
        assert list(res["predictions"]) == ["kinetics", "mit", "ssv2"]
        assert res["views"] == {"kinetics": "2x3", "mit": "2x3", "ssv2": "1x3"}
        probs = {}  # protocol -> {head: [V, K]}: kinetics and mit share their views
        for name, entries in res["predictions"].items():
            proto = "segment" if name == "ssv2" else "clip"
            if proto not in probs:
                with torch.no_grad():
                    probs[proto] = model(reference_views(cfg, name, video, tmp_path), output="probs")
            expected = probs[proto][name].mean(0)
            assert len(entries) == len(names[name])  # top-10 of fewer classes: all of them
            assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
            assert [e["index"] for e in entries] == expected.argsort(descending=True).tolist()
            for e in entries:
                assert e["score"] == pytest.approx(float(expected[e["index"]]), abs=2e-6)
                assert e["name"] == names[name][e["index"]]
            assert sum(e["score"] for e in entries) == pytest.approx(1.0, abs=1e-4)


def test_cli_single_view_selected_heads_table_and_overrides(small_corpus, untrained, tmp_path):
    cfg, model = untrained.cfg, untrained.model
    ds = test_datasets(cfg, "test")["mit"]
    video = ds.video_path(2)
    rc, text = run_cli(["--checkpoint", untrained.ckpt, video, "--single-view", "--datasets", "mit",
                        "--topk", 2, "TEST.BATCH_SIZE", 1])
    assert rc == 0
    lines = text.strip().splitlines()
    assert lines[0] == video and lines[1].strip() == "mit (1x1 views)" and len(lines) == 4
    # No --classnames and no shipped map for 4 MiT classes: indices are shown.
    one = load_config_like(cfg, ["TEST.NUM_ENSEMBLE_VIEWS", 1, "TEST.NUM_SPATIAL_CROPS", 1])
    with torch.no_grad():
        p = model(reference_views(one, "mit", video, tmp_path), dataset_name="mit", output="probs")[0]
    top = p.argsort(descending=True)[:2].tolist()
    for line, idx in zip(lines[2:], top):
        rank, score, name = line.split()
        assert name == str(idx) and float(score) == pytest.approx(float(p[idx]), abs=1e-4)


def load_config_like(cfg, opts):
    """A copy of `cfg` with `opts` applied."""
    c = cfg.clone()
    c.defrost()
    c.merge_from_list([str(o) for o in opts])
    return c


def test_cli_reports_undecodable_videos_and_goes_on(small_corpus, untrained, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    good = test_datasets(untrained.cfg, "test")["kinetics"].video_path(0)
    rc, text = run_cli(["--checkpoint", untrained.ckpt, "--format", "json", str(bad), good,
                        "--single-view"])
    assert rc == 1
    res = json.loads(text)
    assert res[0]["video"] == str(bad) and str(bad) in res[0]["error"]
    assert "predictions" in res[1] and "error" not in res[1]


def test_single_head_model_with_class_names_file(small_corpus, tmp_path):
    """A single-dataset model (MODEL.USE_MULTI_HEAD False) answers as TEST.DATASET's head;
    DATA.CLASS_NAMES_FILE (a plain list) names its classes; --cfg and overrides are used."""
    from multitrain.models import build_model

    names = [f"class {i}" for i in range(5)]
    (tmp_path / "names.json").write_text(json.dumps(names))
    opts = ["MODEL.USE_MULTI_HEAD", False, "MODEL.NUM_CLASSES", 5, "TRAIN.DATASET", "ssv2",
            "TEST.DATASET", "ssv2", "MODEL.MULTI_ADD_CROSS_PROJ", False, "MODEL.USE_INF_LOSS", False]
    cfg = tiny_cfg(small_corpus, tmp_path, opts)
    torch.manual_seed(2)
    model = build_model(cfg).eval()
    ckpt = save_checkpoint(model, cfg, tmp_path / "single.pyth")
    video = test_datasets(tiny_cfg(small_corpus, tmp_path), "test")["ssv2"].video_path(0)
    cli_opts = [str(o) if not isinstance(o, list) else repr(o) for o in
                corpus_overrides(small_corpus, str(tmp_path)) + TINY_OPTS + opts]
    rc, text = run_cli(["--cfg", DEMO_CONFIG, "--checkpoint", ckpt, "--format", "json", "--topk", 5, video]
                       + cli_opts + ["DATA.CLASS_NAMES_FILE", str(tmp_path / "names.json")])
    assert rc == 0
    (res,) = json.loads(text)
    assert list(res["predictions"]) == ["ssv2"] and res["views"] == {"ssv2": "1x3"}
    with torch.no_grad():
        expected = model(reference_views(cfg, "ssv2", video, tmp_path), output="probs").mean(0)
    got = res["predictions"]["ssv2"]
    assert [e["name"] for e in got] == [names[i] for i in expected.argsort(descending=True).tolist()]
    best = expected.sort(descending=True).values.tolist()
    assert [e["score"] for e in got] == pytest.approx(best, abs=2e-6)


def test_checkpoint_of_another_model_is_a_clear_error(small_corpus, untrained, tmp_path):
    from multitrain.models import build_model

    from multitrain.checkpoint import CheckpointError

    other = tiny_cfg(small_corpus, tmp_path, ["MODEL.MULTI_NUM_CLASSES", [7, 4, 4]])
    with pytest.raises(CheckpointError) as err:
        load_model_weights(build_model(other), untrained.ckpt)
    msg = str(err.value)
    assert untrained.ckpt in msg and "does not match the config's model" in msg
    assert "head.heads.kinetics.fc2.weight file (6, 2048) model (7, 2048)" in msg
    # Training-only modules may be missing: a model without projections/expander loads.
    bare = tiny_cfg(small_corpus, tmp_path, ["MODEL.MULTI_ADD_CROSS_PROJ", False,
                                             "MODEL.USE_INF_LOSS", False])
    report = load_model_weights(build_model(bare), untrained.ckpt)
    assert any(k.startswith("head.cross_dataset_heads.") for k in report["unexpected"])


def test_cli_input_errors_are_one_line(untrained, capsys):
    video = test_datasets(untrained.cfg, "test")["kinetics"].video_path(0)
    rc, _ = run_cli(["--checkpoint", untrained.ckpt, video, "DATA.NO_SUCH_KEY", 1])
    assert rc == 2 and "unknown config key DATA.NO_SUCH_KEY" in capsys.readouterr().err
    rc, _ = run_cli(["--checkpoint", untrained.ckpt, video, "MODEL.MULTI_NUM_CLASSES", "[7, 4, 4]"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "does not match the config's model" in err
    rc, _ = run_cli(["--checkpoint", untrained.ckpt, video, "--datasets", "ucf101"])
    assert rc == 2 and "['ucf101'] have no head" in capsys.readouterr().err


# ------------------------------------------------------------------------------ trained model
@pytest.mark.slow
def test_trained_model_predicts_the_known_classes(trained_run, tmp_path):
    assert trained_run.final_loss < 0.1, "the tiny model did not fit its training clips"
    rows, seen = [], {}
    for dataset, path, label in manifest(trained_run.root, "train"):  # 2 videos of every class
        if seen.setdefault((dataset, label), 0) < 2:
            seen[(dataset, label)] += 1
            rows.append((dataset, path, label))
    assert len(rows) == 2 * (6 + 4 + 4)
    out = tmp_path / "pred.json"
    # No --cfg: the config stored in the checkpoint. The single view is the one it was fit on.
    rc, _ = run_cli(["--checkpoint", trained_run.ckpt, "--classnames", trained_run.root, "--format", "json",
                     "--single-view", "--topk", 3, "--output", out] + [p for _, p, _ in rows])
    assert rc == 0
    results = json.loads(out.read_text())
    names = load_class_names(trained_run.root)
    right = {}
    for (dataset, path, label), res in zip(rows, results):
        assert res["video"] == path
        top = res["predictions"][dataset]
        right.setdefault(dataset, []).append(top[0]["name"] == names[dataset][label])
        assert names[dataset][label] in [e["name"] for e in top], (path, top)
    assert sorted(right) == ["kinetics", "mit", "ssv2"]
    for dataset, hits in right.items():
        assert all(hits), (dataset, sum(hits), len(hits))


# ------------------------------------------------------------------------------ class names
def test_shipped_class_maps():
    k400 = builtin_class_names("kinetics", 400)
    assert len(k400) == len(set(k400)) == 400 and k400 == sorted(k400)  # alphabetical, as prepared
    assert k400[0] == "abseiling" and "passing American football (in game)" in k400
    v1, v2 = builtin_class_names("mit", 339), builtin_class_names("moments_in_time", 305)
    assert len(set(v1)) == 339 and len(set(v2)) == 305
    it = iter(v1)
    assert all(name in it for name in v2)  # v2 drops 34 v1 classes and keeps the order
    ssv2 = builtin_class_names("ssv2", 174)
    assert len(set(ssv2)) == 174 and ssv2 == sorted(ssv2)
    assert ssv2[78] == "Pretending to spread air onto something"
    assert ssv2[173] == "Wiping something off of something"
    assert builtin_class_names("kinetics", 600) is None and builtin_class_names("ucf", 101) is None
    assert sorted(os.listdir(CLASSNAMES_DIR)) == ["README.md", "kinetics400.json", "moments_in_time_v1.json",
                                                  "moments_in_time_v2.json", "ssv2.json"]


def test_class_name_sources(small_corpus, tmp_path):
    corpus = load_class_names(small_corpus)  # corpus root -> relations.json
    assert corpus["mit"] == ["red_moving", "green_moving", "blue_moving", "staying_still"]
    prepared = load_class_names(os.path.join(small_corpus, "ssv2"), default_dataset="ssv2")
    assert prepared == {"ssv2": corpus["ssv2"]}  # a dataset folder's classnames.json
    (tmp_path / "d.json").write_text(json.dumps({"kinetics": corpus["kinetics"]}))
    (tmp_path / "l.json").write_text(json.dumps(["a", "b", "c", "d"]))
    counts = {"kinetics": 6, "mit": 4, "ssv2": 174}
    names = resolve_class_names(counts, [str(tmp_path / "l.json"), str(tmp_path / "d.json")],
                                default_dataset="mit")
    assert names["mit"] == ["a", "b", "c", "d"] and names["kinetics"] == corpus["kinetics"]
    assert names["ssv2"][0] == "Approaching something with your camera"  # shipped map, 174 classes
    with pytest.raises(ValueError, match=r"l\.json lists 4 classes for 'kinetics', but its head has 6"):
        resolve_class_names(counts, [str(tmp_path / "l.json")], default_dataset="kinetics")
    with pytest.raises(ValueError, match="plain list"):
        load_class_names(str(tmp_path / "l.json"))
    with pytest.raises(FileNotFoundError, match="neither relations.json"):
        load_class_names(str(tmp_path))
