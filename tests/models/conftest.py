"""Fixtures of the model tests."""
import os

import pytest

from mt_testing import FIXTURES


@pytest.fixture
def conformance_dir():
    """The original's outputs kept in the repository (tests/fixtures/conformance)."""
    return os.path.join(FIXTURES, "conformance")

