"""Render a textured room with a box in it from known cameras: photos plus exact ground truth.

A test scene with as many photos as wanted and exact poses, for the engine tests and for the
100-photo timing (no real set that large is at hand). Textures are random shapes, rich in SIFT
features; rendering is plain ray casting in numpy with 2x supersampling (``trace``, which
benchmarks/synthetic_object.py shares).

    python benchmarks/synthetic_scene.py OUT_DIR --photos 100 --width 1024 --height 768

writes OUT_DIR/images/view_000.png ... (with the 35 mm equivalent focal length in EXIF, as a
camera would) and OUT_DIR/ground_truth.json (docs/evaluation.md).
World axes: z up, metres; the room is 6 x 6 x 3 with a 1.2 m box in the middle.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

EXIF_IFD, EXIF_FOCAL_35MM = 0x8769, 0xA405
DIAGONAL_35MM = float(np.hypot(36.0, 24.0))


@dataclass
class Hit:
    """Rays against one surface: ``t`` (H, W) the ray parameter (inf where missed), ``a``, ``b``
    (H, W) texture coordinates in 0..1, ``normal`` (3,) or (H, W, 3) in the surface's frame."""

    t: np.ndarray
    a: np.ndarray
    b: np.ndarray
    normal: np.ndarray


class Surface(Protocol):
    texture: np.ndarray  # (T, T, 3) uint8, addressed by Hit.a (columns) and Hit.b (rows)

    def hit(self, centre: np.ndarray, rays: np.ndarray) -> Hit: ...


@dataclass
class Rectangle:
    origin: np.ndarray  # (3,) one corner
    u: np.ndarray  # (3,) first edge
    v: np.ndarray  # (3,) second edge
    texture: np.ndarray  # (T, T, 3) uint8

    def hit(self, centre: np.ndarray, rays: np.ndarray) -> Hit:
        """Where rays (H, W, 3) from centre (3,) meet the rectangle, in its frame's units."""
        normal = np.cross(self.u, self.v)
        offset = centre - self.origin
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -(offset @ normal) / (rays @ normal)  # (H, W)
            a = (offset @ self.u + t * (rays @ self.u)) / (self.u @ self.u)
            b = (offset @ self.v + t * (rays @ self.v)) / (self.v @ self.v)
            inside = (t > 1e-6) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
        return Hit(np.where(inside, t, np.inf), a, b, normal / np.linalg.norm(normal))


