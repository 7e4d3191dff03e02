"""CPU densification on a rendered scene with known geometry: a textured wall with a textured
card standing in front of it, seen by landscape and portrait cameras of different focal lengths."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from aetherscan.engines.densify import DensifyOptions, densify
from aetherscan.geometry.camera import colmap_K_to_opencv_K

# Tolerances, relative to the depth of a point (the scene is about 4 units away).
MEDIAN_SURFACE_ERROR = 0.003
P95_SURFACE_ERROR = 0.01
# Fused points per pixel of the middle view where it sees any: about 1 when each surface
# point is emitted once, up to 5 if all five views emitted their own copy.
MAX_POINTS_PER_PIXEL = 1.4


@dataclass(frozen=True)
class Plane:
    """A textured rectangle: origin corner, two edge vectors, and its texture."""

    origin: np.ndarray
    u_edge: np.ndarray
    v_edge: np.ndarray
    texture: np.ndarray  # (h, w, 3) uint8

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u_edge, self.v_edge)
        return n / np.linalg.norm(n)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance of points to the rectangle (to the plane inside it, infinite outside)."""
        offset = points - self.origin
        s = offset @ self.u_edge / (self.u_edge @ self.u_edge)
        t = offset @ self.v_edge / (self.v_edge @ self.v_edge)
        inside = (s > -0.02) & (s < 1.02) & (t > -0.02) & (t < 1.02)
        return np.where(inside, np.abs(offset @ self.normal), np.inf)

    def render(self, image: np.ndarray, K: np.ndarray, pose: np.ndarray) -> None:
        """Paint the plane into ``image`` (in place), over what is there."""
        h, w = self.texture.shape[:2]
        R, t = pose[:3, :3], pose[:3, 3]
        # texture pixel centre (s, t) (OpenCV convention) -> origin + (s + 0.5)/w u + (t + 0.5)/h v
        columns = np.stack(
            [
                R @ self.u_edge / w,
                R @ self.v_edge / h,
                R @ (self.origin + 0.5 * self.u_edge / w + 0.5 * self.v_edge / h) + t,
            ],
            axis=1,
        )
        H = colmap_K_to_opencv_K(K) @ columns
        size = (image.shape[1], image.shape[0])
        paint = cv2.warpPerspective(self.texture, H, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, size, flags=cv2.INTER_LINEAR)
        alpha = mask[..., None].astype(np.float32) / 255
        image[:] = (alpha * paint + (1 - alpha) * image).astype(np.uint8)


