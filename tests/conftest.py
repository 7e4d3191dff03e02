"""Shared fixtures: the reference data and real photos from ../shared, and small test photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AETHERSCAN_SHARED", REPO.parent / "shared"))
FAST3R_REFERENCE = SHARED / "fast3r_reference"
DATA = SHARED / "data"
FIXTURES = Path(__file__).parent / "fixtures"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (set AETHERSCAN_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def fast3r_reference() -> Path:
    return _require(FAST3R_REFERENCE)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(DATA)
