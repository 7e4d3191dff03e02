"""Render object captures with exact cameras: the hard cases of classical SfM, as test sets.

    python benchmarks/synthetic_object.py OUT_DIR --kind turntable --texture low --step-deg 22.5
    python benchmarks/synthetic_object.py OUT_DIR --kind ring --texture low --step-deg 30 \\
        --photos 12 --background dark

writes OUT_DIR/images/view_000.png ... (35 mm equivalent focal length in EXIF),
OUT_DIR/masks/view_000.png.png ... (COLMAP's naming: the photo's name + ``.png``; object white,
everything else black) and OUT_DIR/ground_truth.json (docs/evaluation.md).

Kinds:

- ``turntable``: a box, a cylinder and a small box on a turntable disc, photographed by one still
  camera while the object turns by ``--step-deg`` between photos, in front of a still, richly
  textured table and wall. The background's features stand still while the object's move, which
  is what misleads SfM. The ground truth is the camera in the object's frame (from the object's
  point of view the camera circles it); the disc turns with the object but is masked out.
- ``two_sessions``: the turntable twice, the object upright for the first half of the photos and
  laid on its side for the second (the object turned over between sessions).
- ``ring``: the camera walks a ring around a temple-like object (a base, steps, columns, a
  cella and a stepped roof) on a plain dark or white background, ``--step-deg`` apart, at
  ``--elevation-deg`` plus ``--elevation-swing-deg`` * sin(2 azimuth).

``--texture``: ``rich`` random shapes (benchmarks/synthetic_scene.py), ``low`` smooth gradients,
soft blotches and a few faint marks, ``none`` flat colours with faint noise. A distant light, fixed
in the world, shades the surfaces, and each photo gets its own sensor noise (``--noise``).
World axes: z up, metres; the object stands on z = 0 around the z axis and is about 0.5 m wide.
16 photos at 640x480 take about 19 s on one core (7 s with ``--supersample 1``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from synthetic_scene import (
    Hit,
    Rectangle,
    Surface,
    Trace,
    camera_json,
    focal_exif,
    look_at,
    random_texture,
    trace,
)

TEXTURES = ("rich", "low", "none")
BACKGROUNDS = {"dark": (14, 14, 16), "white": (236, 236, 232)}
LIGHT_WORLD = np.array([0.35, -0.55, 1.0]) / np.linalg.norm([0.35, -0.55, 1.0])
FOCAL_PER_WIDTH = 1.2  # a 42 mm lens in 35 mm terms: tighter than the room's, as for objects


@dataclass
class Cylinder:
    """The side of an upright cylinder: axis along z through (x, y) = centre."""

    centre: np.ndarray  # (2,)
    radius: float
    z0: float
    z1: float
    texture: np.ndarray  # (T, T, 3) uint8: columns go around, rows go up

    def hit(self, centre: np.ndarray, rays: np.ndarray) -> Hit:
        ox, oy = centre[:2] - self.centre
        dx, dy = rays[..., 0], rays[..., 1]
        a2 = dx * dx + dy * dy
        b = dx * ox + dy * oy
        c = ox * ox + oy * oy - self.radius**2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (-b - np.sqrt(b * b - a2 * c)) / a2  # the near side; NaN where missed
            x, y = ox + t * dx, oy + t * dy
            z = centre[2] + t * rays[..., 2]
            inside = (t > 1e-6) & (z >= self.z0) & (z <= self.z1)
        around = (np.arctan2(y, x) + np.pi) / (2 * np.pi)
        up = (z - self.z0) / (self.z1 - self.z0)
        normal = np.stack([x, y, np.zeros_like(x)], -1) / self.radius  # (H, W, 3)
        return Hit(np.where(inside, t, np.inf), around, up, normal)


@dataclass
class Disc:
    """A horizontal disc (a cylinder's cap, the turntable's top)."""

    centre: np.ndarray  # (3,)
    radius: float
    texture: np.ndarray  # (T, T, 3) uint8

    def hit(self, centre: np.ndarray, rays: np.ndarray) -> Hit:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.centre[2] - centre[2]) / rays[..., 2]
            x = centre[0] - self.centre[0] + t * rays[..., 0]
            y = centre[1] - self.centre[1] + t * rays[..., 1]
            inside = (t > 1e-6) & (x * x + y * y <= self.radius**2)
        size = 2 * self.radius
        return Hit(
            np.where(inside, t, np.inf), x / size + 0.5, y / size + 0.5, np.array([0, 0, 1.0])
        )


def surface_texture(
    rng: np.random.Generator, level: str, colour: tuple[int, int, int], size: int = 256
) -> np.ndarray:
    """(size, size, 3) uint8 texture of the given level (TEXTURES); ``rich`` ignores colour."""
    if level == "rich":
        return random_texture(rng)
    image = np.empty((size, size, 3), np.float32)
    image[:] = colour
    if level == "low":
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
        angle = rng.uniform(0, 2 * np.pi)
        image += (40 * (xx * np.cos(angle) + yy * np.sin(angle)))[..., None]  # +-20 levels
        blotches = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 20)
        image += (8 * blotches / (blotches.std() + 1e-9))[..., None]
        marks = np.zeros((size, size), np.float32)
        for _ in range(4):
            x, y = (int(c) for c in rng.integers(0, size, 2))
            axes = (int(rng.integers(6, size // 6)), int(rng.integers(4, size // 8)))
            cv2.ellipse(marks, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        image += (rng.choice([-14.0, 14.0]) * cv2.GaussianBlur(marks, (0, 0), 3))[..., None]
    image += rng.normal(scale=1.5, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def box(
    centre_bottom: tuple[float, float, float],
    size: tuple[float, float, float],
    yaw_deg: float,
    texture: Callable[[], np.ndarray],
    *,
    bottom: bool = False,
) -> list[Rectangle]:
    """The faces of a box turned by yaw about z: top and sides (and bottom), each face a texture
    from ``texture()``."""
    yaw = np.radians(yaw_deg)
    ex = np.array([np.cos(yaw), np.sin(yaw), 0.0]) * size[0]
    ey = np.array([-np.sin(yaw), np.cos(yaw), 0.0]) * size[1]
    ez = np.array([0.0, 0.0, size[2]])
    low = np.asarray(centre_bottom, float) - ex / 2 - ey / 2  # the lowest corner
    faces = [
        (low + ez, ex, ey),  # top
        (low, ex, ez),
        (low + ey, ex, ez),
        (low, ey, ez),
        (low + ex, ey, ez),
    ]
    if bottom:
        faces.append((low, ex, ey))
    return [Rectangle(o, u, v, texture()) for o, u, v in faces]


def turntable_object(rng: np.random.Generator, level: str) -> list[Surface]:
    """A figurine of a box, a cylinder with its cap and a small box on top, in the object frame."""

    def painted(colour: tuple[int, int, int]):
        return lambda: surface_texture(rng, level, colour)

    blue = painted((70, 110, 170))
    return [
        *box((-0.08, 0.03, 0.0), (0.26, 0.18, 0.2), 15, painted((175, 75, 60))),
        *box((-0.09, 0.04, 0.2), (0.12, 0.12, 0.1), -20, painted((205, 180, 85))),
        Cylinder(np.array([0.14, -0.07]), 0.08, 0.0, 0.34, blue()),
        Disc(np.array([0.14, -0.07, 0.34]), 0.08, blue()),
    ]


def turntable_disc(rng: np.random.Generator) -> list[Surface]:
    """The turntable's top and rim: plain grey, turning with the object."""
    grey = (118, 118, 124)
    return [
        Disc(np.zeros(3), 0.32, surface_texture(rng, "none", grey)),
        Cylinder(np.zeros(2), 0.32, -0.03, 0.0, surface_texture(rng, "none", grey)),
    ]


