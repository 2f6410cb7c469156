"""Fixtures shared across the suite: a small real synthetic corpus, logging cleanup."""
import logging

import pytest
import torch  # noqa: F401  (torch before decord: the other order crashes decord2's wheel)

from mt_testing import CONFORMANCE, DEMO_CONFIG, REPO, SHARED, corpus_overrides  # noqa: F401


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A small synthetic corpus (real H.264 files): 4 train / 2 val / 2 test videos per class."""
    from multitrain.preparation.synthetic import make_synthetic_corpus

    root = str(tmp_path_factory.mktemp("small_corpus"))
    make_synthetic_corpus(root, {"train": 4, "val": 2, "test": 2}, num_workers=2)
    return root


@pytest.fixture
def restore_logging():
    """Undo the root-logger handlers and level a test's setup_logging call adds."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
