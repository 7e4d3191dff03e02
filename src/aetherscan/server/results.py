"""A finished job's files: the saved Reconstruction and its downloads.

``scene.ply`` and ``cameras.json`` are written when the job finishes; every other format of
``aetherscan.export.FORMATS`` is made on its first download and kept beside them, as are the
point frames of ``GET /points`` (``points.bin``). Two downloads of one new file make it once;
downloads of other jobs or formats never wait for it. A refused write raises StorageError.

A job scaled to metres (``PUT /api/jobs/{id}/scale``) has its downloads made anew, at that
scale, in a folder of their own, ``metres-<the factor as float.hex()>/``; the files in the
engine's units stay where they are. When the scale changes, the folders of other scales are
removed as soon as no download uses them (``use_scale``): a download being sent or made
keeps its files to the end.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from aetherscan.engines.base import Photo
from aetherscan.export import FORMATS, available_formats, export
from aetherscan.export.mesh_files import MESH_FORMATS, write_mesh
from aetherscan.mesh import Mesh, load_mesh, make_mesh, save_mesh
from aetherscan.reconstruction import Reconstruction, load_reconstruction, save_reconstruction
from aetherscan.server.protocol import encode_points
from aetherscan.server.storage import SCRATCH_PREFIX, writing

log = logging.getLogger(__name__)

RECONSTRUCTION_FILE = "reconstruction.npz"
POINTS_FILE = "points.bin"  # the binary point frames of GET /points
MESH_FILE = "mesh.npz"  # the mesh that the mesh downloads are written from
EAGER_FORMATS = ("ply", "cameras")  # written when the job finishes
_locks: dict[Path, tuple[threading.Lock, int]] = {}  # file being made -> its lock, users
_locks_guard = threading.Lock()


FORMATS_FILE = "formats.txt"  # the formats this job's reconstruction can be written as
SCALED_PREFIX = "metres-"  # the folder of the downloads at one scale: metres-<factor.hex()>
_scale_uses: dict[Path, int] = {}  # a scale's folder -> downloads using it
_stale: set[Path] = set()  # folders of scales no longer set, removed when their last use ends
_scales_guard = threading.Lock()


def download_files(result_dir: Path | None = None) -> dict[str, str]:
    """Format name to download file name: of one finished job (depth maps only where its
    engine made them), or of every format the server knows."""
    names = list(FORMATS)
    if result_dir is not None and (result_dir / FORMATS_FILE).exists():
        names = (result_dir / FORMATS_FILE).read_text().split()
    return {name: FORMATS[name].filename for name in names if name in FORMATS}


def download_urls(job_id: str, result_dir: Path) -> dict[str, str]:
    files = download_files(result_dir)
    return {name: f"/api/jobs/{job_id}/files/{file}" for name, file in files.items()}


def write_results(reconstruction: Reconstruction, result_dir: Path) -> None:
    """Save the reconstruction and its first downloads. Blocking: run in a thread."""
    with writing("a job's results"):
        result_dir.mkdir(parents=True, exist_ok=True)
        save_reconstruction(reconstruction, result_dir / RECONSTRUCTION_FILE)
        for fmt in EAGER_FORMATS:
            export(reconstruction, fmt, result_dir / FORMATS[fmt].filename)
        (result_dir / FORMATS_FILE).write_text("\n".join(available_formats(reconstruction)))


def download_path(
    result_dir: Path,
    file_name: str,
    photos: Sequence[Photo],
    keep_photo_location: bool = False,
    metres_per_unit: float | None = None,
) -> Path | None:
    """The file ``file_name`` of a finished job, made now if it is an export not yet made;
    None when no format has that name. Exported photos lose their location unless
    ``keep_photo_location``. With ``metres_per_unit`` the file is in metres: hold
    ``use_scale`` for that scale until it is sent. Blocking: run in a thread."""
    files = download_files(result_dir)
    fmt = next((name for name, file in files.items() if file == file_name), None)
    if fmt is None:
        return None
    path = scale_dir(result_dir, metres_per_unit) / file_name
    with making(path):
        if not path.exists():
            _make_export(result_dir, fmt, path, photos, keep_photo_location, metres_per_unit)
    return path


def scale_dir(result_dir: Path, metres_per_unit: float | None) -> Path:
    """The folder of a job's downloads at a scale (None: the engine's units)."""
    if metres_per_unit is None:
        return result_dir
    return result_dir / f"{SCALED_PREFIX}{float(metres_per_unit).hex()}"


def use_scale(result_dir: Path, metres_per_unit: float | None) -> Callable[[], None]:
    """Keep the folder of the downloads at this scale while a download makes or sends a file
    of it; call the function returned (once or more) to let go. A folder whose scale is no
    longer the job's goes when its last download lets go of it."""
    folder = scale_dir(result_dir, metres_per_unit)
    if metres_per_unit is None:
        return lambda: None  # the engine's units: never removed while the job is
    with _scales_guard:
        _scale_uses[folder] = _scale_uses.get(folder, 0) + 1
    released = threading.Event()

    def release() -> None:
        if released.is_set():
            return
        released.set()
        with _scales_guard:
            left = _scale_uses.pop(folder) - 1
            if left:
                _scale_uses[folder] = left
            elif folder in _stale:
                _stale.discard(folder)
                shutil.rmtree(folder, ignore_errors=True)

    return release


