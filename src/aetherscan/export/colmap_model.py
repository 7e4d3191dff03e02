"""COLMAP sparse models (cameras, images, points3D; text or binary) with the photos.

Folder layout, the one COLMAP, nerfstudio (``colmap`` data parser) and Gaussian-splatting
trainers read as it is::

    <folder>/images/<export name>         the photos, upright (names: aetherscan.export.names)
    <folder>/sparse/0/cameras.bin         or .txt: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL or
                                          OPENCV (k1 only) at the photo's size
    <folder>/sparse/0/images.bin          poses (qvec, tvec = cam_from_world), the photos' names
    <folder>/sparse/0/points3D.bin        coloured points with their observations

The files are the classic three of COLMAP's model format; COLMAP 3.12 and later read them and
add one trivial rig and frame per camera. A view with radial distortion (``radial_k1``, the
COLMAP engine's estimate) gets a camera model with it, so the original photos beside the model
are described as they are. Each point is observed once, in the view the engine attributes it
to, at its exact projection with that distortion (so its reprojection error is 0); points that
do not project into their own photo are left out. Models keep at most ``max_points`` points, a
random subset drawn with a fixed seed so that the text and binary models agree. COLMAP's text
format splits lines at spaces, so photo names with spaces only go into binary models.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aetherscan.export.images import copy_photos, write_missing_photos_readme
from aetherscan.export.names import export_names
from aetherscan.reconstruction import Reconstruction, View

log = logging.getLogger(__name__)

MAX_POINTS = 200_000
_SIMPLE_PINHOLE, _PINHOLE, _SIMPLE_RADIAL, _OPENCV = 0, 1, 2, 4
_MODEL_NAMES = {
    _SIMPLE_PINHOLE: "SIMPLE_PINHOLE",
    _PINHOLE: "PINHOLE",
    _SIMPLE_RADIAL: "SIMPLE_RADIAL",
    _OPENCV: "OPENCV",
}
_NO_POINT3D = np.iinfo(np.uint64).max  # a 2D point without a 3D point (-1 in text files)

_POINT3D_DTYPE = np.dtype(  # a point with a track of one element, as points3D.bin stores it
    [
        ("id", "<u8"),
        ("xyz", "<f8", (3,)),
        ("rgb", "u1", (3,)),
        ("error", "<f8"),
        ("track_length", "<u8"),
        ("image_id", "<u4"),
        ("point2d_index", "<u4"),
    ]
)
_POINT2D_DTYPE = np.dtype([("xy", "<f8", (2,)), ("point3d_id", "<u8")])


@dataclass
class _Camera:
    id: int
    model: int
    width: int
    height: int
    params: tuple[float, ...]


@dataclass
class _Image:
    id: int
    camera_id: int
    name: str
    qvec: np.ndarray  # (4,) w, x, y, z
    tvec: np.ndarray  # (3,)
    xy: np.ndarray  # (P, 2) float64 observations
    point3d_ids: np.ndarray  # (P,) uint64


@dataclass
class _Points:
    ids: np.ndarray  # (M,) uint64
    xyz: np.ndarray  # (M, 3) float64 (exactly the float32 positions)
    rgb: np.ndarray  # (M, 3) uint8
    image_ids: np.ndarray  # (M,) uint32
    point2d_indices: np.ndarray  # (M,) uint32


def export_colmap(
    reconstruction: Reconstruction,
    folder: Path,
    *,
    photos: Mapping[str, Path] | None = None,
    min_confidence: float = 0.0,
    binary: bool = True,
    max_points: int = MAX_POINTS,
    keep_location: bool = False,
) -> Path:
    """Write ``folder/sparse/0`` (binary or text) and copy the photos into ``folder/images``
    (without their location unless ``keep_location``)."""
    model = folder / "sparse" / "0"
    write_colmap_model(
        reconstruction, model, min_confidence=min_confidence, binary=binary, max_points=max_points
    )
    if not copy_photos(
        reconstruction.views, photos, folder / "images", keep_location=keep_location
    ):
        write_missing_photos_readme(folder, reconstruction.views, "a COLMAP model in sparse/0")
    return folder


def write_colmap_model(
    reconstruction: Reconstruction,
    folder: Path,
    *,
    min_confidence: float = 0.0,
    binary: bool = True,
    max_points: int = MAX_POINTS,
) -> None:
    """Write cameras, images and points3D (.bin or .txt) into ``folder``."""
    names = export_names([view.name for view in reconstruction.views])
    if not binary and not text_names_ok(reconstruction.views):
        spaced = [name for name in names if _has_space(name)]
        raise ValueError(
            f"COLMAP's text model cannot hold photo names with spaces ({', '.join(spaced)}); "
            "use the binary model"
        )
    cameras, camera_ids = _cameras(reconstruction.views)
    images, points = _images_and_points(
        reconstruction, names, camera_ids, min_confidence, max_points
    )
    folder.mkdir(parents=True, exist_ok=True)
    if binary:
        _write_binary(folder, cameras, images, points)
    else:
        _write_text(folder, cameras, images, points)


def rotation_to_qvec(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a 3x3 rotation matrix (Shepperd's method)."""
    trace = np.trace(R)
    # Pivot on the largest of w, x, y, z so that the square root never nears zero.
    candidates = [trace, R[0, 0], R[1, 1], R[2, 2]]
    pivot = int(np.argmax(candidates))
    if pivot == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif pivot == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif pivot == 2:
        s = 2.0 * np.sqrt(1.0 - R[0, 0] + R[1, 1] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 - R[0, 0] - R[1, 1] + R[2, 2])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    qvec = np.array(q, dtype=np.float64)
    qvec /= np.linalg.norm(qvec)
    return -qvec if qvec[0] < 0 else qvec


