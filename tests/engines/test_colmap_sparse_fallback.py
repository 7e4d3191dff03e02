"""When dense stereo keeps no point, the COLMAP engine returns the sparse SfM cloud instead of
an empty one (a job that is done with nothing to show would be a lost result)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aetherscan.engines.base import Observer, Photo

FLOWERPOT = Path(__file__).resolve().parents[1] / "fixtures" / "flowerpot"


class Counter(Observer):
    def __init__(self) -> None:
        self.points_seen = 0

    def points(self, cloud) -> None:
        self.points_seen += len(cloud)


def test_no_dense_point_gives_the_sparse_cloud(monkeypatch):
    import aetherscan.engines.densify as densify_module
    from aetherscan.engines.colmap import ColmapEngine

    def nothing(images, Ks, poses, **options):
        empty = (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.float32))
        return [(*empty, None) for _ in images]

    monkeypatch.setattr(densify_module, "densify", nothing)
    photos = [Photo(p.name, p) for p in sorted(FLOWERPOT.glob("*.jpg"))[:3]]
    observer = Counter()
    reconstruction = ColmapEngine(max_image_px=320).reconstruct(photos, observer)
    assert reconstruction.num_points > 0
    assert observer.points_seen == reconstruction.num_points
    assert "densify" not in reconstruction.timings_s
