"""``cameras.json``: every photo's size, intrinsics, distortion and pose, with the convention
inside the file, the photo's file name in the other exports, and the engine's verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aetherscan.export.names import export_names
from aetherscan.reconstruction import Reconstruction

FORMAT = "aetherscan-cameras/1"

CONVENTION = (
    "cam_from_world is a 4x4 matrix taking world points to camera coordinates, "
    "X_cam = R @ X_world + t, in OpenCV camera axes: x right, y down, z forward. "
    "K is the 3x3 pinhole matrix in pixels of the photo as stored upright (EXIF orientation "
    "applied), width x height; pixel (0, 0) covers [0, 1) x [0, 1), so the image centre is at "
    "(width / 2, height / 2), as in COLMAP. radial_k1 is the radial distortion of the photo: a "
    "point at (x, y) on the camera's plane z = 1 is seen at the pixel K @ (d x, d y, 1), "
    "d = 1 + radial_k1 (x^2 + y^2) (COLMAP's SIMPLE_RADIAL; 0 for a pinhole). file_name is the "
    "photo's name in the exports that hold the photos (images/<file_name>). The world frame is "
    'the engine\'s; unit says its unit: "metre" where the scene was scaled to metres, null '
    "for the engine's own arbitrary unit."
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
        "unit": reconstruction.unit,  # "metre" once scaled; None: the engine's arbitrary unit
        "cameras": [
            {
                "name": view.name,
                "file_name": file_name,
                "width": view.width,
                "height": view.height,
                "K": view.K.tolist(),
                "radial_k1": float(view.radial_k1),
                "cam_from_world": view.cam_from_world.tolist(),
            }
            for view, file_name in zip(
                reconstruction.views,
                export_names([view.name for view in reconstruction.views]),
                strict=True,
            )
        ],
        "dropped": [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped],
    }


def export_cameras_json(reconstruction: Reconstruction, path: Path) -> Path:
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(cameras_document(reconstruction), indent=1), encoding="utf-8")
    partial.replace(path)
    return path
