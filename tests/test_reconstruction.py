import numpy as np
import pytest

from aetherscan.reconstruction import (
    DroppedPhoto,
    PointCloud,
    Reconstruction,
    View,
    load_reconstruction,
    save_reconstruction,
)


def _view(name: str, n: int, seed: int) -> View:
    rng = np.random.default_rng(seed)
    return View(
        name=name,
        width=640,
        height=480,
        K=np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]),
        cam_from_world=np.eye(4),
        points=rng.normal(size=(n, 3)).astype(np.float32),
        colors=rng.integers(0, 256, (n, 3), dtype=np.uint8),
        confidence=rng.uniform(1, 5, n).astype(np.float32),
    )


def test_point_cloud_filters_by_confidence_and_tracks_views():
    rec = Reconstruction("test", [_view("a.jpg", 100, 0), _view("b.jpg", 50, 1)])
    cloud = rec.point_cloud(min_confidence=3.0)
    expected = sum(int((v.confidence >= 3.0).sum()) for v in rec.views)
    assert len(cloud) == expected
    assert set(np.unique(cloud.view_index)) == {0, 1}
    assert (cloud.confidence >= 3.0).all()
    assert len(rec.point_cloud()) == rec.num_points == 150


def test_point_cloud_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        PointCloud(np.zeros((3, 2)), np.zeros((3, 3), np.uint8), np.zeros(3), np.zeros(3, np.int32))


def test_save_and_load_round_trip(tmp_path):
    view = _view("a.jpg", 10, 0)
    view.depth = np.ones((4, 5), np.float32)
    view.depth_K = np.eye(3)
    rec = Reconstruction("test", [view, _view("b.jpg", 7, 1)], [DroppedPhoto("c.jpg", "blurry")])
    save_reconstruction(rec, tmp_path / "r.npz")
    back = load_reconstruction(tmp_path / "r.npz")
    assert [v.name for v in back.views] == ["a.jpg", "b.jpg"]
    assert back.dropped == rec.dropped
    np.testing.assert_array_equal(back.views[0].points, view.points)
    np.testing.assert_array_equal(back.views[0].depth, view.depth)
    assert back.views[1].depth is None
    np.testing.assert_allclose(back.views[1].center, [0, 0, 0])
