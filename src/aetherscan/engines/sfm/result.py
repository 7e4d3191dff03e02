"""The result of the child process: one npz file with the cameras, the sparse points and a JSON
header (views, dropped photos with their reasons, the verdict, timings, statistics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aetherscan.engines.sfm.job import SfmJob
from aetherscan.engines.sfm.loading import PhotoInfo


def write_result(
    job: SfmJob, infos: list[PhotoInfo], image_ids: dict[int, int], parts, quality: dict
) -> Path:
    owner = {i: model for model, ids in parts for i in ids}  # image id -> model placing it
    registered = [info for info in infos if image_ids[info.index] in owner]
    arrays: dict[str, Any] = {}
    views = []
    view_of_image = {}
    for k, info in enumerate(registered):
        model = owner[image_ids[info.index]]
        image = model.image(image_ids[info.index])
        camera = model.camera(image.camera_id)
        f, cx, cy, k1 = (float(v) for v in camera.params)
        cam_from_world = np.eye(4)
        cam_from_world[:3] = image.cam_from_world().matrix()
        arrays[f"{k}/K"] = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
        arrays[f"{k}/cam_from_world"] = cam_from_world
        views.append(
            {
                "index": info.index,
                "name": info.name,
                "file": info.file,
                "width": info.width,
                "height": info.height,
                "scaled_width": info.scaled_width,
                "scaled_height": info.scaled_height,
                "scale": info.scale,
                "radial_k1": k1,
            }
        )
        view_of_image[image_ids[info.index]] = k
    xyz, rgb, track_length, error_px, view = [], [], [], [], []
    poses = {i: owner[i].image(i).cam_from_world() for i in view_of_image}
    for model, ids in parts:
        # A joined model contributes the points that its own new photos see.
        mine = set(ids)
        for point in model.points3D.values():
            observers = sorted({e.image_id for e in point.track.elements} & view_of_image.keys())
            if len(observers) < 2 or not mine.intersection(observers):
                continue
            # The nearest camera sees the point at the finest detail: it owns the point.
            depths = [(poses[i] * point.xyz)[2] for i in observers]
            xyz.append(point.xyz)
            rgb.append(point.color)
            track_length.append(len(observers))
            error_px.append(point.error)  # mean reprojection error over the track
            view.append(view_of_image[observers[int(np.argmin(depths))]])
    arrays["points/xyz"] = np.asarray(xyz, np.float32).reshape(-1, 3)
    arrays["points/rgb"] = np.asarray(rgb, np.uint8).reshape(-1, 3)
    arrays["points/track_length"] = np.asarray(track_length, np.int32)
    arrays["points/error_px"] = np.asarray(error_px, np.float32)
    arrays["points/view"] = np.asarray(view, np.int32)
    header = {
        "views": views,
        "dropped": [
            {"name": job.spec["photos"][i]["name"], "reason": reason}
            for i, reason in sorted(job.dropped.items())
        ],
        "timings_s": job.timings,
        "stats": job.stats,
        "quality": quality,
        "masks": _mask_source(registered),
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    path = job.work / "sparse_result.npz"
    np.savez(path, **arrays)
    return path


def _mask_source(infos: list[PhotoInfo]) -> str:
    """One of aetherscan.reconstruction.MASK_SOURCES for the placed photos."""
    sources = {info.mask for info in infos} - {"none"}
    if not sources:
        return "none"
    return sources.pop() if len(sources) == 1 else "mixed"
