"""A stand-in for the Fast3R network: the true pointmaps of a rendered room, made as wrong as
Fast3R's are, for testing and measuring what the engine does after the network.

``standin_capture(views)`` renders ``views`` photos of benchmarks/synthetic_scene.py's room from an
orbit (512 x 384, so the engine's preprocessing leaves them as they are) and computes, for each
photo, the pointmaps a network would return: ``pts3d_in_other_view`` in view 0's camera frame
and ``pts3d_local`` in the photo's own frame, with their confidences. ``Noise`` spoils them the
ways a feed-forward network does:

* every view but view 0 is placed a little wrong as a whole (a rotation about its camera and a
  shift), which is what makes poses from the pointmaps imprecise;
* depth is off by a smooth factor that varies across each view;
* a share of the pixels are outliers, with low confidence;
* the maps are unprojected with a focal length that is too long, so the focal estimated from
  them is off too;
* each local map has a scale of its own.

``StandInFast3R(capture.outputs)`` is a ``torch.nn.Module`` that returns those maps for the
photos in capture order, whatever the pixels, as ``Fast3REngine`` expects of its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from synthetic_scene import orbit, room_scene, trace

from aetherscan.geometry.metrics import camera_centre, umeyama_alignment
from aetherscan.reconstruction import Reconstruction

WIDTH, HEIGHT = 512, 384
TRUE_FOCAL = 0.9 * WIDTH


@dataclass(frozen=True)
class Noise:
    rotation_deg: float = 1.0  # each view's global map turned about its camera (rms per axis)
    shift: float = 0.01  # ... and shifted by this share of the scene's depth (rms per axis)
    depth_warp: float = 0.03  # smooth relative depth error (peak)
    outliers: float = 0.02  # share of pixels thrown far off
    focal_error: float = 0.05  # the maps are unprojected with a focal this much too long
    seed: int = 0

    @classmethod
    def none(cls) -> Noise:
        return cls(rotation_deg=0.0, shift=0.0, depth_warp=0.0, outliers=0.0, focal_error=0.0)


@dataclass
class StandInCapture:
    images: list[np.ndarray]  # (H, W, 3) uint8 photos, in capture order
    K: np.ndarray  # (3, 3) true intrinsics, pixel centres at +0.5 (aetherscan.reconstruction)
    poses: list[np.ndarray]  # (4, 4) true cam_from_world per photo
    depths: list[np.ndarray]  # (H, W) true depth per photo, at pixel centres
    outputs: list[dict[str, torch.Tensor]]  # the network's answer per photo (batch of one)

    def write(self, folder: Path) -> list[Path]:
        """The photos as PNG files view_000.png, ... in ``folder``; their paths in order."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, image in enumerate(self.images):
            path = folder / f"view_{k:03d}.png"
            Image.fromarray(image).save(path)
            paths.append(path)
        return paths


