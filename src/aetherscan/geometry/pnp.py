"""Camera pose from 2D-3D correspondences: RANSAC around OpenCV's SQPnP (SPEC §4.2)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from aetherscan.geometry.camera import pose_matrix

log = logging.getLogger(__name__)

MIN_CORRESPONDENCES = 4


@dataclass(frozen=True)
class PnPResult:
    cam_from_world: np.ndarray  # (4, 4) float64, OpenCV axes
    num_inliers: int


def solve_pnp(
    points_world: np.ndarray,
    pixels: np.ndarray,
    K: np.ndarray,
    *,
    iterations: int = 100,
    reprojection_px: float = 5.0,
) -> PnPResult | None:
    """The ``cam_from_world`` pose that projects ``points_world`` (N, 3) onto ``pixels`` (N, 2).

    ``pixels`` and ``K`` must share one pixel convention. Non-finite correspondences are ignored.
    Returns None when there are too few correspondences or RANSAC finds no pose.
    """
    points_world = np.asarray(points_world, np.float64).reshape(-1, 3)
    pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
    if len(points_world) != len(pixels):
        raise ValueError(f"got {len(points_world)} points but {len(pixels)} pixels")
    finite = np.isfinite(points_world).all(axis=1) & np.isfinite(pixels).all(axis=1)
    points_world, pixels = points_world[finite], pixels[finite]
    if len(points_world) < MIN_CORRESPONDENCES:
        log.warning("PnP needs %d correspondences, got %d", MIN_CORRESPONDENCES, len(points_world))
        return None
    try:
        found, rvec, tvec, inliers = cv2.solvePnPRansac(
            points_world,
            pixels,
            np.asarray(K, np.float64),
            None,
            iterationsCount=iterations,
            reprojectionError=reprojection_px,
            flags=cv2.SOLVEPNP_SQPNP,
        )
    except cv2.error as exc:
        log.warning("PnP failed: %s", exc)
        return None
    if (
        not found
        or inliers is None
        or not np.all(np.isfinite(rvec))
        or not np.all(np.isfinite(tvec))
    ):
        return None
    R, _ = cv2.Rodrigues(rvec)
    return PnPResult(cam_from_world=pose_matrix(R, tvec), num_inliers=len(inliers))
