"""One focal length from a pointmap in its own camera frame (SPEC §4.1).

For pixels p (relative to the principal point) and camera-frame points X, the focal f minimises
the sum of reprojection distances ``sum |p - f (X/Z, Y/Z)|``, solved by Weiszfeld iterations
(iteratively reweighted least squares) from the least-squares start. Pixel coordinates are the
integer grid with the principal point at (W/2, H/2), OpenCV convention, as upstream.
"""

from __future__ import annotations

import numpy as np

WEISZFELD_ITERATIONS = 100
MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0


def estimate_focal(
    pts3d: np.ndarray,
    conf: np.ndarray | None = None,
    *,
    min_conf_percentile: float = 10.0,
    iterations: int = WEISZFELD_ITERATIONS,
) -> float:
    """Focal length in pixels of the camera that sees pointmap ``pts3d`` (H, W, 3).

    Only pixels with ``conf`` at or above its ``min_conf_percentile`` percentile take part. The
    result is clamped to fields of view between 1 and 170 degrees across the long side, so that a
    degenerate pointmap still gives a usable camera.
    """
    pts3d = np.asarray(pts3d, np.float64)
    if pts3d.ndim != 3 or pts3d.shape[2] != 3:
        raise ValueError(f"expected a pointmap of shape (H, W, 3), got {pts3d.shape}")
    height, width = pts3d.shape[:2]
    v, u = np.mgrid[0:height, 0:width]
    pixels = np.stack([u - width / 2, v - height / 2], axis=-1).astype(np.float64)  # (H, W, 2)
    if conf is not None:
        conf = np.asarray(conf, np.float64)
        mask = conf >= np.quantile(conf, min_conf_percentile / 100.0)
        pts3d, pixels = pts3d[mask], pixels[mask]
    pts3d, pixels = pts3d.reshape(-1, 3), pixels.reshape(-1, 2)

    with np.errstate(divide="ignore", invalid="ignore"):
        xy_over_z = pts3d[:, :2] / pts3d[:, 2:3]
    xy_over_z = np.nan_to_num(xy_over_z, nan=0.0, posinf=0.0, neginf=0.0)
    dot_qp = (xy_over_z * pixels).sum(axis=1)
    dot_qq = (xy_over_z * xy_over_z).sum(axis=1)
    focal = dot_qp.mean() / dot_qq.mean() if dot_qq.mean() > 0 else np.nan
    for _ in range(iterations):
        if not np.isfinite(focal):
            break
        distance = np.linalg.norm(pixels - focal * xy_over_z, axis=1)
        weight = 1.0 / np.maximum(distance, 1e-8)
        focal = (weight * dot_qp).sum() / (weight * dot_qq).sum()
    return clamp_focal(float(focal), width, height)


def clamp_focal(focal_px: float, width: int, height: int) -> float:
    """Clamp to fields of view in [1, 170] degrees over the long side; NaN gives 60 degrees."""
    half_side = max(width, height) / 2
    shortest = half_side / np.tan(np.deg2rad(MAX_FOV_DEG) / 2)
    longest = half_side / np.tan(np.deg2rad(MIN_FOV_DEG) / 2)
    if not np.isfinite(focal_px):
        return float(half_side / np.tan(np.deg2rad(30.0)))
    return float(np.clip(focal_px, shortest, longest))
