import numpy as np
import pytest

from aetherscan.geometry.metrics import (
    auc_deg,
    camera_centre,
    pair_errors_deg,
    score_poses,
    umeyama_alignment,
)


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(angle_deg)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def _look_at(centre: np.ndarray) -> np.ndarray:
    z = -centre  # looks at the origin
    z /= np.linalg.norm(z)
    x = np.cross([0.0, -1.0, 0.0], z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])  # rows: camera axes in world
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ centre
    return T


def _ring(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [_look_at(np.array([4 * np.cos(a), rng.uniform(-1, 1), 4 * np.sin(a)])) for a in angles]


def _similar(
    poses: list[np.ndarray], scale: float, R: np.ndarray, t: np.ndarray
) -> list[np.ndarray]:
    """The same cameras in a world moved by X' = scale R X + t."""
    world_new_from_old = np.eye(4)
    world_new_from_old[:3, :3], world_new_from_old[:3, 3] = scale * R, t
    out = []
    for T in poses:
        M = T @ np.linalg.inv(world_new_from_old)  # camera coordinates shrunk by 1 / scale
        M[:3, :] *= scale  # back to a rigid pose whose translation is in the new units
        out.append(M)
    return out


def test_perfect_prediction_in_another_frame_scores_full_marks():
    truth = _ring(8)
    pred = _similar(truth, 3.7, _rotation(np.array([1.0, 2, 3]), 40), np.array([5.0, -2, 1]))
    for T in pred:
        assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
    s = score_poses(pred, truth)
    assert s.num_registered == 8 and s.num_pairs == 28
    assert s.rra_5 == s.rta_5 == s.rra_15 == s.rta_15 == 1.0
    assert s.auc_30 == 1.0
    assert s.rotation_error_median_deg < 1e-5 and s.translation_error_median_deg < 1e-5
    assert s.centre_error_median < 1e-9 and s.centre_acc_5pct == 1.0


def test_rotating_one_camera_gives_that_rotation_error_on_its_pairs():
    truth = _ring(6)
    pred = [T.copy() for T in truth]
    delta = np.eye(4)
    delta[:3, :3] = _rotation(np.array([0.3, 1.0, -0.2]), 10.0)
    pred[2] = delta @ truth[2]  # turn camera 2 about its own centre by 10 degrees
    rot, _ = pair_errors_deg(pred, truth)
    i, j = np.triu_indices(6, k=1)
    involved = (i == 2) | (j == 2)
    assert np.allclose(rot[involved], 10.0, atol=1e-6)
    assert np.allclose(rot[~involved], 0.0, atol=1e-6)
    s = score_poses(pred, truth)
    assert s.rra_5 == pytest.approx((~involved).mean())
    assert s.rra_15 == 1.0
    # The centre did not move, so alignment finds every centre.
    assert s.centre_error_median < 1e-9


def test_translation_direction_error_is_the_angle_between_baselines():
    a = np.eye(4)
    b_true, b_pred = np.eye(4), np.eye(4)
    b_true[:3, 3] = [1.0, 0, 0]
    b_pred[:3, 3] = [np.cos(np.radians(20)), np.sin(np.radians(20)), 0]
    rot, trans = pair_errors_deg([a, b_pred], [a, b_true])
    assert rot[0] == pytest.approx(0.0, abs=1e-9)
    assert trans[0] == pytest.approx(20.0)
    # A flipped baseline is 180 degrees off, not 0.
    b_flip = np.eye(4)
    b_flip[:3, 3] = [-2.0, 0, 0]
    assert pair_errors_deg([a, b_flip], [a, b_true])[1][0] == pytest.approx(180.0)


def test_unregistered_photo_fails_every_score():
    truth = _ring(5)
    pred: list[np.ndarray | None] = list(truth)
    pred[4] = None
    s = score_poses(pred, truth)
    ok_pairs = 6 / 10  # pairs among the 4 registered photos, out of all 10
    assert s.num_registered == 4
    assert s.rra_5 == s.rra_15 == s.rta_5 == s.rta_15 == pytest.approx(ok_pairs)
    assert s.auc_30 == pytest.approx(ok_pairs)
    assert s.centre_acc_5pct == pytest.approx(0.8)
    # Too few registered photos: no alignment, every centre fails.
    s = score_poses([truth[0], truth[1], None, None, None], truth)
    assert s.centre_acc_5pct == 0.0 and s.centre_error_median == np.inf
    assert s.rra_5 == pytest.approx(0.1)


def test_auc_averages_thresholds_one_to_thirty():
    rot = np.array([0.5, 10.5, 100.0])
    trans = np.array([0.0, 0.0, 0.0])
    # pair 0 passes all 30 thresholds, pair 1 passes 11..30 (20 of them), pair 2 none.
    assert auc_deg(rot, trans) == pytest.approx((30 + 20 + 0) / 30 / 3)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(10, 3))
    R = _rotation(np.array([1.0, -1, 0.5]), 75)
    dst = 2.5 * src @ R.T + np.array([1.0, 2, 3])
    s, R_est, t = umeyama_alignment(src, dst)
    assert s == pytest.approx(2.5)
    assert np.allclose(R_est, R, atol=1e-9) and np.allclose(t, [1, 2, 3], atol=1e-9)
    assert np.allclose(camera_centre(_look_at(np.array([1.0, 2, 3]))), [1, 2, 3])
