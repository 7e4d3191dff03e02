"""Fixtures of the server tests; the kit they use is in server_kit.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def server(tmp_path: Path, engine: ScriptedEngine) -> Iterator[RunningServer]:
    with RunningServer(make_settings(tmp_path / "data"), engine) as running:
        yield running


@pytest.fixture
def three_photos() -> dict[str, bytes]:
    return {
        "image1.jpg": photo_bytes((200, 30, 30)),
        "image2.jpg": photo_bytes((30, 200, 30)),
        "image3.jpg": photo_bytes((30, 30, 200)),
    }
