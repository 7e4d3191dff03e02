import dataclasses
import json

import numpy as np
import pytest

from aetherscan.reconstruction import (
    DroppedPhoto,
    PointCloud,
    Quality,
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


def _assert_same(a, b) -> None:
    """Every field of two dataclasses equal, arrays value for value and dtype for dtype."""
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(y, x, err_msg=f.name)
        elif isinstance(x, list) and x and dataclasses.is_dataclass(x[0]):
            assert len(x) == len(y), f.name
            for u, v in zip(x, y, strict=True):
                _assert_same(u, v)
        else:
            assert x == y, f.name


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    view = _view("a.jpg", 10, 0)
    view.K = np.array([[512.5, 0, 320.25], [0, 498.0, 241.5], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose[:3, 3] = rng.normal(size=3)
    view.cam_from_world = pose
    view.depth = rng.uniform(1, 3, (4, 5)).astype(np.float32)
    view.depth_confidence = rng.uniform(1, 9, (4, 5)).astype(np.float32)
    view.depth_K = np.array([[5.0, 0, 2.5], [0, 5.0, 2.0], [0, 0, 1]])
    view.radial_k1 = -0.0625
    other = _view("b.jpg", 7, 1)
    other.cam_from_world = np.linalg.inv(pose)
    rec = Reconstruction(
        "test",
        [view, other],
        [DroppedPhoto("c.jpg", "blurry")],
        timings_s={"total": 1.5, "sfm": 0.75},
        quality=Quality("uncertain", ["only 2 of 3 photos were placed"]),
        masks="given",
    )
    save_reconstruction(rec, tmp_path / "r.npz")
    back = load_reconstruction(tmp_path / "r.npz")
    _assert_same(rec, back)
    assert back.views[1].depth is None and back.views[1].radial_k1 == 0.0
    np.testing.assert_allclose(back.views[0].center, view.center)


def test_files_saved_before_the_distortion_load_as_pinholes(tmp_path):
    save_reconstruction(Reconstruction("test", [_view("a.jpg", 3, 0)]), tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as data:
        arrays = dict(data)
    header = json.loads(arrays["header"].tobytes())
    for meta in header["views"]:
        del meta["radial_k1"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    assert load_reconstruction(tmp_path / "old.npz").views[0].radial_k1 == 0.0