def room_corner(rng: np.random.Generator) -> list[Surface]:
    """The still background of the turntable: a table top, a back wall and a side wall."""
    a = np.array
    faces = [
        (a([-1.5, -1.5, -0.03]), a([3.0, 0, 0]), a([0.0, 2.7, 0])),  # table
        (a([-1.5, 1.2, -0.03]), a([3.0, 0, 0]), a([0.0, 0, 1.6])),  # back wall
        (a([1.1, -1.5, -0.03]), a([0.0, 2.7, 0]), a([0.0, 0, 1.6])),  # side wall
    ]
    return [Rectangle(o, u, v, random_texture(rng)) for o, u, v in faces]


def temple(rng: np.random.Generator, level: str) -> list[Surface]:
    """A plaster temple: base, front steps, six columns, a cella and a stepped roof, in the object
    frame; front and back differ, so that the poses are defined without texture."""

    def plaster() -> np.ndarray:
        return surface_texture(rng, level, (196, 188, 170))

    columns = [
        Cylinder(np.array([x, y]), 0.025, 0.05, 0.40, plaster())
        for x in (-0.2, 0.0, 0.2)
        for y in (-0.13, 0.13)
    ]
    return [
        *box((0.0, 0.0, 0.0), (0.5, 0.34, 0.05), 0, plaster),
        *columns,
        *box((0.0, 0.03, 0.05), (0.24, 0.14, 0.35), 0, plaster),  # the cella, set back
        *box((0.0, -0.2, 0.0), (0.2, 0.06, 0.03), 0, plaster),  # front steps: not symmetric
        *box((0.0, 0.0, 0.40), (0.54, 0.38, 0.05), 0, plaster, bottom=True),
        *box((0.0, 0.0, 0.45), (0.40, 0.24, 0.04), 0, plaster),
    ]


