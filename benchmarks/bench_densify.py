"""CPU densification on real photos: points, time and depth error against the SfM points.

    PYTHONPATH=src python benchmarks/bench_densify.py [--shared ../shared]
        [--sets sceaux_castle flowerpot] [--cache /tmp/aetherscan_bench_densify]

For each photo set, plain pycolmap (SIFT, exhaustive matching, incremental mapping, one
SIMPLE_RADIAL camera per photo) poses the photos at 1024 px on the long side; the result is
cached in --cache, so the second run starts at once. The photos are then undistorted at 1024 px
and at full resolution, and ``densify`` runs on each. temple_ring runs with its exact cameras and no SfM points.
Reported per run:

* points: the fused, duplicate-free points;
* seconds: wall time of ``densify`` (decoding and undistortion excluded) and its CPU time, all
  threads together (a steadier number on a shared machine);
* depth error: |depth map - depth of the SfM point| / depth over every SfM point that projects
  onto a pixel with a checked depth, median and 90th percentile. SfM points are independent
  of the stereo matching (they only set its disparity range), so this measures both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from aetherscan.engines.densify import DensifyOptions, densify
from aetherscan.photos import open_photo_array

SFM_LONG_SIDE_PX = 1024
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def pose_photos(folder: Path, cache: Path) -> dict[str, np.ndarray]:
    """Names, K at full resolution (pixel-centre convention), radial distortion, poses and
    sparse points of the largest pycolmap model, cached as an npz."""
    cached = cache / "sfm.npz"
    if cached.exists():
        return dict(np.load(cached))
    import pycolmap

    work = cache / "colmap"
    shutil.rmtree(work, ignore_errors=True)
    (work / "images").mkdir(parents=True)
    sizes = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
        image = open_photo_array(path)
        sizes[path.stem] = image.shape[1::-1]
        scale = min(1.0, SFM_LONG_SIDE_PX / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(work / "images" / f"{path.stem}.png"), small[:, :, ::-1])
    database = work / "database.db"
    pycolmap.extract_features(database, work / "images", camera_mode=pycolmap.CameraMode.PER_IMAGE)
    pycolmap.match_exhaustive(database)
    models = pycolmap.incremental_mapping(database, work / "images", work / "sparse")
    model = max(models.values(), key=lambda m: m.num_reg_images())
    names, Ks, radial, poses = [], [], [], []
    for image in sorted(model.images.values(), key=lambda i: i.name):
        camera = model.cameras[image.camera_id]
        if camera.model != pycolmap.CameraModelId.SIMPLE_RADIAL:
            raise RuntimeError(f"expected SIMPLE_RADIAL cameras, got {camera.model}")
        stem = Path(image.name).stem
        width, height = sizes[stem]
        K = camera.calibration_matrix()
        K[0] *= width / camera.width
        K[1] *= height / camera.height
        pose = np.eye(4)
        pose[:3] = image.cam_from_world().matrix()
        names.append(stem)
        Ks.append(K)
        radial.append(camera.params[3])
        poses.append(pose)
    result = {
        "names": np.array(names),
        "K": np.array(Ks),
        "radial": np.array(radial),
        "cam_from_world": np.array(poses),
        "sparse_xyz": np.array([p.xyz for p in model.points3D.values()]),
        "photos": np.array(len(sizes)),
    }
    np.savez(cached, **result)
    return result


def undistorted_photos(
    folder: Path, sfm: dict[str, np.ndarray], long_side_px: int | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Photos resized to ``long_side_px`` (None: full size) without their radial distortion,
    and their pinhole K."""
    paths = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES}
    images, Ks = [], []
    for name, K_full, radial in zip(sfm["names"], sfm["K"], sfm["radial"], strict=True):
        image = open_photo_array(paths[str(name)])
        height, width = image.shape[:2]
        if long_side_px is not None and max(width, height) > long_side_px:
            scale = long_side_px / max(width, height)
            size = (round(width * scale), round(height * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        K = K_full.copy()
        K[0] *= image.shape[1] / width
        K[1] *= image.shape[0] / height
        K_cv = K.copy()
        K_cv[:2, 2] -= 0.5  # OpenCV's pixel convention
        images.append(cv2.undistort(image, K_cv, np.array([radial, 0, 0, 0.0]), None, K_cv))
        Ks.append(K)
    return images, Ks


def depth_errors(result, images, Ks, poses, sparse_xyz: np.ndarray) -> np.ndarray:
    """Relative depth error of each checked depth-map pixel that an SfM point falls on."""
    errors = []
    for (_, _, _, depth), image, K, pose in zip(result, images, Ks, poses, strict=True):
        if depth is None:
            continue
        h, w = depth.shape
        K_map = K.copy()
        K_map[0] *= w / image.shape[1]
        K_map[1] *= h / image.shape[0]
        cam = sparse_xyz @ pose[:3, :3].T + pose[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            pixel = cam[:, :2] / cam[:, 2:] * np.diag(K_map)[:2] + K_map[:2, 2]
        pixel = np.floor(np.nan_to_num(pixel, nan=-1.0)).astype(np.int64)
        inside = (cam[:, 2] > 0) & np.all((pixel >= 0) & (pixel < [w, h]), axis=1)
        measured = depth[pixel[inside, 1], pixel[inside, 0]]
        true = cam[inside, 2]
        known = measured > 0
        errors.append(np.abs(measured[known] - true[known]) / true[known])
    return np.concatenate(errors) if errors else np.zeros(0)


def run(folder: Path, cache: Path, options: DensifyOptions) -> list[str]:
    sfm = pose_photos(folder, cache)
    rows = []
    for label, long_side in (("1024 px", 1024), ("full size", None)):
        images, Ks = undistorted_photos(folder, sfm, long_side)
        poses = list(sfm["cam_from_world"])
        wall, cpu = time.perf_counter(), time.process_time()
        result = densify(images, Ks, poses, sfm["sparse_xyz"], options=options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        points = sum(len(r[0]) for r in result)
        errors = depth_errors(result, images, Ks, poses, sfm["sparse_xyz"])
        size = "x".join(map(str, images[0].shape[1::-1]))
        rows.append(
            f"| {folder.parent.name} | {len(images)} of {int(sfm['photos'])} | {label} ({size}) "
            f"| {points:,} | {wall:.1f} | {cpu:.1f} "
            f"| {100 * np.median(errors):.3f} % | {100 * np.percentile(errors, 90):.2f} % "
            f"| {len(errors):,} |"
        )
        print(rows[-1], flush=True)
    return rows


# The tight bounding box of the temple model (temple_ring/README.txt), metres; the temple stands
# on a dark base just below it, so only points above ABOVE_BASE_Y_M count.
TEMPLE_BOX = (np.array([-0.073568, 0.021728, -0.012445]), np.array([0.028855, 0.181892, 0.062736]))
ABOVE_BASE_Y_M = 0.03


def run_temple(folder: Path, options: DensifyOptions) -> None:
    """Exact cameras, no SfM points: the share of temple points inside its true bounding box."""
    images, Ks, poses = [], [], []
    for line in filter(str.strip, (folder / "templeSR_par.txt").read_text().split("\n")[1:]):
        name, *numbers = line.split()
        values = np.array(numbers, float)
        K = values[:9].reshape(3, 3)
        K[:2, 2] += 0.5  # their pixel centres are at integer coordinates
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = values[9:18].reshape(3, 3), values[18:]
        images.append(open_photo_array(folder / name))
        Ks.append(K)
        poses.append(pose)
    wall, cpu = time.perf_counter(), time.process_time()
    result = densify(images, Ks, poses, None, options=options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    xyz = np.concatenate([r[0] for r in result])
    temple = xyz[xyz[:, 1] > ABOVE_BASE_Y_M]
    low, high = TEMPLE_BOX
    inside = np.all((temple > low - 0.002) & (temple < high + 0.002), axis=1).mean()
    print(
        f"| temple_ring (exact cameras) | {len(images)} | 640x480 | {len(xyz):,} | {wall:.1f} "
        f"| {cpu:.1f} | {100 * inside:.1f} % of {len(temple):,} temple points inside the "
        "true box (+-2 mm) | | |",
        flush=True,
    )


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("AETHERSCAN_SHARED", repo.parent / "shared")),
    )
    parser.add_argument("--sets", nargs="+", default=["sceaux_castle", "flowerpot", "temple_ring"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/aetherscan_bench_densify"))
    parser.add_argument("--max-image-px", type=int, default=DensifyOptions.max_image_px)
    args = parser.parse_args()
    options = DensifyOptions(max_image_px=args.max_image_px)
    print(
        "| set | posed photos | input | points | densify s | CPU s | median depth error "
        "| p90 | SfM points checked |\n|---|---|---|---:|---:|---:|---:|---:|---:|"
    )
    for name in args.sets:
        if name == "temple_ring":
            run_temple(args.shared / "data" / name, options)
            continue
        folder = args.shared / "data" / name / "images"
        cache = args.cache / name
        cache.mkdir(parents=True, exist_ok=True)
        run(folder, cache, options)


if __name__ == "__main__":
    main()
