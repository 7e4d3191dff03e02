"""The rendered object captures (benchmarks/synthetic_object.py) agree with their ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aetherscan.evaluation import load_ground_truth

WIDTH, HEIGHT = 96, 72


@pytest.fixture(scope="module")
def synthetic_object(benchmark_script):
    return benchmark_script("synthetic_object")


def _carry_over(module, first, second, second_pose: np.ndarray) -> dict[str, float]:
    """Lift the object pixels of the first shot with their rendered depth and the true pose, and
    look them up in the second shot through second_pose: shares of them that land on the mask,
    on the very surface point the renderer drew there, and in front of what it drew."""
    K = module.intrinsics(WIDTH, HEIGHT)
    _, mask0, trace0 = module.render_shot(first, K, WIDTH, HEIGHT, supersample=1)
    _, mask1, trace1 = module.render_shot(second, K, WIDTH, HEIGHT, supersample=1)
    ys, xs = np.nonzero(mask0)
    depth = trace0.depth[ys, xs]
    cam0 = np.linalg.inv(K) @ np.stack([xs + 0.5, ys + 0.5, np.ones_like(depth)]) * depth  # (3, N)
    points = np.linalg.inv(first.cam_from_object) @ np.vstack([cam0, np.ones_like(depth)])
    cam1 = (second_pose @ points)[:3]  # (3, N)
    u, v = np.floor((K @ cam1)[:2] / cam1[2]).astype(int)
    inside = (u >= 0) & (u < WIDTH) & (v >= 0) & (v < HEIGHT)
    u, v, z = u[inside], v[inside], cam1[2, inside]
    drawn = trace1.depth[v, u]
    same = np.abs(drawn - z) < 0.01 * z
    same_surface = trace1.surface[v, u] == trace0.surface[ys, xs][inside]
    return {
        "inside": float(inside.mean()),
        "on_mask": float(np.mean(mask1[v, u] == 255)),
        "same_point": float(same.mean()),
        "same_surface": float(same_surface[same].mean()) if same.any() else 0.0,
        "in_front": float(np.mean(drawn > 1.03 * z)),  # impossible for a true pose, but at edges
    }


@pytest.mark.parametrize("kind", ["turntable", "ring"])
def test_true_cameras_carry_object_points_onto_the_rendered_surface(synthetic_object, kind):
    capture = synthetic_object.Capture(kind=kind, photos=3, step_deg=30, texture="none")
    first, second, third = synthetic_object.shots(capture)
    true = _carry_over(synthetic_object, first, second, second.cam_from_object)
    assert true["inside"] > 0.99 and true["on_mask"] > 0.95, true
    assert true["same_point"] > 0.7 and true["same_surface"] > 0.95, true
    assert true["in_front"] < 0.05, true
    # The check can fail: the third photo's pose (30 degrees further on) does not fit.
    wrong = _carry_over(synthetic_object, first, second, third.cam_from_object)
    assert wrong["same_point"] < 0.3 and wrong["in_front"] > 0.2, wrong


def test_turntable_background_stands_still(synthetic_object):
    capture = synthetic_object.Capture(kind="turntable", photos=2, step_deg=45)
    K = synthetic_object.intrinsics(WIDTH, HEIGHT)
    shots = synthetic_object.shots(capture)
    walls = len(shots[0].groups[0][0])  # the first group is the still background
    (image0, mask0, trace0), (image1, mask1, trace1) = (
        synthetic_object.render_shot(shot, K, WIDTH, HEIGHT, supersample=1) for shot in shots
    )
    still = (trace0.surface < walls) & (trace1.surface < walls) & (trace0.surface >= 0)
    assert still.mean() > 0.2
    np.testing.assert_array_equal(image0[still], image1[still])
    assert np.mean(mask0 != mask1) > 0.01  # while the object turns


def test_written_capture_is_a_valid_set(synthetic_object, tmp_path):
    capture = synthetic_object.Capture(kind="ring", photos=2, step_deg=45, texture="rich")
    gt = synthetic_object.write_capture(tmp_path, capture, 64, 48, supersample=1)
    truth = load_ground_truth(gt)
    assert [c.name for c in truth] == ["view_000.png", "view_001.png"]
    for camera in truth:
        with Image.open(tmp_path / "images" / camera.name) as photo:
            assert photo.size == (64, 48)
            assert photo.getexif().get_ifd(0x8769)[0xA405] > 0  # 35 mm focal length
        with Image.open(tmp_path / "masks" / f"{camera.name}.png") as mask:
            values = set(np.unique(np.asarray(mask)))
            assert mask.size == (64, 48) and values == {0, 255}