def turn_about_z(angle_deg: float) -> np.ndarray:
    """(4, 4) rotation about the z axis, counter-clockwise seen from above."""
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    return T


@dataclass
class Capture:
    """What to photograph; the command line's options."""

    kind: str = "turntable"  # "turntable", "two_sessions" or "ring"
    photos: int = 16
    step_deg: float = 22.5
    texture: str = "low"
    background: str = "dark"  # the ring's plain background, a key of BACKGROUNDS
    elevation_deg: float = 25.0  # the ring's; the turntable's camera looks down by about 20
    elevation_swing_deg: float = 0.0
    seed: int = 0


@dataclass
class Shot:
    """One photo to render: the surfaces in their frames, and which of them are the object."""

    groups: list[tuple[list[Surface], np.ndarray]]  # surfaces and their cam_from_frame
    is_object: np.ndarray  # (S,) bool over the surfaces of all groups, in order
    cam_from_object: np.ndarray  # (4, 4) the ground truth
    light_cam: np.ndarray  # (3,)
    background: tuple[int, int, int]


def shots(capture: Capture) -> list[Shot]:
    """The photos of a capture, in order."""
    if capture.texture not in TEXTURES:
        raise ValueError(f"texture must be one of {TEXTURES}, got {capture.texture!r}")
    rng = np.random.default_rng(capture.seed)
    result = []
    if capture.kind in ("turntable", "two_sessions"):
        background, disc = room_corner(rng), turntable_disc(rng)
        figurine = turntable_object(rng, capture.texture)
        is_object = np.array([False] * (len(background) + len(disc)) + [True] * len(figurine))
        cam_from_world = look_at(np.array([0.0, -1.05, 0.5]), np.array([0.0, 0.0, 0.13]))
        light_cam = cam_from_world[:3, :3] @ LIGHT_WORLD
        # two_sessions, the bronze-object case of #14: for the second half of the photos the
        # object lies on its side on the disc. The still camera and room see both sessions;
        # only the object's frame joins them.
        on_its_side = np.eye(4)
        on_its_side[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # 90 degrees about x
        on_its_side[2, 3] = 0.15  # the lowest point (y = -0.15) back on the disc
        upright = capture.photos if capture.kind == "turntable" else capture.photos // 2
        for k in range(capture.photos):
            disc_pose = cam_from_world @ turn_about_z(k * capture.step_deg)
            cam_from_object = disc_pose if k < upright else disc_pose @ on_its_side
            groups = [(background, cam_from_world), (disc, disc_pose), (figurine, cam_from_object)]
            result.append(Shot(groups, is_object, cam_from_object, light_cam, (0, 0, 0)))
    elif capture.kind == "ring":
        statue = temple(rng, capture.texture)
        target = np.array([0.0, 0.0, 0.22])
        for k in range(capture.photos):
            azimuth = np.radians(k * capture.step_deg - 90)  # the first photo faces the front
            elevation = np.radians(
                capture.elevation_deg + capture.elevation_swing_deg * np.sin(2 * azimuth)
            )
            direction = [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth)]
            centre = target + 1.25 * np.array([*direction, np.sin(elevation)])
            cam_from_object = look_at(centre, target)
            light_cam = cam_from_object[:3, :3] @ LIGHT_WORLD
            result.append(
                Shot(
                    [(statue, cam_from_object)],
                    np.ones(len(statue), bool),
                    cam_from_object,
                    light_cam,
                    BACKGROUNDS[capture.background],
                )
            )
    else:
        raise ValueError(f"kind must be turntable, two_sessions or ring, got {capture.kind!r}")
    return result


