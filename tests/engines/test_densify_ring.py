"""Densification with exact cameras on a plain object: benchmarks/synthetic_object.py's temple-like
ring (low texture, dark background), in the place of Middlebury's templeSparseRing, which may not
be copied into the repository (docs/benchmarks.md measures that one from the shared folder)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aetherscan.engines.densify import densify

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def ring(benchmark_script):
    synthetic_object = benchmark_script("synthetic_object")
    K = synthetic_object.intrinsics(WIDTH, HEIGHT)
    capture = synthetic_object.Capture(kind="ring", photos=12, step_deg=30, texture="low")
    views = []
    for shot in synthetic_object.shots(capture):
        image, mask, trace = synthetic_object.render_shot(shot, K, WIDTH, HEIGHT, supersample=1)
        views.append((image, mask > 0, trace.depth, shot.cam_from_object))
    return K, views


def _project(K: np.ndarray, pose: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = xyz @ pose[:3, :3].T + pose[:3, 3]
    return (cam @ K.T)[:, :2] / cam[:, 2:], cam[:, 2]


def test_ring_points_lie_on_the_object_seen_from_every_photo(ring):
    K, views = ring
    result = densify([v[0] for v in views], [K] * len(views), [v[3] for v in views])

    xyz = np.concatenate([r[0] for r in result]).astype(np.float64)
    assert len(xyz) > 20_000
    # The visual hull: every point falls inside the object's silhouette (two pixels of slack
    # at its outline) in every photo that frames it, not only in the photo that made it.
    for _, mask, _, pose in views:
        near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        uv, _ = _project(K, pose, xyz)
        framed = (uv[:, 0] >= 0) & (uv[:, 0] < WIDTH) & (uv[:, 1] >= 0) & (uv[:, 1] < HEIGHT)
        col, row = np.floor(uv[framed]).astype(int).T
        assert near[row, col].mean() > 0.95
    # Each photo's own points sit at the rendered depth.
    for (points, *_), (_, mask, depth, pose) in zip(result, views, strict=True):
        uv, z = _project(K, pose, points.astype(np.float64))
        col, row = np.floor(uv).astype(int).T
        on = mask[row.clip(0, HEIGHT - 1), col.clip(0, WIDTH - 1)]
        truth = depth[row[on].clip(0, HEIGHT - 1), col[on].clip(0, WIDTH - 1)]
        assert np.median(np.abs(z[on] / truth - 1)) < 0.01
