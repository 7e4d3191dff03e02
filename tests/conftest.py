"""Shared fixtures: the Fast3R reference data (tests/fixtures/fast3r_reference, computed by the
original code with random weights: see its README) and small test photos."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
FAST3R_REFERENCE = FIXTURES / "fast3r_reference"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def import_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (the scripts import each other by name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    return import_benchmark


@pytest.fixture(scope="session")
def fast3r_reference() -> Path:
    return FAST3R_REFERENCE
