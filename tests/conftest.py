"""Shared fixtures: the Fast3R reference data (tests/fixtures/fast3r_reference, computed by the
original code with random weights: see its README) and small test photos."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
FAST3R_REFERENCE = FIXTURES / "fast3r_reference"


@pytest.fixture(scope="session")
def fast3r_reference() -> Path:
    return FAST3R_REFERENCE
