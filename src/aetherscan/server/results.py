"""A finished job's files: the saved Reconstruction, scene.ply, cameras.json and the exports.

``scene.ply`` and ``cameras.json`` are written when the job finishes. Every format that
``aetherscan.export.FORMATS`` lists (once that module exists) is served too, made on the first
download and kept beside the others. Until then the two files come from the small writers here.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aetherscan.engines.base import Photo
from aetherscan.reconstruction import Reconstruction, load_reconstruction, save_reconstruction

log = logging.getLogger(__name__)

RECONSTRUCTION_FILE = "reconstruction.npz"
BUILTIN_FILES = {"ply": "scene.ply", "cameras": "cameras.json"}
_making = threading.Lock()


def download_files() -> dict[str, str]:
    """Format name to the file name it is downloaded as, for every format served."""
    files = dict(BUILTIN_FILES)
    for name, spec in _export_formats().items():
        files.setdefault(name, _file_name(name, spec))
    return files


def download_urls(job_id: str) -> dict[str, str]:
    return {name: f"/api/jobs/{job_id}/files/{file}" for name, file in download_files().items()}


def write_results(reconstruction: Reconstruction, result_dir: Path) -> None:
    """Save the reconstruction and its first downloads. Blocking: run in a thread."""
    result_dir.mkdir(parents=True, exist_ok=True)
    save_reconstruction(reconstruction, result_dir / RECONSTRUCTION_FILE)
    write_ply(reconstruction, result_dir / BUILTIN_FILES["ply"])
    (result_dir / BUILTIN_FILES["cameras"]).write_text(
        json.dumps(cameras_document(reconstruction), indent=1)
    )


def download_path(result_dir: Path, file_name: str, photos: Sequence[Photo]) -> Path | None:
    """The file ``file_name`` of a finished job, made now if it is an export not yet made;
    None when no format has that name. Blocking: run in a thread."""
    files = download_files()
    if file_name not in files.values():
        return None
    path = result_dir / file_name
    with _making:  # two downloads of a new format at once make it once
        if not path.exists():
            fmt = next(name for name, file in files.items() if file == file_name)
            _make_export(result_dir, fmt, path, photos)
    return path


def write_ply(reconstruction: Reconstruction, path: Path) -> None:
    """Binary little-endian PLY: x y z (float), red green blue (uchar), confidence (float)."""
    cloud = reconstruction.point_cloud()
    vertex = np.empty(
        len(cloud),
        dtype=[
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("confidence", "<f4"),
        ],
    )
    for axis, key in enumerate("xyz"):
        vertex[key] = cloud.xyz[:, axis]
    for channel, key in enumerate(("red", "green", "blue")):
        vertex[key] = cloud.rgb[:, channel]
    vertex["confidence"] = cloud.confidence
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment AetherScan, engine {reconstruction.engine}\n"
        f"element vertex {len(cloud)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "property float confidence\nend_header\n"
    )
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as file:
        file.write(header.encode("ascii"))
        file.write(vertex.tobytes())
    tmp.replace(path)


def cameras_document(reconstruction: Reconstruction) -> dict:
    return {
        "engine": reconstruction.engine,
        "convention": (
            "cam_from_world maps world to camera coordinates, OpenCV axes (x right, y down, "
            "z forward); K is in pixels of the original photo after its EXIF orientation"
        ),
        "cameras": [
            {
                "name": view.name,
                "width": view.width,
                "height": view.height,
                "K": np.asarray(view.K, float).tolist(),
                "cam_from_world": np.asarray(view.cam_from_world, float).tolist(),
            }
            for view in reconstruction.views
        ],
        "dropped": [{"name": d.name, "reason": d.reason} for d in reconstruction.dropped],
    }


def _export_formats() -> dict:
    try:
        from aetherscan.export import FORMATS
    except ImportError:
        return {}
    return dict(FORMATS)


def _file_name(name: str, spec: object) -> str:
    """The download name of an export format: FORMATS values may be a file name
    ("scene.glb"), an extension (".glb") or an object with a ``filename``/``extension``."""
    for attribute in ("filename", "file_name"):
        if isinstance(getattr(spec, attribute, None), str):
            return getattr(spec, attribute)
    for attribute in ("extension", "suffix"):
        if isinstance(getattr(spec, attribute, None), str):
            spec = getattr(spec, attribute)
    if isinstance(spec, str) and spec:
        if spec.startswith("."):
            return f"scene{spec}"
        return spec if "." in spec else f"scene.{spec}"
    return f"scene.{name}"


def _make_export(result_dir: Path, fmt: str, path: Path, photos: Sequence[Photo]) -> None:
    reconstruction = load_reconstruction(result_dir / RECONSTRUCTION_FILE)
    from aetherscan.export import export

    # The exporter may pick by extension: give it the final name, in a folder of its own.
    with tempfile.TemporaryDirectory(dir=result_dir) as scratch:
        target = Path(scratch) / path.name
        export(reconstruction, fmt, target, photos=list(photos))
        shutil.move(target, path)
    log.info("made %s for %s", path.name, result_dir.parent.name)
