"""Checkpoint files under faults: a truncated newest file is skipped with a warning naming
it and training resumes from the previous one; a full disk while saving stops the run with
a clear error, leaves the previous checkpoint intact, and a restart resumes exactly."""
import os
import subprocess

import pytest
import torch

from multitrain.checkpoint import find_latest

from .helpers import (assert_same_weights, assert_steps_replay, checkpoints, console_of,
                      final_state, read_text, stats, step_ids, train_net)


def _truncate(path: str, keep: float = 0.5) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def test_truncated_newest_checkpoint_is_skipped(small_corpus, reference_run, copy_run):
    out = copy_run(reference_run)
    assert checkpoints(out) == ["checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    newest = os.path.join(out, "checkpoints", "checkpoint_epoch_00002.pyth")
    _truncate(newest)
    n_before = len(stats(out))
    train_net(small_corpus, out)
    log = read_text(console_of(out))
    assert f"skipping incomplete or unreadable checkpoint {newest}" in log
    assert "resumed from " + os.path.join(out, "checkpoints", "checkpoint_epoch_00001.pyth") in log
    # epoch 2 was trained again, exactly as in the reference run (where a validation ran
    # between the epoch-1 checkpoint and epoch 2: it must not shift the random streams)
    again = stats(out)[n_before:]
    assert step_ids(again) == [round(x, 4) for x in (4 / 3, 5 / 3, 2.0)]
    assert_steps_replay(stats(reference_run), again)
    assert_same_weights(final_state(reference_run), final_state(out))


def _mount_tmpfs(path: str, size: int, remount: bool = False) -> bool:
    os.makedirs(path, exist_ok=True)
    opts = f"remount,size={size}" if remount else f"size={size}"
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@pytest.fixture
def small_disk(reference_run, tmp_path):
    """A tmpfs OUTPUT_DIR with room for one checkpoint and a half (skip when not root)."""
    size = os.path.getsize(os.path.join(reference_run, "checkpoints", "checkpoint_epoch_00001.pyth"))
    out = str(tmp_path / "disk")
    if not _mount_tmpfs(out, size * 3 // 2):
        pytest.skip("cannot mount a tmpfs here (needs root): disk-full test not run")
    yield out
    subprocess.run(["umount", out], capture_output=True)


def _run_until_disk_full(corpus, out):
    """The second checkpoint does not fit: a clear error, exit 1, the first one intact."""
    train_net(corpus, out, expect_rc=1)
    log = read_text(console_of(out))
    first = os.path.join(out, "checkpoints", "checkpoint_epoch_00001_iter_000001.pyth")
    assert f"disk full while writing checkpoint {out}/checkpoints/" in log, log[-3000:]
    assert os.listdir(os.path.join(out, "checkpoints")) == [os.path.basename(first)]  # no temp file
    assert torch.load(first, weights_only=True)["iter_in_epoch"] == 1
    return first


def test_disk_full_while_saving_is_a_clear_error(small_corpus, small_disk):
    first = _run_until_disk_full(small_corpus, small_disk)
    assert find_latest(os.path.dirname(first)) == first


@pytest.mark.slow
def test_disk_full_then_space_freed_resumes_exactly(small_corpus, reference_run, small_disk):
    out = small_disk
    first = _run_until_disk_full(small_corpus, out)
    n_before = len(stats(out))
    assert _mount_tmpfs(out, 64 * 2**20, remount=True)  # space freed
    train_net(small_corpus, out)
    assert "resumed from " + first in read_text(console_of(out))
    assert step_ids(stats(out)[n_before:]) == step_ids(stats(reference_run))[1:]
    assert_same_weights(final_state(reference_run), final_state(out))
