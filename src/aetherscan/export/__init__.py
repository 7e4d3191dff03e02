"""Exports: a Reconstruction to PLY, GLB, a COLMAP model, transforms.json, cameras.json, depth
maps, or one archive with all of them. Every convention is written down in docs/exports.md.

The server, the CLI and users call three names::

    FORMATS                      key -> ExportFormat(label, filename, media_type, needs_photos)
    export(reconstruction, fmt, path, photos=..., min_confidence=...)
    export_file(reconstruction, path, photos=...)     the format picked from the path

``photos`` maps each view's name to its original photo file (by default the reconstruction's
own ``photo_paths``, which ``aetherscan.reconstruct`` fills in); the formats that come with the
photos (``needs_photos``) copy them in under their export names (``aetherscan.export.names``:
safe and unique on every file system, the same in every file that refers to a photo) and
without their location unless ``keep_photo_location``. Without photos they write the model
alone, with a README.txt that says so and where each photo goes. Formats whose ``filename`` is
a zip write a folder instead when ``path`` is not a .zip.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from aetherscan.export.archive import write_everything, zip_folder
from aetherscan.export.cameras_json import export_cameras_json
from aetherscan.export.colmap_model import export_colmap
from aetherscan.export.depth_maps import export_depth_maps, has_depth
from aetherscan.export.glb import export_glb
from aetherscan.export.mesh_files import MESH_FORMATS, write_mesh
from aetherscan.export.nerfstudio import export_transforms
from aetherscan.export.ply import export_ply
from aetherscan.geometry.camera import world_from_opengl_cam
from aetherscan.mesh import MIN_POINTS, Mesh, make_mesh
from aetherscan.reconstruction import Reconstruction


class ExportFormat(NamedTuple):
    label: str  # for people: the download menu, --help
    filename: str  # the file's usual name; a .zip for the formats that are folders
    media_type: str
    needs_photos: bool  # comes with the photos: pass ``photos`` to export()


FORMATS: dict[str, ExportFormat] = {
    "ply": ExportFormat("Point cloud (PLY)", "scene.ply", "application/octet-stream", False),
    "ply_ascii": ExportFormat("Point cloud (PLY, text)", "scene_ascii.ply", "text/plain", False),
    "glb": ExportFormat("Points and cameras (GLB)", "scene.glb", "model/gltf-binary", False),
    "colmap": ExportFormat(
        "COLMAP model (binary) with photos", "colmap.zip", "application/zip", True
    ),
    "colmap_text": ExportFormat(
        "COLMAP model (text) with photos", "colmap_text.zip", "application/zip", True
    ),
    "nerfstudio": ExportFormat(
        "nerfstudio / instant-ngp transforms.json with photos",
        "nerfstudio.zip",
        "application/zip",
        True,
    ),
    "cameras": ExportFormat("Cameras (cameras.json)", "cameras.json", "application/json", False),
    "depth": ExportFormat("Depth and confidence maps", "depth.zip", "application/zip", False),
    "all": ExportFormat("Everything (zip)", "scene.zip", "application/zip", True),
    "mesh_ply": ExportFormat(
        "Mesh (PLY, vertex colours)", "mesh.ply", "application/octet-stream", False
    ),
    "mesh_glb": ExportFormat("Mesh (GLB)", "mesh.glb", "model/gltf-binary", False),
    "mesh_obj": ExportFormat("Mesh (OBJ, vertex colours)", "mesh.obj", "text/plain", False),
}


def available_formats(reconstruction: Reconstruction) -> list[str]:
    """The keys of FORMATS this reconstruction can be written as (depth maps need an engine
    that made them, a mesh enough points)."""
    keys = [key for key in FORMATS if key != "depth" or has_depth(reconstruction)]
    if reconstruction.num_points < MIN_POINTS:
        keys = [key for key in keys if key not in MESH_FORMATS]
    return keys


def export(
    reconstruction: Reconstruction,
    fmt: str,
    path: Path,
    *,
    photos: Mapping[str, Path] | None = None,
    min_confidence: float = 0.0,
    keep_photo_location: bool = False,
) -> Path:
    """Write ``reconstruction`` as ``fmt`` (a key of FORMATS) to ``path``; returns ``path``.

    Folder formats (colmap, colmap_text, nerfstudio, depth, all) write a zip when ``path`` ends
    in .zip and a folder otherwise (for nerfstudio, ``path`` may also name the transforms.json).
    ``photos`` defaults to ``reconstruction.photo_paths``; where neither names the photos, the
    formats with photos say in their README.txt that images/ is missing and what goes there.
    The photos they copy lose the place where they were taken (EXIF GPS, XMP and IPTC
    locations) unless ``keep_photo_location``; their pixels and other fields stay.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; the formats are {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if photos is None and reconstruction.photo_paths:
        photos = reconstruction.photo_paths
    options = _Options(photos, min_confidence, keep_photo_location)
    if not FORMATS[fmt].filename.endswith(".zip"):
        _write(reconstruction, fmt, path, options)
    elif path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
            _write(reconstruction, fmt, Path(tmp), options)
            zip_folder(Path(tmp), path)
    elif fmt == "nerfstudio" and path.name == "transforms.json":
        _write(reconstruction, fmt, path.parent, options)
    else:
        _write(reconstruction, fmt, path, options)
    return path


def export_file(
    reconstruction: Reconstruction,
    path: Path | str,
    photos: Mapping[str, Path] | None = None,
    *,
    keep_photo_location: bool = False,
) -> Path:
    """Write the format that ``path`` names: .ply, .glb, .zip (everything), transforms.json
    (nerfstudio, beside its photos), any other .json (cameras.json), .obj (the mesh), or a path
    without a suffix (a folder with a binary COLMAP model and the photos). The photos are
    ``photos``, or else the reconstruction's ``photo_paths`` (see ``export``). For the mesh as
    PLY or GLB, use ``export_mesh_file``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.lower() == "transforms.json":
        fmt = "nerfstudio"
    elif suffix in _BY_SUFFIX:
        fmt = _BY_SUFFIX[suffix]
    elif suffix == "" or path.is_dir():
        fmt = "colmap"
    else:
        raise ValueError(
            f"cannot tell the export format from {path.name!r}: use .ply, .glb, .zip, .obj, "
            "cameras.json, transforms.json or a folder (COLMAP model)"
        )
    return export(reconstruction, fmt, path, photos=photos, keep_photo_location=keep_photo_location)


def export_mesh_file(reconstruction: Reconstruction, path: Path | str) -> Path:
    """Write the reconstruction's mesh (``aetherscan.mesh``) as .ply, .glb or .obj, the format
    picked from ``path``; MeshError when its points are too few or too sparse."""
    path = Path(path)
    fmt = next((key for key, suffix in MESH_FORMATS.items() if suffix == path.suffix.lower()), None)
    if fmt is None:
        raise ValueError(f"a mesh is written as .ply, .glb or .obj, not {path.name!r}")
    return export(reconstruction, fmt, path)


def mesh_of(reconstruction: Reconstruction) -> Mesh:
    """The reconstruction's mesh, made once per Reconstruction object and kept with it."""
    mesh = reconstruction.__dict__.get("_mesh")
    if mesh is None:
        mesh = make_mesh(reconstruction)
        reconstruction.__dict__["_mesh"] = mesh
    return mesh


_BY_SUFFIX = {".ply": "ply", ".glb": "glb", ".zip": "all", ".json": "cameras", ".obj": "mesh_obj"}


class _Options(NamedTuple):
    photos: Mapping[str, Path] | None
    min_confidence: float
    keep_location: bool


def _write(reconstruction: Reconstruction, fmt: str, target: Path, options: _Options) -> None:
    photos, min_confidence, keep_location = options
    match fmt:
        case "ply" | "ply_ascii":
            export_ply(
                reconstruction, target, min_confidence=min_confidence, ascii=fmt == "ply_ascii"
            )
        case "glb":
            export_glb(reconstruction, target, min_confidence=min_confidence)
        case "colmap" | "colmap_text":
            export_colmap(
                reconstruction,
                target,
                photos=photos,
                min_confidence=min_confidence,
                binary=fmt == "colmap",
                keep_location=keep_location,
            )
        case "nerfstudio":
            export_transforms(
                reconstruction,
                target,
                photos=photos,
                min_confidence=min_confidence,
                keep_location=keep_location,
            )
        case "cameras":
            export_cameras_json(reconstruction, target)
        case "depth":
            export_depth_maps(reconstruction, target)
        case "mesh_ply" | "mesh_glb" | "mesh_obj":
            write_mesh(mesh_of(reconstruction), fmt, target)
        case "all":
            write_everything(
                reconstruction,
                target,
                photos=photos,
                min_confidence=min_confidence,
                keep_location=keep_location,
            )


__all__ = [
    "FORMATS",
    "ExportFormat",
    "available_formats",
    "export",
    "export_file",
    "export_mesh_file",
    "mesh_of",
    "world_from_opengl_cam",
]
