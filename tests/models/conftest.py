"""Fixtures of the model tests."""
import os

import pytest

from model_helpers import CONFORMANCE


@pytest.fixture
def conformance_dir():
    """<repo>/../shared/conformance, or skip when it is absent."""
    if not os.path.isdir(CONFORMANCE):
        pytest.skip(f"conformance fixtures not found at {CONFORMANCE} "
                    "(expected <repo>/../shared/conformance)")
    return CONFORMANCE
