"""Pose accuracy scores: predicted cameras against ground truth, as in the CO3D / RealEstate10K
tables of the Fast3R and VGGT papers, with one deliberate difference: a photo that the engine did
not register counts as a failure in every score instead of being left out.

Poses are ``cam_from_world`` 4x4 matrices in OpenCV axes. A predicted set is any similarity
transform away from the truth, so the pair scores compare relative poses (no alignment needed)
and the centre error comes after a least-squares similarity alignment (Umeyama).

Scores:

* RRA@t: share of photo pairs whose relative rotation error is below t degrees.
* RTA@t: share of photo pairs whose relative translation direction error is below t degrees.
  The direction is compared with its sign (a flipped baseline is 180 degrees wrong); the papers'
  code folds the sign away, so these numbers are at most as good as theirs.
* AUC@30 (mAA): mean over thresholds 1..30 degrees of the share of pairs whose
  max(rotation error, translation error) is below the threshold.
* Camera centre error after aligning the registered centres to the true ones, in ground-truth
  units and as a fraction of the scene size (median distance of true centres to their mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_CENTRES_FOR_ALIGNMENT = 3


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices (..., 3, 3) in degrees."""
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    # sin from the skew part keeps small angles exact where arccos(cos) would lose them.
    skew = np.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    sin = np.linalg.norm(skew, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between vectors (..., 3) in degrees; NaN where either has zero length."""
    zero = (np.linalg.norm(a, axis=-1) == 0) | (np.linalg.norm(b, axis=-1) == 0)
    angle = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))
    return np.where(zero, np.nan, angle)


def relative_pose(cam_from_world_i: np.ndarray, cam_from_world_j: np.ndarray) -> np.ndarray:
    """cam_j_from_cam_i (..., 4, 4): maps camera i's coordinates to camera j's."""
    return cam_from_world_j @ np.linalg.inv(cam_from_world_i)


def pair_errors_deg(
    pred: Sequence[np.ndarray | None], truth: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Relative rotation and translation-direction errors over all pairs i < j.

    ``pred[i]`` is None for a photo the engine did not register: its pairs get an infinite error.
    Returns (rotation_errors, translation_errors), each of shape (P,) with P = n (n - 1) / 2.
    """
    if len(pred) != len(truth):
        raise ValueError(f"expected as many predictions as truths, got {len(pred)}, {len(truth)}")
    n = len(truth)
    i, j = np.triu_indices(n, k=1)  # (P,), (P,)
    rot = np.full(len(i), np.inf)
    trans = np.full(len(i), np.inf)
    known = np.array([p is not None for p in pred], bool)
    both = known[i] & known[j]
    if both.any():
        P = np.stack([p if p is not None else np.eye(4) for p in pred])  # (n, 4, 4)
        T = np.stack(truth)  # (n, 4, 4)
        ii, jj = i[both], j[both]
        rel_pred = relative_pose(P[ii], P[jj])  # (Pk, 4, 4)
        rel_true = relative_pose(T[ii], T[jj])
        rot_delta = rel_pred[:, :3, :3] @ np.swapaxes(rel_true[:, :3, :3], -1, -2)
        rot[both] = rotation_angle_deg(rot_delta)
        t_err = angle_between_deg(rel_pred[:, :3, 3], rel_true[:, :3, 3])
        # Two predicted cameras at the same spot give no direction: that is a failure.
        trans[both] = np.where(np.isnan(t_err), np.inf, t_err)
    return rot, trans


def accuracy_at(errors_deg: np.ndarray, threshold_deg: float) -> float:
    """Share of errors strictly below the threshold (infinite errors fail)."""
    if len(errors_deg) == 0:
        return float("nan")
    return float(np.mean(errors_deg < threshold_deg))


def auc_deg(rot_errors: np.ndarray, trans_errors: np.ndarray, max_threshold_deg: int = 30) -> float:
    """mAA: mean over thresholds 1..max of the share of pairs with max(rot, trans) < threshold."""
    if len(rot_errors) == 0:
        return float("nan")
    worst = np.maximum(rot_errors, trans_errors)
    thresholds = np.arange(1, max_threshold_deg + 1, dtype=np.float64)
    return float(np.mean([np.mean(worst < t) for t in thresholds]))


def umeyama_alignment(
    source: np.ndarray, target: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale s, rotation R, translation t) with target ≈ s R source + t.

    source, target: (N, 3) with N >= 3 points that are not all on one line.
    """
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(f"expected two (N, 3) arrays, got {source.shape} and {target.shape}")
    if len(source) < MIN_CENTRES_FOR_ALIGNMENT:
        raise ValueError(f"need at least {MIN_CENTRES_FOR_ALIGNMENT} points, got {len(source)}")
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    var_s = np.mean(np.sum(xs**2, axis=1))
    if var_s <= 0:
        raise ValueError("the source points all coincide")
    cov = xt.T @ xs / len(source)  # (3, 3)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0  # a reflection is not a rotation
    R = U @ S @ Vt
    scale = float(np.trace(np.diag(D) @ S) / var_s)
    t = mu_t - scale * R @ mu_s
    return scale, R, t


def camera_centre(cam_from_world: np.ndarray) -> np.ndarray:
    R, t = cam_from_world[..., :3, :3], cam_from_world[..., :3, 3]
    return -np.einsum("...ji,...j->...i", R, t)


@dataclass
class PoseScores:
    """Scores of one predicted camera set; fractions in 0..1, angles in degrees."""

    num_photos: int
    num_registered: int
    num_pairs: int
    rra_5: float
    rra_15: float
    rta_5: float
    rta_15: float
    auc_30: float
    rotation_error_median_deg: float  # over all pairs; inf when most pairs failed
    translation_error_median_deg: float
    centre_error_median: float  # ground-truth units, unregistered photos as inf
    centre_error_median_rel: float  # the same as a fraction of the scene size
    centre_acc_5pct: float  # share of photos whose centre is within 5 % of the scene size

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def score_poses(pred: Sequence[np.ndarray | None], truth: Sequence[np.ndarray]) -> PoseScores:
    """All scores for predicted cam_from_world matrices (None: not registered) against truth."""
    n = len(truth)
    rot, trans = pair_errors_deg(pred, truth)
    centre_err = np.full(n, np.inf)
    true_centres = camera_centre(np.stack(truth)) if n else np.zeros((0, 3))
    scene_size = (
        float(np.median(np.linalg.norm(true_centres - true_centres.mean(0), axis=1))) if n else 0.0
    )
    known = [k for k, p in enumerate(pred) if p is not None]
    if len(known) >= MIN_CENTRES_FOR_ALIGNMENT:
        pred_centres = camera_centre(np.stack([pred[k] for k in known]))
        try:
            s, R, t = umeyama_alignment(pred_centres, true_centres[known])
        except ValueError:  # all predicted centres in one spot: nothing to align
            pass
        else:
            aligned = s * pred_centres @ R.T + t
            centre_err[known] = np.linalg.norm(aligned - true_centres[known], axis=1)
    centre_median = float(np.median(centre_err)) if n else float("nan")
    return PoseScores(
        num_photos=n,
        num_registered=len(known),
        num_pairs=len(rot),
        rra_5=accuracy_at(rot, 5),
        rra_15=accuracy_at(rot, 15),
        rta_5=accuracy_at(trans, 5),
        rta_15=accuracy_at(trans, 15),
        auc_30=auc_deg(rot, trans, 30),
        rotation_error_median_deg=float(np.median(rot)) if len(rot) else float("nan"),
        translation_error_median_deg=float(np.median(trans)) if len(trans) else float("nan"),
        centre_error_median=centre_median,
        centre_error_median_rel=centre_median / scene_size if scene_size > 0 else float("nan"),
        centre_acc_5pct=float(np.mean(centre_err < 0.05 * scene_size)) if n else float("nan"),
    )


def focal_errors_rel(
    pred_focal_px: Sequence[float | None], true_focal_px: Sequence[float]
) -> np.ndarray:
    """|f_pred - f_true| / f_true per photo; inf where the photo was not registered."""
    return np.array(
        [
            np.inf if p is None else abs(p - t) / t
            for p, t in zip(pred_focal_px, true_focal_px, strict=True)
        ]
    )
