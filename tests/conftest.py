"""Fixtures shared across the suite: paths, and a small real synthetic corpus."""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
CONFORMANCE = os.path.join(SHARED, "conformance")
DEMO_CONFIG = os.path.join(REPO, "configs", "demo", "synthetic_multi.yaml")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A small synthetic corpus (real H.264 files): 4 train / 2 val / 2 test videos per class."""
    from multitrain.data.synthetic import make_synthetic_corpus

    root = str(tmp_path_factory.mktemp("small_corpus"))
    make_synthetic_corpus(root, {"train": 4, "val": 2, "test": 2}, num_workers=2)
    return root


def corpus_overrides(root: str, output_dir: str):
    """KEY VALUE overrides pointing the demo config at a corpus and an output folder."""
    import json

    rel = json.load(open(os.path.join(root, "relations.json")))
    dirs = [rel["datasets"][n]["dir"] for n in rel["datasets"]]
    return ["MODEL.MULTI_PATH_TO_DATA_DIR", [os.path.join(root, d, "pyslowfast_annotations") for d in dirs],
            "MODEL.MULTI_PATH_PREFIX", [os.path.join(root, d, "videos_320p") for d in dirs],
            "OUTPUT_DIR", output_dir]