def _cameras(views: Sequence[View]) -> tuple[list[_Camera], list[int]]:
    """One COLMAP camera per distinct (size, intrinsics, distortion); every view's camera id."""
    cameras: list[_Camera] = []
    by_key: dict[tuple, int] = {}
    camera_ids = []
    for view in views:
        fx, fy, cx, cy = (
            float(v) for v in (view.K[0, 0], view.K[1, 1], view.K[0, 2], view.K[1, 2])
        )
        if abs(view.K[0, 1]) > 1e-9 * fx:
            raise ValueError(f"view {view.name!r} has a skewed K; COLMAP pinhole models have none")
        k1 = float(view.radial_k1)
        if k1 == 0.0:
            model, params = (
                (_SIMPLE_PINHOLE, (fx, cx, cy)) if fx == fy else (_PINHOLE, (fx, fy, cx, cy))
            )
        elif fx == fy:
            model, params = _SIMPLE_RADIAL, (fx, cx, cy, k1)
        else:  # OpenCV's k1 is SIMPLE_RADIAL's k: the same radial factor 1 + k1 r^2
            model, params = _OPENCV, (fx, fy, cx, cy, k1, 0.0, 0.0, 0.0)
        key = (model, view.width, view.height, params)
        if key not in by_key:
            by_key[key] = len(cameras) + 1
            cameras.append(_Camera(by_key[key], model, view.width, view.height, params))
        camera_ids.append(by_key[key])
    return cameras, camera_ids


def _images_and_points(
    reconstruction: Reconstruction,
    names: list[str],
    camera_ids: list[int],
    min_confidence: float,
    max_points: int,
) -> tuple[list[_Image], _Points]:
    cloud = reconstruction.point_cloud(min_confidence)  # grouped by view, in view order
    if len(cloud) > max_points:
        keep = np.random.default_rng(0).choice(len(cloud), max_points, replace=False)
        cloud = cloud.select(np.sort(keep))
    xyz = cloud.xyz.astype(np.float64)
    xy = np.zeros((len(cloud), 2))
    visible = np.zeros(len(cloud), bool)
    for index, view in enumerate(reconstruction.views):
        own = cloud.view_index == index
        xy[own], visible[own] = project(view, xyz[own])
    if not visible.all():
        log.info("COLMAP model: %d points outside their own photo left out", (~visible).sum())
    cloud, xyz, xy = cloud.select(visible), xyz[visible], xy[visible]
    ids = np.arange(1, len(cloud) + 1, dtype=np.uint64)
    # A point's index among its image's 2D points: its place within its view's group.
    first_of_view = np.searchsorted(cloud.view_index, np.arange(len(reconstruction.views)))
    point2d_indices = np.arange(len(cloud)) - first_of_view[cloud.view_index]

    images = []
    for index, view in enumerate(reconstruction.views):
        own = cloud.view_index == index
        qvec = rotation_to_qvec(view.cam_from_world[:3, :3])
        tvec = np.asarray(view.cam_from_world[:3, 3], dtype=np.float64)
        images.append(
            _Image(index + 1, camera_ids[index], names[index], qvec, tvec, xy[own], ids[own])
        )
    points = _Points(
        ids=ids,
        xyz=xyz,
        rgb=cloud.rgb,
        image_ids=(cloud.view_index + 1).astype(np.uint32),
        point2d_indices=point2d_indices.astype(np.uint32),
    )
    return images, points


