"""The COLMAP engine leaves nothing in the temporary folder after a reconstruction: its working
folder is removed and glog writes to the child's stderr, not to log files of its own."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from aetherscan.engines.base import EngineError, Photo

FLOWERPOT = Path(__file__).resolve().parents[1] / "fixtures" / "flowerpot"


def test_no_temporary_file_is_left(tmp_path, monkeypatch):
    from aetherscan.engines.colmap import ColmapEngine

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the child process reads it too
    monkeypatch.setattr(tempfile, "tempdir", None)
    photos = [Photo(p.name, p) for p in sorted(FLOWERPOT.glob("*.jpg"))[:3]]
    with contextlib.suppress(EngineError):  # placed or not, these photos leave nothing
        ColmapEngine(max_image_px=320).reconstruct(photos)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
