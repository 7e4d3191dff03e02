"""Joining models: COLMAP may split a set into several models that share photos. The photos of
a smaller model join the largest one through a shared photo, when both models agree on it."""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_JOIN_ROTATION_DEG = 2.0
MAX_JOIN_CENTRE_REL = 0.05
MIN_JOIN_POINTS = 5
MAX_JOIN_SCALE_SPREAD = 0.05


def join_models(
    models: list, id_to_index: dict[int, int], dropped: dict[int, str], stats: dict
) -> list[tuple[Any, list[int]]]:
    """The largest model, plus the photos of other models that can be brought into its frame
    through photos they share (COLMAP lets models overlap): [(model, image ids it places)].

    The other model is moved by the similarity that maps the shared photo's camera onto
    itself, scaled by the depths of the points both models triangulated from its features;
    a shared photo whose two poses then disagree by more than MAX_JOIN_ROTATION_DEG or
    MAX_JOIN_CENTRE_REL of the scene size refuses the join.
    """
    main = models[0]
    parts = [(main, [i for i in main.reg_image_ids() if main.image(i).has_pose])]
    placed = set(parts[0][1])
    centres = np.array([main.image(i).projection_center() for i in placed])
    scene_size = float(np.median(np.linalg.norm(centres - centres.mean(0), axis=1))) or 1.0
    for other in models[1:]:
        ids = [i for i in other.reg_image_ids() if other.image(i).has_pose]
        new = [i for i in ids if i not in placed]
        shared = [i for i in ids if i in placed]
        if not new:
            continue
        joined = False
        similarity = _similarity_through_shared_photo(parts, other, shared)
        if similarity is not None:
            other.transform(similarity)
            joined = all(_poses_agree(_image(parts, i), other.image(i), scene_size) for i in shared)
        if joined:
            parts.append((other, new))
            placed.update(new)
            stats["joined_models"] = stats.get("joined_models", 0) + 1
            continue
        stats["separate_groups"] = stats.get("separate_groups", 0) + 1
        for image_id in new:
            dropped[id_to_index[image_id]] = (
                f"formed a separate group of {len(ids)} photos that could not be joined to "
                f"the main reconstruction of {len(parts[0][1])} photos (too few features "
                "in common with it)"
            )
    return parts


def _similarity_through_shared_photo(parts, other, shared: list[int]):
    """pycolmap.Sim3d taking ``other``'s world to the joined world, or None.

    Through the shared photo with the most features triangulated in both models: camera
    coordinates agree up to the scale s, so X_main = s R_a^T R_b X_other + R_a^T (s t_b - t_a).
    """
    import pycolmap

    best = None
    for image_id in shared:
        a, b = _image(parts, image_id), other.image(image_id)
        main_model = _model_of(parts, image_id)
        pose_a, pose_b = a.cam_from_world(), b.cam_from_world()
        ratios = []
        for pa, pb in zip(a.points2D, b.points2D, strict=True):
            if pa.has_point3D() and pb.has_point3D():
                depth_a = (pose_a * main_model.point3D(pa.point3D_id).xyz)[2]
                depth_b = (pose_b * other.point3D(pb.point3D_id).xyz)[2]
                if depth_a > 0 and depth_b > 0:
                    ratios.append(depth_a / depth_b)
        if len(ratios) >= MIN_JOIN_POINTS and (best is None or len(ratios) > len(best[1])):
            best = (image_id, np.array(ratios))
    if best is None:
        return None
    image_id, depth_ratios = best
    scale = float(np.median(depth_ratios))
    if np.median(np.abs(depth_ratios / scale - 1)) > MAX_JOIN_SCALE_SPREAD:
        return None  # the two models disagree about the shape they share
    pose_a = _image(parts, image_id).cam_from_world()
    pose_b = other.image(image_id).cam_from_world()
    Ra, ta = pose_a.rotation.matrix(), pose_a.translation
    Rb, tb = pose_b.rotation.matrix(), pose_b.translation
    return pycolmap.Sim3d(scale, pycolmap.Rotation3d(Ra.T @ Rb), Ra.T @ (scale * tb - ta))


def _model_of(parts, image_id: int):
    return next(model for model, ids in parts if image_id in ids)


def _image(parts, image_id: int):
    return _model_of(parts, image_id).image(image_id)


def _poses_agree(a, b, scene_size: float) -> bool:
    """Two poses of one photo (pycolmap images) after joining: same orientation and centre."""
    Ra = a.cam_from_world().rotation.matrix()
    Rb = b.cam_from_world().rotation.matrix()
    cos = (np.trace(Ra @ Rb.T) - 1) / 2
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    distance = np.linalg.norm(a.projection_center() - b.projection_center())
    return bool(angle < MAX_JOIN_ROTATION_DEG and distance < MAX_JOIN_CENTRE_REL * scene_size)
