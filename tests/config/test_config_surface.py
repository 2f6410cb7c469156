"""The config surface is frozen: the full sorted key list of the default config is stored in
tests/fixtures/config_keys.txt, so adding, renaming or removing a key is a reviewed change.

After a deliberate change, rewrite the file with
    python tests/config/test_config_surface.py --write
and say in the commit which keys changed and why.
"""
import os
import sys
from typing import Iterator

from yacs.config import CfgNode

from multitrain.config import get_cfg

KEYS_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "fixtures", "config_keys.txt")


def config_keys(node: CfgNode, prefix: str = "") -> Iterator[str]:
    """Dotted names of every leaf of `node` (a node whose value is a CfgNode is no leaf)."""
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from config_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def current_keys():
    return sorted(config_keys(get_cfg()))


def test_config_keys_match_the_stored_list():
    with open(KEYS_FILE) as f:
        stored = [line.strip() for line in f if line.strip()]
    keys = current_keys()
    added, removed = sorted(set(keys) - set(stored)), sorted(set(stored) - set(keys))
    assert not added and not removed, (
        f"the default config's keys changed: added {added}, removed {removed}. If this is "
        f"deliberate, update {os.path.relpath(KEYS_FILE)} (python tests/config/"
        f"test_config_surface.py --write) and name the keys in the commit message")
    assert stored == keys, f"{KEYS_FILE} is not sorted or has duplicates"


def test_every_leaf_is_listed_once():
    keys = current_keys()
    assert len(keys) == len(set(keys)) and len(keys) > 100
    assert {"TRAIN.BATCH_SIZE", "MVIT.DEPTH", "MODEL.MULTI_DATASETS", "OUTPUT_DIR"} <= set(keys)
    assert "MVIT" not in keys and "TRAIN" not in keys  # sub-trees are not leaves


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    os.makedirs(os.path.dirname(KEYS_FILE), exist_ok=True)
    with open(KEYS_FILE, "w") as f:
        f.write("\n".join(current_keys()) + "\n")
    print(f"wrote {len(current_keys())} keys to {KEYS_FILE}")
