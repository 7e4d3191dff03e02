"""nerfstudio / instant-ngp ``transforms.json`` with the photos and the point cloud.

Folder layout (``ns-train ... --data <folder>`` reads it as it is)::

    <folder>/transforms.json
    <folder>/images/<photo name>
    <folder>/scene.ply              the points, referenced by ``ply_file_path``

``transform_matrix`` is camera-to-world with OpenGL camera axes (x right, y up, z backward),
``world_from_opengl_cam(cam_from_world)``; the world frame is the reconstruction's, unchanged, so the
PLY needs no transform. Intrinsics are per frame (``fl_x, fl_y, cx, cy, w, h``) at the photo's
size, and also at the top level where all frames share them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aetherscan.export.images import copy_photos
from aetherscan.export.ply import export_ply
from aetherscan.geometry.camera import world_from_opengl_cam
from aetherscan.reconstruction import Reconstruction

PLY_NAME = "scene.ply"
_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def transforms_document(
    reconstruction: Reconstruction, *, ply_file_path: str | None = PLY_NAME
) -> dict[str, Any]:
    frames = []
    for view in reconstruction.views:
        frames.append(
            {
                "file_path": f"images/{view.name}",
                "transform_matrix": world_from_opengl_cam(view.cam_from_world).tolist(),
                "fl_x": float(view.K[0, 0]),
                "fl_y": float(view.K[1, 1]),
                "cx": float(view.K[0, 2]),
                "cy": float(view.K[1, 2]),
                "w": view.width,
                "h": view.height,
            }
        )
    document: dict[str, Any] = {
        # A pinhole camera: OPENCV with zero distortion, which both tools read.
        "camera_model": "OPENCV",
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
    }
    if frames and all(all(frame[key] == frames[0][key] for key in _INTRINSICS) for frame in frames):
        document.update({key: frames[0][key] for key in _INTRINSICS})
    if ply_file_path is not None:
        document["ply_file_path"] = ply_file_path
    document["frames"] = frames
    return document


def export_transforms(
    reconstruction: Reconstruction,
    folder: Path,
    *,
    photos: Mapping[str, Path] | None = None,
    min_confidence: float = 0.0,
) -> Path:
    """Write ``folder/transforms.json``, ``folder/scene.ply`` and the photos in ``folder/images``."""
    folder.mkdir(parents=True, exist_ok=True)
    export_ply(reconstruction, folder / PLY_NAME, min_confidence=min_confidence)
    copy_photos(reconstruction.views, photos, folder / "images")
    path = folder / "transforms.json"
    path.write_text(json.dumps(transforms_document(reconstruction), indent=1), encoding="utf-8")
    return path
