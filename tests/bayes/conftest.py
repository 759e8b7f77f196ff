"""Fixtures of the Bayesian-path tests."""

from __future__ import annotations

import pytest

from _bayes_helpers import Planted


@pytest.fixture(scope="session")
def planted():
    return Planted()
