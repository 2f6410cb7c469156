"""Paths and helpers shared by tests in several folders (import as `mt_testing`)."""
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
CONFORMANCE = os.path.join(SHARED, "conformance")
DEMO_CONFIG = os.path.join(REPO, "configs", "demo", "synthetic_multi.yaml")


def corpus_overrides(root: str, output_dir: str):
    """KEY VALUE overrides pointing the demo config at a corpus and an output folder."""
    rel = json.load(open(os.path.join(root, "relations.json")))
    dirs = [rel["datasets"][n]["dir"] for n in rel["datasets"]]
    return ["MODEL.MULTI_PATH_TO_DATA_DIR", [os.path.join(root, d, "pyslowfast_annotations") for d in dirs],
            "MODEL.MULTI_PATH_PREFIX", [os.path.join(root, d, "videos_320p") for d in dirs],
            "OUTPUT_DIR", output_dir]