def random_texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Random filled shapes in random colours on a random background: distinctive everywhere."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = rng.integers(40, 220, 3)
    for _ in range(260):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        x, y = (int(c) for c in rng.integers(0, size, 2))
        r = int(rng.integers(4, size // 10))
        if kind == 0:
            cv2.circle(image, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + r, y + int(rng.integers(4, size // 10))), colour, -1)
        else:
            end = (int(x + rng.integers(-r, r + 1) * 3), int(y + rng.integers(-r, r + 1) * 3))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    return cv2.GaussianBlur(image, (3, 3), 0)


def room_scene(seed: int = 0) -> list[Rectangle]:
    rng = np.random.default_rng(seed)
    a = np.array
    faces = [
        (a([-3.0, -3, 0]), a([6.0, 0, 0]), a([0.0, 6, 0])),  # floor
        (a([-3.0, -3, 3]), a([6.0, 0, 0]), a([0.0, 6, 0])),  # ceiling
        (a([-3.0, 3, 0]), a([6.0, 0, 0]), a([0.0, 0, 3])),  # walls
        (a([-3.0, -3, 0]), a([6.0, 0, 0]), a([0.0, 0, 3])),
        (a([-3.0, -3, 0]), a([0.0, 6, 0]), a([0.0, 0, 3])),
        (a([3.0, -3, 0]), a([0.0, 6, 0]), a([0.0, 0, 3])),
        (a([-0.6, -0.6, 1.2]), a([1.2, 0, 0]), a([0.0, 1.2, 0])),  # box top and sides
        (a([-0.6, -0.6, 0]), a([1.2, 0, 0]), a([0.0, 0, 1.2])),
        (a([-0.6, 0.6, 0]), a([1.2, 0, 0]), a([0.0, 0, 1.2])),
        (a([-0.6, -0.6, 0]), a([0.0, 1.2, 0]), a([0.0, 0, 1.2])),
        (a([0.6, -0.6, 0]), a([0.0, 1.2, 0]), a([0.0, 0, 1.2])),
    ]
    return [Rectangle(o, u, v, random_texture(rng)) for o, u, v in faces]


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """cam_from_world (4, 4), OpenCV axes, for a camera at centre looking at target, z up."""
    forward = target - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ centre
    return T


def orbit(num_views: int, *, arc_deg: float = 360.0, radius: float = 2.2) -> list[np.ndarray]:
    """Cameras in capture order on a circle around the box, bobbing in height."""
    poses = []
    for k in range(num_views):
        angle = np.radians(arc_deg * k / (num_views if arc_deg >= 360 else max(num_views - 1, 1)))
        centre = np.array(
            [radius * np.cos(angle), radius * np.sin(angle), 1.6 + 0.3 * np.sin(3 * angle)]
        )
        poses.append(look_at(centre, np.array([0.0, 0.0, 0.6])))
    return poses


@dataclass
class Trace:
    """One rendered photo: the image and, per supersampled pixel, what the ray met first."""

    image: np.ndarray  # (H, W, 3) uint8
    surface: np.ndarray  # (H * ss, W * ss) int, index into the surfaces of all groups, -1: none
    depth: np.ndarray  # (H * ss, W * ss) z in the camera frame, inf where nothing was hit


def trace(
    groups: Sequence[tuple[Sequence[Surface], np.ndarray]],
    K: np.ndarray,
    width: int,
    height: int,
    *,
    supersample: int = 2,
    light_cam: np.ndarray | None = None,
    ambient: float = 0.4,
    background: tuple[int, int, int] = (0, 0, 0),
) -> Trace:
    """Ray-cast groups of surfaces, each given with its cam_from_frame (4, 4): surfaces that move
    rigidly together (an object on a turntable) share a group and a frame.

    ``light_cam``: unit direction towards a distant light, in the camera frame; None draws the
    textures unshaded. Otherwise a surface shows ``ambient + (1 - ambient) * cos(incidence)`` of
    its texture, lit from either side.
    """
    ss = supersample
    xs = (np.arange(width * ss) + 0.5) / ss  # pixel centres at +0.5 (docs: reconstruction.py)
    ys = (np.arange(height * ss) + 0.5) / ss
    px, py = np.meshgrid(xs, ys)  # (H, W)
    rays_cam = np.stack(
        [(px - K[0, 2]) / K[0, 0], (py - K[1, 2]) / K[1, 1], np.ones_like(px)], -1
    )  # (H, W, 3), z = 1: the ray parameter is the depth
    best = np.full(px.shape, np.inf)
    surface_index = np.full(px.shape, -1, np.int32)
    image = np.empty((*px.shape, 3), np.float32)
    image[:] = background
    index = 0
    for surfaces, cam_from_frame in groups:
        frame_from_cam = np.linalg.inv(cam_from_frame)
        centre = frame_from_cam[:3, 3]
        rays = rays_cam @ frame_from_cam[:3, :3].T  # (H, W, 3) directions in the frame
        for surface in surfaces:
            hit = surface.hit(centre, rays)
            visible = hit.t < best
            if visible.any():
                size = surface.texture.shape[0]
                map_x = (hit.a * (size - 1)).astype(np.float32)
                map_y = (hit.b * (size - 1)).astype(np.float32)
                colour = cv2.remap(surface.texture, map_x, map_y, cv2.INTER_LINEAR)
                colour = colour[visible].astype(np.float32)  # (N, 3)
                if light_cam is not None:
                    normal = np.broadcast_to(hit.normal, rays.shape)[visible]  # (N, 3)
                    normal = normal @ cam_from_frame[:3, :3].T  # into the camera frame
                    facing = np.sign(np.einsum("nc,nc->n", normal, rays_cam[visible]))
                    cosine = np.clip(-facing * (normal @ light_cam), 0.0, 1.0)
                    colour *= (ambient + (1.0 - ambient) * cosine)[:, None]
                image[visible] = colour
                best[visible] = hit.t[visible]
                surface_index[visible] = index
            index += 1
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return Trace(np.clip(image, 0, 255).astype(np.uint8), surface_index, best)


def render(
    scene: list[Rectangle], K: np.ndarray, cam_from_world: np.ndarray, width: int, height: int
) -> np.ndarray:
    """(height, width, 3) uint8 image, rendered at 2x and averaged down."""
    return trace([(scene, cam_from_world)], K, width, height).image


def focal_exif(focal_px: float, width: int, height: int) -> Image.Exif:
    """EXIF as a camera writes it: the 35 mm equivalent focal length, rounded to a millimetre."""
    exif = Image.Exif()
    exif[EXIF_IFD] = {EXIF_FOCAL_35MM: round(focal_px / np.hypot(width, height) * DIAGONAL_35MM)}
    return exif


def camera_json(
    name: str, K: np.ndarray, cam_from_world: np.ndarray, width: int, height: int
) -> dict:
    """One entry of the ground-truth file's ``cameras`` (docs/evaluation.md)."""
    return {
        "name": name,
        "width": width,
        "height": height,
        "K": K.tolist(),
        "R": cam_from_world[:3, :3].tolist(),
        "t": cam_from_world[:3, 3].tolist(),
    }


def write_scene(
    out: Path,
    num_views: int,
    width: int,
    height: int,
    *,
    arc_deg: float = 360.0,
    seed: int = 0,
    with_exif: bool = True,
) -> Path:
    """Render the views into out/images and the truth into out/ground_truth.json; returns it."""
    scene = room_scene(seed)
    focal = 0.9 * width
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    (out / "images").mkdir(parents=True, exist_ok=True)
    exif = focal_exif(focal, width, height) if with_exif else Image.Exif()
    cameras = []
    for k, pose in enumerate(orbit(num_views, arc_deg=arc_deg)):
        name = f"view_{k:03d}.png"
        image = Image.fromarray(render(scene, K, pose, width, height))
        image.save(out / "images" / name, exif=exif)
        cameras.append(camera_json(name, K, pose, width, height))
    path = out / "ground_truth.json"
    path.write_text(json.dumps({"source": "benchmarks/synthetic_scene.py", "cameras": cameras}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--arc-deg", type=float, default=360.0)
    args = parser.parse_args()
    path = write_scene(args.out, args.photos, args.width, args.height, arc_deg=args.arc_deg)
    print(f"wrote {args.photos} photos and {path}")


if __name__ == "__main__":
    main()