def project(view: View, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions of world points ``xyz`` (N, 3) in the view's photo, with its radial
    distortion (COLMAP's SIMPLE_RADIAL; pixel convention COLMAP's, the same as ours), and which
    of them lie inside the photo."""
    cam = xyz @ view.cam_from_world[:3, :3].T + view.cam_from_world[:3, 3]
    z = cam[:, 2]
    in_front = z > 1e-12
    K = np.asarray(view.K, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # behind the camera: nan, left out
        normalised = cam[:, :2] / z[:, None]  # (N, 2) on the plane z = 1
        r2 = (normalised**2).sum(axis=1)
        distorted = normalised * (1.0 + view.radial_k1 * r2)[:, None]
        xy = distorted @ K[:2, :2].T + K[:2, 2]
        # Past 1 + 3 k1 r^2 = 0 a barrel distortion folds back: such points are not in the photo.
        unfolded = 1.0 + 3.0 * view.radial_k1 * r2 > 0
    inside = (
        in_front
        & unfolded
        & (xy[:, 0] >= 0)
        & (xy[:, 0] < view.width)
        & (xy[:, 1] >= 0)
        & (xy[:, 1] < view.height)
    )
    return xy, inside


def _write_binary(
    folder: Path, cameras: list[_Camera], images: list[_Image], points: _Points
) -> None:
    with open(folder / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(cameras)))
        for cam in cameras:
            f.write(struct.pack("<IiQQ", cam.id, cam.model, cam.width, cam.height))
            f.write(struct.pack(f"<{len(cam.params)}d", *cam.params))
    with open(folder / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(images)))
        for image in images:
            f.write(struct.pack("<I4d3dI", image.id, *image.qvec, *image.tvec, image.camera_id))
            f.write(image.name.encode("utf-8") + b"\0")
            f.write(struct.pack("<Q", len(image.xy)))
            observations = np.empty(len(image.xy), _POINT2D_DTYPE)
            observations["xy"] = image.xy
            observations["point3d_id"] = image.point3d_ids
            observations.tofile(f)
    with open(folder / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(points.ids)))
        records = np.empty(len(points.ids), _POINT3D_DTYPE)
        records["id"] = points.ids
        records["xyz"] = points.xyz
        records["rgb"] = points.rgb
        records["error"] = 0.0
        records["track_length"] = 1
        records["image_id"] = points.image_ids
        records["point2d_index"] = points.point2d_indices
        records.tofile(f)


def text_names_ok(views: Sequence[View]) -> bool:
    """Whether COLMAP's text format can hold these photos' names (it splits lines at spaces)."""
    return not any(_has_space(name) for name in export_names([view.name for view in views]))


def _has_space(name: str) -> bool:
    return any(c.isspace() for c in name)


def _write_text(
    folder: Path, cameras: list[_Camera], images: list[_Image], points: _Points
) -> None:
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cameras)}",
    ]
    for cam in cameras:
        params = " ".join(repr(p) for p in cam.params)
        lines.append(f"{cam.id} {_MODEL_NAMES[cam.model]} {cam.width} {cam.height} {params}")
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(images)}",
    ]
    for image in images:
        pose = " ".join(repr(float(v)) for v in (*image.qvec, *image.tvec))
        lines.append(f"{image.id} {pose} {image.camera_id} {image.name}")
        lines.append(
            " ".join(
                f"{x:.6f} {y:.6f} {i}"
                for (x, y), i in zip(image.xy.tolist(), image.point3d_ids.tolist(), strict=True)
            )
        )
    (folder / "images.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    header = (
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {len(points.ids)}\n"
    )
    rows = zip(
        points.ids.tolist(),
        points.xyz.tolist(),
        points.rgb.tolist(),
        points.image_ids.tolist(),
        points.point2d_indices.tolist(),
        strict=True,
    )
    with open(folder / "points3D.txt", "w", encoding="utf-8") as f:
        f.write(header)
        # 9 significant digits give back the float32 positions exactly.
        f.writelines(
            f"{pid} {x:.9g} {y:.9g} {z:.9g} {r} {g} {b} 0 {image_id} {p2d}\n"
            for pid, (x, y, z), (r, g, b), image_id, p2d in rows
        )