def noise_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Colour noise at several scales, like stone or foliage: something to match on."""
    texture = np.zeros((height, width, 3), np.float32)
    for cell in (2, 4, 8, 16, 32):
        coarse = rng.uniform(-1, 1, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        texture += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[
            :height, :width
        ] * (cell**0.5)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    return (40 + 180 * texture).astype(np.uint8)


def look_at(center, target, roll_deg: float = 0.0) -> np.ndarray:
    center, target = np.asarray(center, float), np.asarray(target, float)
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])
    roll = np.radians(roll_deg)
    R = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]]) @ R
    pose = np.eye(4)
    pose[:3, :3] = R
    pose[:3, 3] = -R @ center
    return pose


@dataclass
class Scene:
    images: list[np.ndarray]
    K: list[np.ndarray]
    poses: list[np.ndarray]
    planes: list[Plane]
    sparse: np.ndarray

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        return np.min([plane.distance(points) for plane in self.planes], axis=0)


@pytest.fixture(scope="module")
def scene() -> Scene:
    """A wall at z = 0 (facing -z) and a card 0.8 in front of it; five cameras about 4 units
    away, 7 degrees apart, two of them portrait with a longer focal length."""
    rng = np.random.default_rng(7)
    wall = Plane(
        np.array([-2.0, -1.5, 0.0]),
        np.array([4.0, 0, 0]),
        np.array([0, 3.0, 0]),
        noise_texture(rng, 800, 600),
    )
    card = Plane(
        np.array([-0.5, -0.4, -0.8]),
        np.array([1.0, 0, 0.2]),
        np.array([0, 0.8, 0]),
        noise_texture(rng, 300, 240),
    )
    images, Ks, poses = [], [], []
    for index, angle in enumerate((-14, -7, 0, 7, 14)):
        a = np.radians(angle)
        center = 4.0 * np.array([np.sin(a), 0.1, -np.cos(a)])
        portrait = index in (1, 3)
        width, height, focal, roll = (240, 320, 330.0, 90.0) if portrait else (320, 240, 300.0, 0)
        K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        pose = look_at(center, [0.0, 0.0, 0.0], roll)
        # Rendered at 4x and averaged down, as a camera's pixels average the light they get.
        fine = np.zeros((4 * height, 4 * width, 3), np.uint8)
        K_fine = np.diag([4.0, 4.0, 1.0]) @ K
        for plane in (wall, card):  # back to front
            plane.render(fine, K_fine, pose)
        images.append(cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA))
        Ks.append(K)
        poses.append(pose)
    # "SfM points": spots on both surfaces.
    sparse = np.concatenate(
        [
            plane.origin
            + rng.uniform(0, 1, (200, 1)) * plane.u_edge
            + rng.uniform(0, 1, (200, 1)) * plane.v_edge
            for plane in (wall, card)
        ]
    )
    return Scene(images, Ks, poses, [wall, card], sparse)


def depth_of(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return (points @ pose[:3, :3].T + pose[:3, 3])[:, 2]


@dataclass
class Dense:
    result: list
    delivered: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    fractions: list[float]

    @property
    def xyz(self) -> np.ndarray:
        return np.concatenate([r[0] for r in self.result]).astype(np.float64)


@pytest.fixture(scope="module")
def dense(scene: Scene) -> Dense:
    """The scene densified with default options, recording what the callbacks received."""
    delivered: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    fractions: list[float] = []

    def on_view(index, xyz, rgb, confidence) -> None:
        assert index not in delivered, "each view is delivered once"
        delivered[index] = (xyz, rgb, confidence)

    result = densify(
        scene.images,
        scene.K,
        scene.poses,
        scene.sparse,
        on_view=on_view,
        progress=lambda fraction, message: fractions.append(fraction),
    )
    return Dense(result, delivered, fractions)


def test_results_match_what_the_callbacks_heard(scene: Scene, dense: Dense) -> None:
    assert len(dense.result) == len(scene.images)
    assert sorted(dense.delivered) == list(range(len(scene.images)))
    for index, (xyz, rgb, confidence, depth) in enumerate(dense.result):
        assert xyz.dtype == np.float32 and rgb.dtype == np.uint8
        assert confidence.dtype == np.float32 and np.all(confidence >= 2)
        for got, sent in zip((xyz, rgb, confidence), dense.delivered[index], strict=True):
            np.testing.assert_array_equal(got, sent)
        assert depth is not None and depth.dtype == np.float32
        assert depth.shape == scene.images[index].shape[:2]
    assert dense.fractions == sorted(dense.fractions) and dense.fractions[-1] == 1.0


def test_points_lie_on_the_true_surfaces(scene: Scene, dense: Dense) -> None:
    xyz = dense.xyz
    # Fused points cover the scene about once: compare with the pixels of one view.
    pixels = scene.images[2].shape[0] * scene.images[2].shape[1]
    assert len(xyz) > 0.8 * pixels, f"only {len(xyz)} points, one view has {pixels} pixels"
    relative = scene.surface_distance(xyz) / depth_of(xyz, scene.poses[2])
    assert np.median(relative) < MEDIAN_SURFACE_ERROR
    assert np.percentile(relative, 95) < P95_SURFACE_ERROR
    # Both surfaces are there, the card and the wall around it.
    on_card = scene.planes[1].distance(xyz) < 0.05
    assert 0.04 < on_card.mean() < 0.3


def test_confidence_marks_points_that_a_view_sees_through(scene: Scene, dense: Dense) -> None:
    """Whole part: the views that agree; a half more when no view checked sees through the
    point. Among points seen by as many views, those seen through lie farther from the true
    surfaces (the stereo error at depth edges)."""
    xyz = dense.xyz
    confidence = np.concatenate([r[2] for r in dense.result])
    views = np.floor(confidence)
    assert views.min() >= 2 and views.max() <= len(scene.images)
    assert set(np.unique(confidence - views)) <= {0.0, 0.5}
    relative = scene.surface_distance(xyz) / depth_of(xyz, scene.poses[2])
    compared = 0
    for count in np.unique(views):
        clear = confidence == count + 0.5
        seen_through = confidence == count
        if clear.sum() < 100 or seen_through.sum() < 100:
            continue
        assert np.median(relative[seen_through]) > 1.3 * np.median(relative[clear])
        compared += 1
    assert compared >= 1


def test_points_are_not_duplicated_across_views(scene: Scene, dense: Dense) -> None:
    # Project everything into the middle view: a surface covered once gives about one point per
    # pixel; near-copies from several views would pile up several per pixel.
    K, pose = colmap_K_to_opencv_K(scene.K[2]), scene.poses[2]
    cam = dense.xyz @ pose[:3, :3].T + pose[:3, 3]
    pixel = np.rint(cam[:, :2] / cam[:, 2:] * np.diag(K)[:2] + K[:2, 2]).astype(int)
    height, width = scene.images[2].shape[:2]
    inside = (
        (pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0) & (pixel[:, 1] < height)
    )
    counts = np.bincount(pixel[inside, 1] * width + pixel[inside, 0], minlength=width * height)
    covered = counts[counts > 0]
    assert covered.mean() < MAX_POINTS_PER_PIXEL, f"{covered.mean():.2f} points per pixel"


def test_depth_maps_agree_with_the_points(scene: Scene, dense: Dense) -> None:
    for (xyz, _, _, depth), K, pose in zip(dense.result, scene.K, scene.poses, strict=True):
        assert depth is not None
        cam = xyz.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
        K_cv = colmap_K_to_opencv_K(K)
        pixel = np.rint(cam[:, :2] / cam[:, 2:] * np.diag(K_cv)[:2] + K_cv[:2, 2]).astype(int)
        np.testing.assert_allclose(depth[pixel[:, 1], pixel[:, 0]], cam[:, 2], rtol=1e-4)


def test_without_sparse_points_the_optical_axes_give_the_depth_range(scene: Scene) -> None:
    result = densify(scene.images, scene.K, scene.poses, None)
    xyz = np.concatenate([r[0] for r in result]).astype(np.float64)
    assert len(xyz) > 10_000
    relative = scene.surface_distance(xyz) / depth_of(xyz, scene.poses[2])
    assert np.median(relative) < MEDIAN_SURFACE_ERROR


def test_a_view_without_partner_gives_no_points(scene: Scene) -> None:
    # A sixth camera looking away from the scene sees none of it.
    away = look_at([0.0, 0.4, -4.0], [0.0, 0.4, -8.0])
    image = np.full((240, 320, 3), 128, np.uint8)
    delivered = []
    result = densify(
        [*scene.images, image],
        [*scene.K, scene.K[0]],
        [*scene.poses, away],
        scene.sparse,
        on_view=lambda index, xyz, rgb, confidence: delivered.append((index, len(xyz))),
    )
    xyz, rgb, confidence, depth = result[5]
    assert len(xyz) == len(rgb) == len(confidence) == 0 and depth is None
    assert (5, 0) in delivered
    assert sum(len(r[0]) for r in result[:5]) > 10_000


def test_more_consistent_views_required_means_fewer_points(scene: Scene, dense: Dense) -> None:
    loose = dense.result
    strict = densify(
        scene.images,
        scene.K,
        scene.poses,
        scene.sparse,
        options=DensifyOptions(min_consistent_views=2),
    )
    count = lambda result: sum(len(r[0]) for r in result)  # noqa: E731
    assert 0 < count(strict) < count(loose)
    assert all(np.all(r[2] >= 3) for r in strict)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([np.zeros((10, 10), np.uint8)], "uint8 images"),
        ([np.zeros((10, 10, 3), np.float32)], "uint8 images"),
    ],
)
def test_bad_input_is_refused(images, message) -> None:
    with pytest.raises(ValueError, match=message):
        densify(images, [np.eye(3)], [np.eye(4)])


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="as many"):
        densify([np.zeros((10, 10, 3), np.uint8)] * 2, [np.eye(3)], [np.eye(4)] * 2)


def test_two_overlapping_photos_are_enough(scene: Scene) -> None:
    result = densify(scene.images[:2], scene.K[:2], scene.poses[:2], scene.sparse)
    xyz = np.concatenate([r[0] for r in result]).astype(np.float64)
    assert len(xyz) > 20_000
    relative = scene.surface_distance(xyz) / depth_of(xyz, scene.poses[0])
    assert np.median(relative) < MEDIAN_SURFACE_ERROR


def test_a_single_photo_gives_no_points(scene: Scene) -> None:
    ((xyz, rgb, confidence, depth),) = densify(scene.images[:1], scene.K[:1], scene.poses[:1])
    assert len(xyz) == len(rgb) == len(confidence) == 0 and depth is None
    assert densify([], [], []) == []
