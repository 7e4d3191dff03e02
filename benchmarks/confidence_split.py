"""What the viewer's confidence slider keeps of an object on a flat, textured base (a pot on a
printed board, say): the COLMAP engine's dense cloud, the base found as the plane that holds most
points (RANSAC), and for each share that the slider keeps (its N % most confident points), the
share of the base's points and of the points well off it (the object) that stay.

    PYTHONPATH=src python benchmarks/confidence_split.py ../shared/data/flowerpot/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from aetherscan.engines.base import Photo
from aetherscan.engines.colmap import ColmapEngine

PLANE_TRIALS = 500
ON_PLANE, OFF_PLANE = 0.02, 0.08  # distances from the plane, in the cloud's median radius


def base_plane(xyz: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(normal, a point) of the plane within 1 % of the cloud's radius of the most points."""
    rng = np.random.default_rng(seed)
    radius = np.median(np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1))
    best = (-1, np.zeros(3), np.zeros(3))
    for _ in range(PLANE_TRIALS):
        a, b, c = xyz[rng.choice(len(xyz), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        if np.linalg.norm(normal) < 1e-12:
            continue
        normal /= np.linalg.norm(normal)
        inliers = int((np.abs((xyz - a) @ normal) < 0.01 * radius).sum())
        if inliers > best[0]:
            best = (inliers, normal, a)
    return best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    args = parser.parse_args()
    photos = [
        Photo(p.name, p)
        for p in sorted(args.photos.iterdir())
        if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    ]
    cloud = ColmapEngine().reconstruct(photos).point_cloud()
    xyz, confidence = cloud.xyz.astype(float), cloud.confidence
    normal, point = base_plane(xyz)
    radius = np.median(np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1))
    distance = np.abs((xyz - point) @ normal) / radius
    base, subject = distance < ON_PLANE, distance > OFF_PLANE
    print(f"{len(xyz):,} points: {base.sum():,} on the base, {subject.sum():,} well off it")
    for name, part in (("base", base), ("subject", subject)):
        print(f"{name}: median confidence {np.median(confidence[part]):.1f}")
    print("| slider asks | kept (ties together) | base kept | subject kept |")
    print("| --- | --- | --- | --- |")
    for asked in (0.75, 0.5, 0.25):
        kept = confidence >= np.quantile(confidence, 1 - asked)
        print(
            f"| {asked:.0%} | {kept.mean():.0%} | {kept[base].mean():.0%} | "
            f"{kept[subject].mean():.0%} |"
        )


if __name__ == "__main__":
    main()
