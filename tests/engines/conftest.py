"""Rendered test scenes with exact cameras (benchmarks/synthetic_scene.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_renderer():
    spec = importlib.util.spec_from_file_location(
        "synthetic_scene", REPO / "benchmarks" / "synthetic_scene.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_scene(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """Six 320 x 240 views of a textured room on a 60 degree arc: (image folder, truth by name)."""
    out = tmp_path_factory.mktemp("synthetic")
    gt_path = _load_renderer().write_scene(out, 6, 320, 240, arc_deg=60)
    truth = {c["name"]: c for c in json.loads(gt_path.read_text())["cameras"]}
    for camera in truth.values():
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = camera["R"], camera["t"]
        camera["cam_from_world"] = pose
    return out / "images", truth