class StandInFast3R(torch.nn.Module):
    """Returns the capture's pointmaps for the photos it is given, in order."""

    def __init__(self, outputs: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.outputs = outputs
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device for ``.to()`` to move

    def forward(self, images: list[torch.Tensor], image_ids: torch.Tensor | None = None):
        if len(images) != len(self.outputs):
            raise ValueError(f"the stand-in has {len(self.outputs)} views, got {len(images)}")
        for image, output in zip(images, self.outputs, strict=True):
            if tuple(image.shape[-2:]) != tuple(output["conf"].shape[-2:]):
                raise ValueError(f"a view of {tuple(image.shape)} is not the stand-in's size")
        return [{key: value.clone() for key, value in out.items()} for out in self.outputs]


def smooth_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random field (H, W) in [-1, 1]: a 4 x 3 grid of random values, bicubic."""
    coarse = rng.uniform(-1.0, 1.0, (3, 4)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(field, -1.0, 1.0)


def small_rotation(rng: np.random.Generator, rms_deg: float) -> np.ndarray:
    """A rotation (3, 3) by a random axis-angle vector with ``rms_deg`` per axis."""
    w = np.radians(rng.normal(0.0, rms_deg, 3))
    angle = float(np.linalg.norm(w))
    if angle == 0.0:
        return np.eye(3)
    k = w / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def standin_capture(
    views: int, noise: Noise | None = None, *, arc_deg: float = 90.0, scene_seed: int = 0
) -> StandInCapture:
    """Photos of the room from ``views`` cameras on an arc, and their spoilt pointmaps."""
    noise = noise or Noise()
    rng = np.random.default_rng(noise.seed)
    scene = room_scene(scene_seed)
    K = np.array([[TRUE_FOCAL, 0, WIDTH / 2], [0, TRUE_FOCAL, HEIGHT / 2], [0, 0, 1]])
    poses = orbit(views, arc_deg=arc_deg)
    # Pixel (u, v) of the network's grid sits at u + 0.5, v + 0.5 here (pixel centres).
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    focal = TRUE_FOCAL * (1.0 + noise.focal_error)
    rays = np.stack(
        [(u + 0.5 - K[0, 2]) / focal, (v + 0.5 - K[1, 2]) / focal, np.ones(u.shape)], axis=-1
    )
    world_to_view0 = poses[0]
    images, depths, outputs = [], [], []
    for k, cam_from_world in enumerate(poses):
        image = trace([(scene, cam_from_world)], K, WIDTH, HEIGHT, supersample=2).image
        true_depth = trace([(scene, cam_from_world)], K, WIDTH, HEIGHT, supersample=1).depth
        depths.append(true_depth)
        depth = true_depth * (1.0 + noise.depth_warp * smooth_field(rng, HEIGHT, WIDTH))
        local = rays * depth[..., None]  # (H, W, 3) in this camera's frame
        view0_from_cam = world_to_view0 @ np.linalg.inv(cam_from_world)
        scene_depth = float(np.median(depth))
        if k > 0:  # the view as a whole a little misplaced, about its own camera
            wrong = np.eye(4)
            wrong[:3, :3] = small_rotation(rng, noise.rotation_deg)
            wrong[:3, 3] = rng.normal(0.0, noise.shift * scene_depth, 3)
            view0_from_cam = view0_from_cam @ wrong
        global_pts = local @ view0_from_cam[:3, :3].T + view0_from_cam[:3, 3]
        confidence = rng.uniform(3.0, 12.0, depth.shape)
        far = rng.random(depth.shape) < noise.outliers
        global_pts[far] += rng.normal(0.0, 0.3 * scene_depth, (int(far.sum()), 3))
        confidence[far] = rng.uniform(1.0, 2.0, int(far.sum()))
        local_scale = rng.uniform(0.7, 1.3)
        images.append(image)
        outputs.append(
            {
                "pts3d_in_other_view": _tensor(global_pts),
                "conf": _tensor(confidence),
                "pts3d_local": _tensor(local * local_scale),
                "conf_local": _tensor(confidence * rng.uniform(0.9, 1.1, depth.shape)),
            }
        )
    return StandInCapture(images, K, poses, depths, outputs)


def cloud_errors(capture: StandInCapture, reconstruction: Reconstruction) -> np.ndarray:
    """How far each depth-map point of the reconstruction's views lies from the true point of its
    pixel, in the scene's units (metres), after the similarity that best puts the reconstructed
    camera centres onto the true ones. One photo per view, in capture order."""
    views = reconstruction.views
    if len(views) != len(capture.poses):
        raise ValueError(f"{len(views)} views for {len(capture.poses)} photos")
    centres = camera_centre(np.stack([view.cam_from_world for view in views]))
    scale, rotation, shift = umeyama_alignment(centres, camera_centre(np.stack(capture.poses)))
    errors = []
    for view, true_pose, true_depth in zip(views, capture.poses, capture.depths, strict=True):
        world = scale * _unproject(view.depth, view.depth_K, view.cam_from_world) @ rotation.T
        truth = _unproject(true_depth, capture.K, true_pose)
        seen = view.depth > 0
        errors.append(np.linalg.norm(world + shift - truth, axis=-1)[seen])
    return np.concatenate(errors)


def _unproject(depth: np.ndarray, K: np.ndarray, cam_from_world: np.ndarray) -> np.ndarray:
    """World points (H, W, 3) of a depth map, K with pixel centres at +0.5."""
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]]
    cam = np.stack(
        [(u + 0.5 - K[0, 2]) / K[0, 0] * depth, (v + 0.5 - K[1, 2]) / K[1, 1] * depth, depth], -1
    )
    world_from_cam = np.linalg.inv(cam_from_world)
    return cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))[None]
