"""Similarity alignment of point sets (Umeyama 1991) and of Fast3R's local maps (SPEC §4.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 3


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    @classmethod
    def identity(cls) -> Similarity:
        return cls(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points (..., 3), keeping their dtype."""
        points = np.asarray(points)
        out = self.scale * (points.astype(np.float64) @ self.rotation.T) + self.translation
        return out.astype(points.dtype)

    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out


def umeyama(source: np.ndarray, target: np.ndarray, *, with_scale: bool = True) -> Similarity:
    """The similarity that best maps ``source`` (N, 3) onto ``target`` (N, 3) in least squares."""
    source = np.asarray(source, np.float64).reshape(-1, 3)
    target = np.asarray(target, np.float64).reshape(-1, 3)
    if len(source) != len(target) or len(source) < MIN_POINTS:
        raise ValueError(
            f"need two sets of the same number (>= {MIN_POINTS}) of points, "
            f"got {len(source)} and {len(target)}"
        )
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_c, target_c = source - source_mean, target - target_mean
    covariance = target_c.T @ source_c / len(source)  # (3, 3)
    U, singular, Vt = np.linalg.svd(covariance)
    signs = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        signs[2] = -1.0  # a reflection would fit better; take the best proper rotation instead
    rotation = U @ np.diag(signs) @ Vt
    if with_scale:
        variance = (source_c**2).sum() / len(source)
        scale = float((singular * signs).sum() / variance) if variance > 0 else 1.0
    else:
        scale = 1.0
    translation = target_mean - scale * rotation @ source_mean
    return Similarity(scale, rotation, translation)


def align_local_to_global(
    local: np.ndarray,
    global_: np.ndarray,
    global_conf: np.ndarray,
    *,
    top_fraction: float = 0.15,
) -> tuple[np.ndarray, Similarity]:
    """Move a view's local pointmap (H, W, 3) into the frame of its global pointmap.

    The similarity is fitted on the pixels whose global confidence is at or above its
    ``1 - top_fraction`` quantile (the top 15 %); with fewer than 3 usable pixels there, on all
    usable pixels; with fewer still, the identity. Returns the aligned map and the similarity.
    """
    local = np.asarray(local)
    if local.shape != np.shape(global_) or local.shape[:2] != np.shape(global_conf):
        raise ValueError(
            f"expected local and global maps (H, W, 3) and confidence (H, W), got "
            f"{local.shape}, {np.shape(global_)}, {np.shape(global_conf)}"
        )
    usable = np.isfinite(local).all(axis=-1) & np.isfinite(global_).all(axis=-1)
    top = global_conf >= np.quantile(global_conf, 1.0 - top_fraction)
    for mask in (top & usable, usable):
        if mask.sum() >= MIN_POINTS:
            similarity = umeyama(local[mask], global_[mask])
            break
    else:
        similarity = Similarity.identity()
    return similarity.apply(local), similarity
