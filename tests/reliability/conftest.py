"""Fixtures of the fault-injection suite (the corpus fixture comes from tests/conftest.py)."""
import shutil

import pytest

from .helpers import train_net


@pytest.fixture(scope="session")
def reference_run(small_corpus, tmp_path_factory):
    """An uninterrupted tiny run (helpers.TINY_OPTS): the ground truth of resume tests.
    Treat it as read-only; copy it (``copy_run``) to build on it."""
    out = str(tmp_path_factory.mktemp("reference") / "run")
    train_net(small_corpus, out)
    return out


@pytest.fixture
def copy_run(tmp_path):
    """``copy_run(src) -> dst``: a private copy of a run folder."""
    def copy(src: str, name: str = "copy") -> str:
        dst = str(tmp_path / name)
        shutil.copytree(src, dst)
        return dst
    return copy
