"""Checkpointer on real files: layout, atomicity, resume, init from foreign files, test loading."""
import logging
import os
import random
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from multitrain.checkpoint import (CheckpointError, Checkpointer, checkpoint_name, find_latest,
                                   list_checkpoints, parse_checkpoint_name)
from multitrain.config import get_cfg
from multitrain.utils.rng import capture_rng_state, restore_rng_state


class Net(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.backbone = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.norm(torch.relu(self.backbone(x))))


def make(seed=0, classes=4, lr=1e-2):
    torch.manual_seed(seed)
    model = Net(classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    return model, opt


def train_steps(model, opt, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(5, 6, generator=g), torch.randint(0, 4, (5,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def cfg_for(out, **train):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(out)
    for k, v in train.items():
        cfg.TRAIN[k] = v
    return cfg


def same_params(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------ names, layout, content
def test_names_and_ordering():
    assert checkpoint_name(0) == "checkpoint_epoch_00001.pyth"
    assert checkpoint_name(4, 37) == "checkpoint_epoch_00005_iter_000037.pyth"
    keys = [parse_checkpoint_name(checkpoint_name(e, i)) for e, i in
            [(0, None), (1, 3), (1, None), (2, 0)]]
    assert keys == sorted(keys)
    assert parse_checkpoint_name("notes.txt") is None
    assert parse_checkpoint_name(".checkpoint_epoch_00001.pyth.tmp.12") is None


def test_save_layout_is_pyslowfast_and_weights_only(tmp_path):
    model, opt = make()
    train_steps(model, opt, 2)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    wrapped = nn.DataParallel(model)  # state_dict keys carry "module."
    ck = Checkpointer(str(tmp_path), wrapped, opt, scaler, cfg_yaml=get_cfg().dump())
    extra = {"rng": capture_rng_state(), "sampler": {"epoch": 2, "pos": 40}, "accum": 3}
    path = ck.save(2, extra=extra)
    assert path == os.path.join(tmp_path, "checkpoints", "checkpoint_epoch_00003.pyth")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["epoch"] == 2
    assert set(ckpt["model_state"]) == set(model.state_dict())  # no "module." prefix
    assert ckpt["optimizer_state"]["state"]  # AdamW moments saved
    assert ckpt["scaler_state"]["scale"] == 512.0
    assert "NUM_GPUS" in ckpt["cfg"] and isinstance(ckpt["cfg"], str)
    assert ckpt["extra"]["sampler"] == {"epoch": 2, "pos": 40}
    assert "iter_in_epoch" not in ckpt
    assert not [f for f in os.listdir(tmp_path / "checkpoints") if ".tmp." in f]


def test_unserialisable_extra_is_refused_with_its_name(tmp_path):
    model, opt = make()
    ck = Checkpointer(str(tmp_path), model, opt)
    with pytest.raises(TypeError, match=r"\['bad'\].*ndarray"):
        ck.save(0, extra={"bad": np.zeros(3)})
    with pytest.raises(ValueError, match="reserved"):
        ck.save(0, extra={"start_epoch": 1})


def test_only_rank0_writes(tmp_path):
    model, opt = make()
    assert Checkpointer(str(tmp_path), model, opt, rank=1).save(0) is None
    assert not os.path.exists(tmp_path / "checkpoints")


def test_keep_and_superseded_mid_epoch_files(tmp_path):
    model, opt = make()
    ck = Checkpointer(str(tmp_path), model, opt, keep=3)
    ck.save(0)
    ck.save(1, iteration=5)
    ck.save(1, iteration=10)
    names = [os.path.basename(p) for p in list_checkpoints(ck.dir)]
    assert names == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002_iter_000010.pyth"]
    ck.save(1)
    ck.save(2)
    ck.save(3)
    names = [os.path.basename(p) for p in list_checkpoints(ck.dir)]
    assert names == ["checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003.pyth",
                     "checkpoint_epoch_00004.pyth"]


# ------------------------------------------------------------------ completeness and faults
def test_truncated_newest_is_skipped_with_warning(tmp_path, caplog):
    model, opt = make()
    ck = Checkpointer(str(tmp_path), model, opt)
    good = ck.save(0)
    bad = ck.save(1)
    size = os.path.getsize(bad)
    with open(bad, "r+b") as f:
        f.truncate(size // 2)
    junk = os.path.join(ck.dir, checkpoint_name(5))
    with open(junk, "wb") as f:
        f.write(os.urandom(300))
    with caplog.at_level(logging.WARNING):
        assert find_latest(ck.dir) == good
    assert bad in caplog.text and junk in caplog.text
    fresh, fresh_opt = make(seed=3)
    start = Checkpointer(str(tmp_path), fresh, fresh_opt).resume_or_init(
        cfg_for(tmp_path, AUTO_RESUME=True))
    assert (start["mode"], start["path"], start["start_epoch"]) == ("resume", good, 1)


def _mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def test_disk_full_keeps_previous_checkpoint(tmp_path):
    out = tmp_path / "small_disk"
    if not _mount_tmpfs(out, "256k"):
        pytest.skip("cannot mount a small tmpfs here (needs root): disk-full test not run")
    try:
        model, opt = make()
        ck = Checkpointer(str(out), model, opt)
        first = ck.save(0)
        try:  # eat the remaining space
            with open(out / "filler", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
        except OSError:
            pass
        with pytest.raises(CheckpointError, match="disk full") as err:
            ck.save(1)
        assert "checkpoint_epoch_00002.pyth" in str(err.value)
        assert os.listdir(ck.dir) == [os.path.basename(first)]  # no temp file, old one kept
        assert torch.load(first, weights_only=True)["epoch"] == 0
        assert find_latest(ck.dir) == first
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)


# ------------------------------------------------------------------ resume
def test_resume_continues_exactly(tmp_path):
    model, opt = make()
    train_steps(model, opt, 3, seed=1)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    ck = Checkpointer(str(tmp_path), model, opt)
    ck.save(0, extra={"rng_state": capture_rng_state()}, iteration=3)
    expected_draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    train_steps(model, opt, 2, seed=2)  # the uninterrupted run

    other, other_opt = make(seed=9)
    start = Checkpointer(str(tmp_path), other, other_opt).resume_or_init(
        cfg_for(tmp_path, AUTO_RESUME=True, CHECKPOINT_FILE_PATH="/does/not/matter"))
    assert (start["mode"], start["start_epoch"], start["start_iter"]) == ("resume", 0, 3)
    restore_rng_state(start["rng_state"])  # extra entries are merged into the start dict
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected_draws
    train_steps(other, other_opt, 2, seed=2)
    assert same_params(model, other)


def test_auto_resume_without_own_checkpoint_inits_from_file(tmp_path):
    src, src_opt = make(seed=1)
    train_steps(src, src_opt, 1)
    foreign = tmp_path / "pretrained.pyth"
    torch.save({"model_state": {f"module.{k}": v for k, v in src.state_dict().items()},
                "epoch": 7, "optimizer_state": src_opt.state_dict()}, foreign)
    model, opt = make(seed=2)
    start = Checkpointer(str(tmp_path / "run"), model, opt).resume_or_init(
        cfg_for(tmp_path / "run", AUTO_RESUME=True, CHECKPOINT_FILE_PATH=str(foreign)))
    assert (start["mode"], start["start_epoch"], start["start_iter"]) == ("init", 8, 0)
    assert same_params(model, src)
    assert opt.state_dict()["state"][0]["step"] == src_opt.state_dict()["state"][0]["step"]


def test_init_file_without_epoch_starts_at_epoch_0(tmp_path):
    """A weights-only release file with no "epoch" and no EPOCH_RESET: like the original
    code, training starts at epoch 0 with the file's weights."""
    src, _ = make(seed=1)
    release = tmp_path / "release.pyth"
    torch.save({"model_state": src.state_dict()}, release)
    model, opt = make(seed=2)
    start = Checkpointer(str(tmp_path / "run"), model, opt).resume_or_init(
        cfg_for(tmp_path / "run", CHECKPOINT_FILE_PATH=str(release)))
    assert (start["mode"], start["start_epoch"], start["start_iter"]) == ("init", 0, 0)
    assert same_params(model, src)


def test_init_skips_and_lists_mismatched_keys(tmp_path, caplog):
    src, src_opt = make(seed=1, classes=7)  # another class count
    nn.functional.cross_entropy(src(torch.randn(3, 6)), torch.tensor([0, 6, 2])).backward()
    src_opt.step()  # creates AdamW moments shaped for 7 classes
    foreign = tmp_path / "other.pyth"
    state = dict(src.state_dict(), extra_unknown=torch.zeros(2))
    torch.save({"model_state": state, "epoch": 3, "optimizer_state": src_opt.state_dict()}, foreign)
    model, opt = make(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        start = Checkpointer(str(tmp_path / "run"), model, opt).resume_or_init(
            cfg_for(tmp_path / "run", CHECKPOINT_FILE_PATH=str(foreign), CHECKPOINT_EPOCH_RESET=True))
    assert (start["mode"], start["start_epoch"]) == ("init", 0)
    assert "head.weight" in caplog.text and "head.bias" in caplog.text  # shape differs
    assert "extra_unknown" in caplog.text  # not in the model
    assert "left unloaded" in caplog.text
    assert torch.equal(model.head.weight, before["head.weight"])
    assert torch.equal(model.backbone.weight, src.backbone.weight)
    assert not opt.state_dict()["state"]  # EPOCH_RESET: optimizer untouched
    # without EPOCH_RESET the optimizer state (for 7 classes) cannot fit: clear error
    model2, opt2 = make(seed=2)
    with pytest.raises(CheckpointError, match="CHECKPOINT_EPOCH_RESET"):
        Checkpointer(str(tmp_path / "run"), model2, opt2).resume_or_init(
            cfg_for(tmp_path / "run", CHECKPOINT_FILE_PATH=str(foreign)))


WRAPPED_KEYS = {  # how other tools name the parameter "backbone.weight"
    "plain": lambda k: k,
    "ddp": lambda k: f"module.{k}",
    "compile": lambda k: f"_orig_mod.{k}",
    "ddp+compile": lambda k: f"module._orig_mod.{k}",
    "act-checkpoint": lambda k: k.replace(".", "._checkpoint_wrapped_module.", 1),
}


@pytest.mark.parametrize("wrap", sorted(WRAPPED_KEYS))
def test_wrapped_keys_load_for_init_and_test(tmp_path, wrap):
    src, _ = make(seed=1)
    path = tmp_path / "wrapped.pyth"
    torch.save({"model_state": {WRAPPED_KEYS[wrap](k): v for k, v in src.state_dict().items()},
                "epoch": 2}, path)
    model, opt = make(seed=2)
    Checkpointer(str(tmp_path / "run"), model, opt).resume_or_init(
        cfg_for(tmp_path / "run", CHECKPOINT_FILE_PATH=str(path), CHECKPOINT_EPOCH_RESET=True))
    assert same_params(model, src)
    tested, _ = make(seed=3)
    cfg = cfg_for(tmp_path / "run")
    cfg.TEST.CHECKPOINT_FILE_PATH = str(path)
    assert Checkpointer(str(tmp_path / "run"), tested).load_for_test(cfg) == str(path)
    assert same_params(tested, src)


def test_init_may_skip_heads_only(tmp_path):
    src, _ = make(seed=1)
    state = dict(src.state_dict(), **{"backbone.weight": torch.zeros(8, 7)})  # another input size
    path = tmp_path / "other_backbone.pyth"
    torch.save({"model_state": state, "epoch": 0}, path)
    model, opt = make(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        Checkpointer(str(tmp_path / "run"), model, opt).resume_or_init(
            cfg_for(tmp_path / "run", CHECKPOINT_FILE_PATH=str(path), CHECKPOINT_EPOCH_RESET=True))
    msg = str(err.value)
    assert "backbone.weight file (8, 7) model (8, 6)" in msg and str(path) in msg
    assert "\n" not in msg and "head." not in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing loaded


def test_load_for_test_refuses_unloaded_tensors(tmp_path):
    src, _ = make(seed=1)
    model, _ = make(seed=2)
    cfg = cfg_for(tmp_path)
    cfg.TEST.CHECKPOINT_FILE_PATH = str(tmp_path / "partial.pyth")
    partial = {k: v for k, v in src.state_dict().items() if not k.startswith("norm.")}
    torch.save({"model_state": partial}, cfg.TEST.CHECKPOINT_FILE_PATH)
    with pytest.raises(CheckpointError, match=r"2 of 6 model tensors.*norm.bias, norm.weight"):
        Checkpointer(str(tmp_path), model).load_for_test(cfg)
    # a head of another class count is not tested on its random initialisation either
    other, _ = make(seed=1, classes=7)
    torch.save({"model_state": other.state_dict()}, cfg.TEST.CHECKPOINT_FILE_PATH)
    with pytest.raises(CheckpointError, match=r"head.weight file \(7, 8\) model \(4, 8\)"):
        Checkpointer(str(tmp_path), model).load_for_test(cfg)
    torch.save({"model_state": {f"net.{k}": v for k, v in src.state_dict().items()}},
               cfg.TEST.CHECKPOINT_FILE_PATH)
    with pytest.raises(CheckpointError, match=r"6 of 6 model tensors would stay unloaded \(0 match"):
        Checkpointer(str(tmp_path), model).load_for_test(cfg)


def test_missing_or_unreadable_file_is_named(tmp_path):
    model, opt = make()
    ck = Checkpointer(str(tmp_path), model, opt)
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.resume_or_init(cfg_for(tmp_path, CHECKPOINT_FILE_PATH=str(tmp_path / "nope.pyth")))
    bad = tmp_path / "bad.pyth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pyth"):
        ck.resume_or_init(cfg_for(tmp_path, CHECKPOINT_FILE_PATH=str(bad)))


# ------------------------------------------------------------------ test loading
def test_load_for_test_order(tmp_path):
    a, _ = make(seed=1)
    b, _ = make(seed=2)
    c, _ = make(seed=3)
    test_file, train_file = tmp_path / "test.pyth", tmp_path / "train.pyth"
    torch.save({"model_state": a.state_dict()}, test_file)
    torch.save({"model_state": b.state_dict(), "epoch": 0}, train_file)
    cfg = cfg_for(tmp_path, CHECKPOINT_FILE_PATH=str(train_file))

    model, _ = make(seed=9)
    ck = Checkpointer(str(tmp_path), model)
    assert ck.load_for_test(cfg) == str(train_file) and same_params(model, b)
    Checkpointer(str(tmp_path), c).save(4)
    assert ck.load_for_test(cfg).endswith("checkpoint_epoch_00005.pyth") and same_params(model, c)
    cfg.TEST.CHECKPOINT_FILE_PATH = str(test_file)
    assert ck.load_for_test(cfg) == str(test_file) and same_params(model, a)
    empty = cfg_for(tmp_path / "empty")
    assert Checkpointer(str(tmp_path / "empty"), model).load_for_test(empty) is None


def test_rng_state_round_trip_through_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = capture_rng_state()
    draws = (random.gauss(0, 1), float(np.random.randn()), torch.randn(3))
    torch.save(state, tmp_path / "rng.pt")
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.gauss(0, 1), float(np.random.randn()), torch.randn(3))
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])
