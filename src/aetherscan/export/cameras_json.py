"""``cameras.json``: every photo's size, intrinsics and pose, with the convention inside the file,
and the engine's verdict on the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aetherscan.reconstruction import Reconstruction

FORMAT = "aetherscan-cameras/1"

CONVENTION = (
    "cam_from_world is a 4x4 matrix taking world points to camera coordinates, "
    "X_cam = R @ X_world + t, in OpenCV camera axes: x right, y down, z forward. "
    "K is the 3x3 pinhole matrix in pixels of the photo as stored upright (EXIF orientation "
    "applied), width x height; pixel (0, 0) covers [0, 1) x [0, 1), so the image centre is at "
    "(width / 2, height / 2), as in COLMAP. The world frame and its unit are the engine's."
)


def cameras_document(reconstruction: Reconstruction) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "convention": CONVENTION,
        "engine": reconstruction.engine,
        # The engine's verdict on its result ("good" or "uncertain", with one sentence per
        # doubt), and where the masks it used came from ("none", "given", "automatic", "mixed").
        "quality": reconstruction.quality.to_json(),
        "masks": reconstruction.masks,
        "cameras": [
            {
                "name": view.name,
                "width": view.width,
                "height": view.height,
                "K": view.K.tolist(),
                "cam_from_world": view.cam_from_world.tolist(),
            }
            for view in reconstruction.views
        ],
        "dropped": [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped],
    }


def export_cameras_json(reconstruction: Reconstruction, path: Path) -> Path:
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(cameras_document(reconstruction), indent=1), encoding="utf-8")
    partial.replace(path)
    return path
