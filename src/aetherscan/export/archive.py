"""Every export in one folder (``export(..., "all", path)`` zips it when ``path`` is a .zip),
laid out so that it is at once a COLMAP dataset (``images/`` + ``sparse/0``) and a nerfstudio
dataset (``transforms.json``)::

    README.txt          what each file is, and where the conventions are written
    scene.ply           points (binary PLY with confidence)
    scene.glb           points and camera frustums
    cameras.json        every photo's size, K and cam_from_world
    transforms.json     nerfstudio / instant-ngp cameras, ply_file_path = scene.ply
    images/             the photos, under their export names (aetherscan.export.names), by
                        default without the place where they were taken; made without
                        photos, README.txt says that they are missing and where each goes
    sparse/0/           the COLMAP model, binary (.bin) and text (.txt, left out where a
                        photo name has a space, which COLMAP's text format cannot hold)
    depth/              depth and confidence maps (only where the engine made them)
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

from aetherscan.export.cameras_json import export_cameras_json
from aetherscan.export.colmap_model import text_names_ok, write_colmap_model
from aetherscan.export.depth_maps import export_depth_maps, has_depth
from aetherscan.export.glb import export_glb
from aetherscan.export.images import missing_photos_note
from aetherscan.export.nerfstudio import export_transforms
from aetherscan.reconstruction import Reconstruction

# Stored as they are: images are compressed already, and float32 point data (PLY, GLB) deflates
# by less than a tenth for a second per million points. COLMAP models, JSON and the depth
# NPZ files shrink by a half and are deflated.
_STORED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".zip", ".ply", ".glb"}

_README = """AetherScan export ({engine} engine, {views} photos, {points} points)

scene.ply        points: x, y, z float, red, green, blue uchar, confidence float (higher is better)
scene.glb        points and camera frustums (glTF 2.0; y up: world x, y, z -> x, -y, -z)
cameras.json     per photo: name, width, height, K, cam_from_world (OpenCV axes)
transforms.json  nerfstudio / instant-ngp (OpenGL camera axes), with images/ and scene.ply
sparse/0         COLMAP model (binary and text), with images/: colmap, nerfstudio and
                 Gaussian-splatting trainers read this folder as it is
depth/           depth maps as NPZ and 16-bit PNG, see depth/depth.json (when present)

Conventions: cam_from_world maps world points to OpenCV camera coordinates (x right, y down,
z forward); K is in pixels of the upright photo, pixel (0, 0) covering [0, 1) x [0, 1), with
radial distortion radial_k1 (COLMAP's SIMPLE_RADIAL, k1 in transforms.json) where the engine
estimated it. The world frame is the engine's; {unit}. All of it is written down in
docs/exports.md of AetherScan.

Photos: {photos}
"""
_NO_UNIT = "its unit is the engine's own, with no metric scale"
_UNITS = {"metre": "lengths (points, camera positions, depths) are in metres"}
_PHOTOS_STRIPPED = (
    "images/ holds the photos with their pixels and camera fields unchanged, but without\n"
    "the place where they were taken (EXIF GPS, XMP and IPTC locations are left out). Their\n"
    "names are made safe and unique for Windows, macOS and Linux; cameras.json gives each\n"
    "photo's original name beside its file_name."
)
_PHOTOS_KEPT = (
    "images/ holds the photos as they were uploaded, with any location they carry. Their\n"
    "names are made safe and unique for Windows, macOS and Linux; cameras.json gives each\n"
    "photo's original name beside its file_name."
)


def write_everything(
    reconstruction: Reconstruction,
    folder: Path,
    *,
    photos: Mapping[str, Path] | None = None,
    min_confidence: float = 0.0,
    keep_location: bool = False,
) -> Path:
    export_transforms(
        reconstruction,
        folder,
        photos=photos,
        min_confidence=min_confidence,
        keep_location=keep_location,
    )
    export_glb(reconstruction, folder / "scene.glb", min_confidence=min_confidence)
    export_cameras_json(reconstruction, folder / "cameras.json")
    for binary in (True, False) if text_names_ok(reconstruction.views) else (True,):
        write_colmap_model(
            reconstruction, folder / "sparse" / "0", min_confidence=min_confidence, binary=binary
        )
    if has_depth(reconstruction):
        export_depth_maps(reconstruction, folder / "depth")
    readme = _README.format(
        engine=reconstruction.engine,
        views=len(reconstruction.views),
        points=len(reconstruction.point_cloud(min_confidence)),
        photos=(
            missing_photos_note(reconstruction.views)
            if photos is None
            else _PHOTOS_KEPT
            if keep_location
            else _PHOTOS_STRIPPED
        ),
        unit=_UNITS.get(reconstruction.unit or "", _NO_UNIT),
    )
    (folder / "README.txt").write_text(readme, encoding="utf-8")
    return folder


def zip_folder(folder: Path, path: Path) -> Path:
    """Zip every file under ``folder`` (names relative to it) into ``path``."""
    partial = path.with_name(path.name + ".part")
    with zipfile.ZipFile(partial, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if not file.is_file():
                continue
            stored = file.suffix.lower() in _STORED_SUFFIXES
            archive.write(
                file,
                file.relative_to(folder).as_posix(),
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                compresslevel=None if stored else 1,
            )
    partial.replace(path)
    return path
