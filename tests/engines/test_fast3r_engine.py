"""Fast3REngine with a stand-in network that returns exact pointmaps of known cameras.

The stand-in ignores the pixels and returns what a perfect Fast3R would: each view's pixels
(OpenCV grid, principal point at the image centre, focal FOCAL_PX in model pixels) lifted to a
known depth surface, in view 0's frame (global head) and, at half scale, in the view's own
frame (local head). The engine must then recover the focal, the cameras and the surface.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aetherscan.engines.base import EngineError, Observer, Photo
from aetherscan.engines.fast3r import Fast3REngine
from aetherscan.geometry.camera import (
    crop_K_to_photo_K,
    intrinsics_matrix,
    invert_pose,
    is_rigid,
    opencv_K_to_colmap_K,
    pose_matrix,
    transform_points,
)
from aetherscan.models.preprocess import plan_crop
from aetherscan.reconstruction import PointCloud

FOCAL_PX = 300.0  # in model pixels
LOCAL_SCALE = 0.5  # the local head's own (wrong) scale


def _rotation_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


TRUE_CAM_FROM_WORLD = [
    np.eye(4),
    pose_matrix(_rotation_y(12.0), [-0.4, 0.05, 0.1]),
    pose_matrix(_rotation_y(-9.0), [0.35, -0.1, 0.2]),
    pose_matrix(_rotation_y(20.0), [-0.7, 0.0, 0.3]),
]


def true_depth(height: int, width: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return 4.0 + 0.6 * np.sin(u / 37.0) * np.cos(v / 23.0) + 0.3 * (v / height)


def local_confidence(height: int, width: int) -> np.ndarray:
    """Highest at the left edge, falling to the right: the top points are the left columns."""
    _, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return 1.0 + 9.0 * (1.0 - u / width)


class ExactPointmaps(torch.nn.Module):
    """Stands in for Fast3R: same call and output, geometry from TRUE_CAM_FROM_WORLD."""

    def __init__(
        self,
        global_conf_scale: list[float] | None = None,
        broken: set[int] = frozenset(),
        scrambled: set[int] = frozenset(),
    ):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # something to move to a device
        self.global_conf_scale = global_conf_scale
        self.broken = broken
        self.scrambled = scrambled  # views whose point map no single camera can explain
        self.calls: list[list[tuple[int, ...]]] = []

    def forward(self, images, image_ids=None):
        self.calls.append([tuple(image.shape) for image in images])
        preds = []
        for i, image in enumerate(images):
            _, _, height, width = image.shape
            v, u = np.mgrid[0:height, 0:width].astype(np.float64)
            depth = true_depth(height, width)
            cam = np.stack(
                [(u - width / 2) / FOCAL_PX * depth, (v - height / 2) / FOCAL_PX * depth, depth], -1
            )
            world = transform_points(invert_pose(TRUE_CAM_FROM_WORLD[i]), cam)
            if i in self.broken:
                world[:] = np.nan
            if i in self.scrambled:
                rows = np.random.default_rng(i).permutation(height * width)
                world = world.reshape(-1, 3)[rows].reshape(height, width, 3)
            conf = 1.0 + 4.0 * np.exp(-((u - width / 2) ** 2 + (v - height / 2) ** 2) / width**2)
            if self.global_conf_scale is not None:
                conf = 1.0 + (conf - 1.0) * self.global_conf_scale[i]
            preds.append(
                {
                    "pts3d_in_other_view": torch.tensor(world, dtype=torch.float32)[None],
                    "conf": torch.tensor(conf, dtype=torch.float32)[None],
                    "pts3d_local": torch.tensor(LOCAL_SCALE * cam, dtype=torch.float32)[None],
                    "conf_local": torch.tensor(
                        local_confidence(height, width), dtype=torch.float32
                    )[None],
                }
            )
        return preds


class Recorder(Observer):
    def __init__(self):
        self.stages: list[tuple[str, float]] = []
        self.batches: list[PointCloud] = []

    def progress(self, stage, fraction, message=""):
        self.stages.append((stage, fraction))

    def points(self, cloud):
        self.batches.append(cloud)


def _write_photo(path, size, *, exif_orientation=None):
    """Left half red, right half blue."""
    width, height = size
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (220, 30, 30)
    array[:, width // 2 :] = (30, 30, 220)
    image = Image.fromarray(array)
    if exif_orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif, quality=95)
    return Photo(name=path.name, path=path)


@pytest.fixture
def photos(tmp_path):
    return [
        _write_photo(tmp_path / "a.png", (64, 48)),
        _write_photo(tmp_path / "b.png", (640, 480)),
        _write_photo(tmp_path / "c.jpg", (48, 64)),  # portrait
    ]


def _engine(model, **options):
    options.setdefault("device", "cpu")
    options.setdefault("image_size", 224)
    return Fast3REngine(model, **options)


@pytest.mark.parametrize("image_size", [224, 512])
def test_engine_recovers_known_cameras_intrinsics_and_surface(photos, image_size):
    reconstruction = _engine(ExactPointmaps(), image_size=image_size).reconstruct(photos)
    assert reconstruction.engine == "fast3r"
    assert [view.name for view in reconstruction.views] == ["a.png", "b.png", "c.jpg"]
    assert reconstruction.dropped == []
    for i, (photo, view) in enumerate(zip(photos, reconstruction.views, strict=True)):
        with Image.open(photo.path) as image:
            photo_size = image.size
        assert (view.width, view.height) == photo_size
        geometry = plan_crop(photo_size, image_size)
        model_w, model_h = geometry.size
        expected_model_K = opencv_K_to_colmap_K(
            intrinsics_matrix(FOCAL_PX, model_w / 2, model_h / 2)
        )
        np.testing.assert_allclose(view.depth_K, expected_model_K, rtol=1e-6)
        expected_K = crop_K_to_photo_K(expected_model_K, geometry.scale, geometry.crop_offset)
        np.testing.assert_allclose(view.K, expected_K, rtol=1e-6)
        assert is_rigid(view.cam_from_world)
        np.testing.assert_allclose(view.cam_from_world, TRUE_CAM_FROM_WORLD[i], atol=2e-5)
        # Points sit on the true surface: in the view's camera they have the true depth at
        # the pixel they project to.
        cam = transform_points(TRUE_CAM_FROM_WORLD[i], view.points.astype(np.float64))
        u = np.round(cam[:, 0] / cam[:, 2] * FOCAL_PX + model_w / 2).astype(int)
        v = np.round(cam[:, 1] / cam[:, 2] * FOCAL_PX + model_h / 2).astype(int)
        np.testing.assert_allclose(cam[:, 2], true_depth(model_h, model_w)[v, u], rtol=1e-5)
        assert view.depth.shape == view.depth_confidence.shape == (model_h, model_w)
        np.testing.assert_allclose(view.depth, true_depth(model_h, model_w), rtol=1e-5)


def test_the_verdict_is_good_for_consistent_maps_and_names_a_view_no_camera_explains(photos):
    good = _engine(ExactPointmaps()).reconstruct(photos)
    assert good.quality.verdict == "good" and good.quality.reasons == []
    doubtful = _engine(ExactPointmaps(scrambled={2})).reconstruct(photos)
    assert doubtful.quality.verdict == "uncertain"
    assert any("c.jpg" in reason for reason in doubtful.quality.reasons)


def test_view_points_are_the_most_confident_with_their_pixel_colours(photos):
    reconstruction = _engine(
        ExactPointmaps(), max_points_per_view=500, min_confidence=2.0
    ).reconstruct(photos)
    for view in reconstruction.views:
        assert len(view.points) == 500
        assert view.points.dtype == np.float32 and view.colors.dtype == np.uint8
        assert np.all(np.diff(view.confidence) <= 0)  # stored most confident first
        # The 500 most confident pixels are the left columns: the red half of every photo.
        assert view.confidence.min() > 9.0
        red = np.tile([220, 30, 30], (500, 1))
        np.testing.assert_allclose(view.colors, red, atol=4)  # one photo is a JPEG


def test_min_confidence_and_all_points(photos):
    everything = _engine(ExactPointmaps(), max_points_per_view="all").reconstruct(photos)
    assert everything.views[0].points.shape == (224 * 224, 3)
    confident = _engine(ExactPointmaps(), max_points_per_view="all", min_confidence=5.5)
    for view in confident.reconstruct(photos).views:
        assert view.confidence.min() >= 5.5
        assert 0.45 < len(view.points) / (224 * 224) < 0.55  # about the left half


def test_observer_gets_stages_in_order_and_batches_that_make_up_the_cloud(photos):
    recorder = Recorder()
    reconstruction = _engine(ExactPointmaps(), max_points_per_view=300).reconstruct(
        photos, recorder
    )
    order = ["load", "inference", "poses", "points", "done"]
    seen = [stage for stage, _ in recorder.stages]
    assert sorted(set(seen), key=order.index) == order
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    fractions = [fraction for _, fraction in recorder.stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(recorder.batches) == 3
    union = PointCloud.concatenate(recorder.batches)
    cloud = reconstruction.point_cloud()
    for key in ("xyz", "rgb", "confidence", "view_index"):
        np.testing.assert_array_equal(getattr(union, key), getattr(cloud, key))


def test_exif_rotated_photo_gets_upright_size(tmp_path):
    photos = [
        _write_photo(tmp_path / "a.jpg", (64, 48)),
        _write_photo(tmp_path / "rotated.jpg", (64, 48), exif_orientation=6),
    ]
    reconstruction = _engine(ExactPointmaps(), image_size=384).reconstruct(photos)
    rotated = reconstruction.views[1]
    assert (rotated.width, rotated.height) == (48, 64)
    assert rotated.depth.shape == (384, 288)  # upright, portrait
    # Model pixel centre 144.5 of a 6x enlargement is photo x = 24 + 0.5 / 6.
    assert rotated.K[0, 2] == pytest.approx(24 + 0.5 / 6, rel=1e-9)


def test_unplaced_unreadable_and_unposable_photos_are_dropped_with_reasons(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    photos = [*photos, Photo("broken.jpg", broken), _write_photo(tmp_path / "d.png", (64, 48))]
    # Model views: a, b, c, d (broken.jpg never reaches the model).
    model = ExactPointmaps(global_conf_scale=[1.0, 0.05, 1.0, 1.0], broken={2})
    reconstruction = _engine(model).reconstruct(photos)
    assert len(model.calls[0]) == 4
    assert [view.name for view in reconstruction.views] == ["a.png", "d.png"]
    reasons = {d.name: d.reason for d in reconstruction.dropped}
    assert set(reasons) == {"broken.jpg", "b.png", "c.jpg"}
    assert "cannot be used as a photo" in reasons["broken.jpg"]
    assert "could not place" in reasons["b.png"]
    assert "pose could not be estimated" in reasons["c.jpg"]
    np.testing.assert_allclose(
        reconstruction.views[1].cam_from_world, TRUE_CAM_FROM_WORLD[3], atol=2e-5
    )
    assert set(reconstruction.point_cloud().view_index.tolist()) == {0, 1}


def test_refuses_too_few_and_too_many_photos(photos, tmp_path):
    engine = _engine(ExactPointmaps())
    with pytest.raises(EngineError, match="at least 2"):
        engine.reconstruct(photos[:1])
    many = [Photo(f"{i}.jpg", tmp_path / f"{i}.jpg") for i in range(1001)]
    with pytest.raises(EngineError, match="at most 1000"):
        engine.reconstruct(many)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    with pytest.raises(EngineError, match="only 1 of 2 photos"):
        engine.reconstruct([photos[0], Photo("broken.jpg", broken)])


def test_no_placed_view_is_an_error(photos):
    model = ExactPointmaps(global_conf_scale=[0.01, 0.01, 0.01])
    with pytest.raises(EngineError, match="could not place any"):
        _engine(model).reconstruct(photos)


def test_bad_options_are_refused():
    with pytest.raises(EngineError, match="image_size"):
        Fast3REngine(ExactPointmaps(), device="cpu", image_size=256)
    with pytest.raises(EngineError, match="max_points_per_view"):
        Fast3REngine(ExactPointmaps(), device="cpu", max_points_per_view=0)
    with pytest.raises(EngineError, match="unknown device"):
        Fast3REngine(ExactPointmaps(), device="gpu0")
    with pytest.raises(EngineError, match="dtype"):
        Fast3REngine(ExactPointmaps(), device="cpu", dtype="int4")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA"):
            Fast3REngine(ExactPointmaps(), device="cuda")