def drop_other_scales(result_dir: Path, metres_per_unit: float | None) -> None:
    """Remove the downloads made at every scale but this one (the job's now): at once where no
    download uses them, else when the last one lets go. Blocking: run in a thread."""
    keep = scale_dir(result_dir, metres_per_unit)
    with _scales_guard:
        _stale.discard(keep)
        for folder in result_dir.glob(f"{SCALED_PREFIX}*"):
            if folder == keep:
                continue
            if _scale_uses.get(folder):
                _stale.add(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)


def points_path(result_dir: Path) -> Path:
    """The file of all points as binary point frames, made now on the first request: later
    requests are served from disk, without a cloud in memory. Blocking: run in a thread."""
    path = result_dir / POINTS_FILE
    with making(path):
        if not path.exists():
            cloud = load_reconstruction(result_dir / RECONSTRUCTION_FILE).point_cloud()
            frames, _ = encode_points(cloud, binary=True)
            with _scratch(result_dir) as scratch:
                target = scratch / path.name
                with target.open("wb") as file:
                    for frame in frames:
                        assert isinstance(frame, bytes)  # binary=True: bytes, never JSON text
                        file.write(frame)
                shutil.move(target, path)
    return path


@contextmanager
def making(path: Path) -> Iterator[None]:
    """Held while ``path`` is made, so that two requests for it make it once; a lock per file,
    dropped when nobody waits for it."""
    with _locks_guard:
        lock, users = _locks.get(path, (threading.Lock(), 0))
        _locks[path] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _locks_guard:
            lock, users = _locks[path]
            if users == 1:
                del _locks[path]
            else:
                _locks[path] = (lock, users - 1)


@contextmanager
def _scratch(result_dir: Path) -> Iterator[Path]:
    """A folder in which a file is written before it is moved in whole, so that a half-made
    file is never served; StorageError when the data folder refuses the writes."""
    with (
        writing("a download"),
        tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=result_dir) as scratch,
    ):
        yield Path(scratch)


def media_type(file_name: str) -> str:
    return next(
        (spec.media_type for spec in FORMATS.values() if spec.filename == file_name),
        "application/octet-stream",
    )


def _make_export(
    result_dir: Path,
    fmt: str,
    path: Path,
    photos: Sequence[Photo],
    keep_photo_location: bool,
    metres_per_unit: float | None,
) -> None:
    reconstruction = load_reconstruction(result_dir / RECONSTRUCTION_FILE)
    if metres_per_unit is not None:
        reconstruction = reconstruction.scaled(metres_per_unit, unit="metre")
    with _scratch(result_dir) as scratch:
        target = scratch / path.name
        if fmt in MESH_FORMATS:  # the mesh is made once for its three formats
            write_mesh(_mesh(path.parent, result_dir, reconstruction), fmt, target)
        else:
            export(
                reconstruction,
                fmt,
                target,
                photos={photo.name: photo.path for photo in photos},
                keep_photo_location=keep_photo_location,
            )
        path.parent.mkdir(exist_ok=True)
        shutil.move(target, path)
    log.info("made %s for %s", path.name, result_dir.parent.name)


def _mesh(folder: Path, result_dir: Path, reconstruction: Reconstruction) -> Mesh:
    """The job's mesh at this scale: made on the first request of any mesh format, then read
    from ``mesh.npz`` beside the downloads."""
    path = folder / MESH_FILE
    with making(path):
        if path.exists():
            return load_mesh(path)
        mesh = make_mesh(reconstruction)
        with _scratch(result_dir) as scratch:
            save_mesh(mesh, scratch / MESH_FILE)
            folder.mkdir(exist_ok=True)
            shutil.move(scratch / MESH_FILE, path)
        return mesh