def intrinsics(width: int, height: int) -> np.ndarray:
    focal = FOCAL_PER_WIDTH * width
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])


def render_shot(
    shot: Shot, K: np.ndarray, width: int, height: int, supersample: int = 2
) -> tuple[np.ndarray, np.ndarray, Trace]:
    """The photo (H, W, 3) uint8 without sensor noise, its mask (H, W) uint8 (255 where the
    object covers at least half the pixel) and the trace (supersampled surfaces and depths)."""
    traced = trace(
        shot.groups,
        K,
        width,
        height,
        supersample=supersample,
        light_cam=shot.light_cam,
        background=shot.background,
    )
    on_object = (traced.surface >= 0) & shot.is_object[traced.surface]
    coverage = cv2.resize(on_object.astype(np.float32), (width, height), cv2.INTER_AREA)
    return traced.image, np.where(coverage >= 0.5, 255, 0).astype(np.uint8), traced


def write_capture(
    out: Path,
    capture: Capture,
    width: int = 640,
    height: int = 480,
    *,
    supersample: int = 2,
    noise: float = 1.0,
) -> Path:
    """Render the photos, masks and ground truth into out (see the module docstring)."""
    K = intrinsics(width, height)
    exif = focal_exif(K[0, 0], width, height)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    noise_rng = np.random.default_rng([capture.seed, 1])
    cameras = []
    for k, shot in enumerate(shots(capture)):
        name = f"view_{k:03d}.png"
        image, mask, _ = render_shot(shot, K, width, height, supersample)
        if noise > 0:
            grain = noise_rng.normal(scale=noise, size=image.shape)
            image = np.clip(image + grain, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(out / "images" / name, exif=exif)
        Image.fromarray(mask).save(out / "masks" / f"{name}.png")
        cameras.append(camera_json(name, K, shot.cam_from_object, width, height))
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(capture).items())
    source = f"benchmarks/synthetic_object.py {options}; cameras in the object's frame"
    path = out / "ground_truth.json"
    path.write_text(json.dumps({"source": source, "cameras": cameras}, indent=1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--kind", choices=["turntable", "ring", "two_sessions"], default="turntable"
    )
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--step-deg", type=float, default=22.5)
    parser.add_argument("--texture", choices=TEXTURES, default="low")
    parser.add_argument("--background", choices=sorted(BACKGROUNDS), default="dark")
    parser.add_argument("--elevation-deg", type=float, default=25.0, help="ring only")
    parser.add_argument("--elevation-swing-deg", type=float, default=0.0, help="ring only")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--supersample", type=int, choices=[1, 2], default=2)
    parser.add_argument("--noise", type=float, default=1.0, help="sensor noise, grey levels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    capture = Capture(
        args.kind,
        args.photos,
        args.step_deg,
        args.texture,
        args.background,
        args.elevation_deg,
        args.elevation_swing_deg,
        args.seed,
    )
    path = write_capture(
        args.out, capture, args.width, args.height, supersample=args.supersample, noise=args.noise
    )
    print(f"wrote {args.photos} photos, their masks and {path}")


if __name__ == "__main__":
    main()
