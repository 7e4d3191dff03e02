"""nerfstudio / instant-ngp ``transforms.json`` with the photos and the point cloud.

Folder layout (``ns-train ... --data <folder>`` reads it as it is)::

    <folder>/transforms.json
    <folder>/images/<export name>   (aetherscan.export.names)
    <folder>/scene.ply              the points, referenced by ``ply_file_path``

``transform_matrix`` is camera-to-world with OpenGL camera axes (x right, y up, z backward),
``world_from_opengl_cam(cam_from_world)``; the world frame is the reconstruction's, unchanged, so the
PLY needs no transform. Intrinsics are per frame (``fl_x, fl_y, cx, cy, w, h``) at the photo's
size, with the distortion of OpenCV's model (``k1`` from the view's ``radial_k1``, ``k2 = p1 =
p2 = 0``), and also at the top level where all frames share them: nerfstudio reads distortion
from the top level for every frame as soon as one key is there, so shared values only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aetherscan.export.images import copy_photos, write_missing_photos_readme
from aetherscan.export.names import export_names
from aetherscan.export.ply import export_ply
from aetherscan.geometry.camera import world_from_opengl_cam
from aetherscan.reconstruction import Reconstruction

PLY_NAME = "scene.ply"
_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")


def transforms_document(
    reconstruction: Reconstruction, *, ply_file_path: str | None = PLY_NAME
) -> dict[str, Any]:
    frames = []
    names = export_names([view.name for view in reconstruction.views])
    for view, name in zip(reconstruction.views, names, strict=True):
        frames.append(
            {
                "file_path": f"images/{name}",
                "transform_matrix": world_from_opengl_cam(view.cam_from_world).tolist(),
                "fl_x": float(view.K[0, 0]),
                "fl_y": float(view.K[1, 1]),
                "cx": float(view.K[0, 2]),
                "cy": float(view.K[1, 2]),
                "w": view.width,
                "h": view.height,
                "k1": float(view.radial_k1),
                "k2": 0.0,
                "p1": 0.0,
                "p2": 0.0,
            }
        )
    # OPENCV, which nerfstudio and instant-ngp both read; a pinhole has k1 = 0.
    document: dict[str, Any] = {"camera_model": "OPENCV"}
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
    keep_location: bool = False,
) -> Path:
    """Write ``folder/transforms.json``, ``folder/scene.ply`` and the photos in ``folder/images``
    (without their location unless ``keep_location``)."""
    folder.mkdir(parents=True, exist_ok=True)
    export_ply(reconstruction, folder / PLY_NAME, min_confidence=min_confidence)
    if not copy_photos(
        reconstruction.views, photos, folder / "images", keep_location=keep_location
    ):
        write_missing_photos_readme(folder, reconstruction.views, "nerfstudio transforms.json")
    path = folder / "transforms.json"
    path.write_text(json.dumps(transforms_document(reconstruction), indent=1), encoding="utf-8")
    return path
