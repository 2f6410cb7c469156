"""Fixtures of the model tests."""
import os

import pytest

from mt_testing import CONFORMANCE


@pytest.fixture
def conformance_dir():
    """<repo>/../shared/conformance, or skip when it is absent."""
    if not os.path.isdir(CONFORMANCE):
        pytest.skip(f"conformance fixtures not found at {CONFORMANCE} "
                    "(expected <repo>/../shared/conformance)")
    return CONFORMANCE
