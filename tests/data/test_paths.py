"""Config-named paths go through iopath's PathManager: a store with a registered handler
reads like a local folder (here a real handler serving a temporary folder as `store://`)."""
import os

import pytest
import torch
from iopath.common.file_io import PathHandler

from multitrain.checkpoint.checkpointer import CheckpointError, Checkpointer
from multitrain.config import get_cfg
from multitrain.data.annotations import parse_annotation_csv
from multitrain.utils import paths


class FolderStore(PathHandler):
    """`store://REL` is the file REL under `root` (what a bucket's handler does remotely)."""

    PREFIX = "store://"

    def __init__(self, root):
        super().__init__()
        self.root = str(root)

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _local(self, path):
        return os.path.join(self.root, path[len(self.PREFIX):])

    def _get_local_path(self, path, **kwargs):
        return self._local(path)

    def _isfile(self, path, **kwargs):
        return os.path.isfile(self._local(path))

    def _mkdirs(self, path, **kwargs):
        os.makedirs(self._local(path), exist_ok=True)

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        return open(self._local(path), mode, buffering, **kwargs)


@pytest.fixture
def store(tmp_path):
    handler = FolderStore(tmp_path)
    paths.PATH_MANAGER.register_handler(handler, allow_override=True)
    yield tmp_path
    paths.PATH_MANAGER._path_handlers.pop(FolderStore.PREFIX)  # iopath has no unregister


def test_annotations_read_from_a_registered_store(store):
    (store / "ann").mkdir()
    (store / "ann" / "train.csv").write_text("a.mp4 3\nb.mp4 0\n")
    rows = parse_annotation_csv("store://ann/train.csv", num_classes=4)
    assert [(r[0], r[1]) for r in rows] == [("a.mp4", [3]), ("b.mp4", [0])]
    with pytest.raises(FileNotFoundError, match="store://ann/val.csv"):
        parse_annotation_csv("store://ann/val.csv")


def test_output_folder_through_the_store(store):
    paths.mkdirs("store://run/out")
    with paths.open_path("store://run/out/config.yaml", "w") as f:
        f.write("OUTPUT_DIR: x\n")
    assert (store / "run" / "out" / "config.yaml").read_text() == "OUTPUT_DIR: x\n"


def test_checkpoint_to_test_read_from_the_store(store, tmp_path):
    torch.manual_seed(0)
    trained, fresh = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.save({"model_state": trained.state_dict()}, store / "ckpt.pyth")
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.TEST.CHECKPOINT_FILE_PATH = "store://ckpt.pyth"
    assert Checkpointer.from_config(cfg, fresh).load_for_test(cfg) == "store://ckpt.pyth"
    assert torch.equal(fresh.weight, trained.weight) and torch.equal(fresh.bias, trained.bias)
    cfg.TEST.CHECKPOINT_FILE_PATH = "store://none.pyth"
    with pytest.raises(CheckpointError, match="store://none.pyth does not exist"):
        Checkpointer.from_config(cfg, fresh).load_for_test(cfg)
