"""Fixtures of the model tests."""
import os

import pytest

from mt_testing import CONFORMANCE, FIXTURES


@pytest.fixture
def conformance_dir():
    """The original's outputs kept in the repository (tests/fixtures/conformance)."""
    return os.path.join(FIXTURES, "conformance")


@pytest.fixture
def shared_conformance_dir():
    """<repo>/../shared/conformance (the full-size fixtures), or skip when it is absent."""
    if not os.path.isdir(CONFORMANCE):
        pytest.skip(f"full-size conformance fixtures not found at {CONFORMANCE} "
                    "(the repository's reduced copies are checked regardless)")
    return CONFORMANCE
