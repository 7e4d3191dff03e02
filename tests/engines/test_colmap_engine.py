import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aetherscan.engines.base import Cancelled, EngineError, Observer, Photo
from aetherscan.engines.colmap import ColmapEngine
from aetherscan.engines.sfm.loading import focal_prior_px
from aetherscan.geometry.metrics import score_poses
from aetherscan.reconstruction import PointCloud

FLOWERPOT = Path(__file__).resolve().parents[1] / "fixtures" / "flowerpot"


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.batches: list[PointCloud] = []

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.events.append((stage, fraction))

    def points(self, cloud: PointCloud) -> None:
        self.batches.append(cloud)


def _photos(folder: Path) -> list[Photo]:
    return [Photo(p.name, p) for p in sorted(folder.glob("*.png"))]


@pytest.mark.slow
def test_registers_views_with_true_poses_and_reports_a_photo_of_another_scene(
    synthetic_scene, tmp_path
):
    images, truth = synthetic_scene
    stranger = FLOWERPOT / "P81019-151014.jpg"  # 474 x 640 portrait: also a second camera
    photos = [*_photos(images), Photo("stranger.jpg", stranger)]
    recorder = Recorder()
    # 256 px < 320 px: the engine works on downscaled copies and must scale K back.
    rec = ColmapEngine(max_image_px=256).reconstruct(photos, recorder)

    assert [v.name for v in rec.views] == sorted(truth)
    assert [d.name for d in rec.dropped] == ["stranger.jpg"]
    assert rec.dropped[0].reason
    scores = score_poses(
        [v.cam_from_world for v in rec.views], [truth[v.name]["cam_from_world"] for v in rec.views]
    )
    assert scores.rra_5 == 1.0 and scores.rta_5 == 1.0
    assert scores.rotation_error_median_deg < 1.0
    assert scores.centre_error_median_rel < 0.02
    for view in rec.views:
        assert (view.width, view.height) == (320, 240)
        assert view.K[0, 0] == pytest.approx(truth[view.name]["K"][0][0], rel=0.05)
        assert view.K[:2, 2] == pytest.approx([160, 120], abs=2)
        assert np.allclose(view.cam_from_world[3], [0, 0, 0, 1])
        assert len(view.points) > 0 and (view.confidence >= 1).all()
        # Points are in front of the camera that owns them.
        z = view.points @ view.cam_from_world[2, :3] + view.cam_from_world[2, 3]
        assert np.median(z) > 0

    # Every point reached the observer exactly once.
    streamed = PointCloud.concatenate(recorder.batches)
    cloud = rec.point_cloud()
    assert len(streamed) == len(cloud) == rec.num_points
    order_a = np.lexsort(streamed.xyz.T)
    order_b = np.lexsort(cloud.xyz.T)
    assert np.array_equal(streamed.xyz[order_a], cloud.xyz[order_b])
    assert np.array_equal(streamed.view_index[order_a], cloud.view_index[order_b])

    stages = [s for s, _ in recorder.events]
    for stage in ("load", "features", "matching", "mapping", "points", "done"):
        assert stage in stages
    fractions = [f for _, f in recorder.events]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] == 1.0
    assert {"features", "matching", "mapping", "total"} <= rec.timings_s.keys()


def test_two_overlapping_photos_are_enough(synthetic_scene, tmp_path):
    images, truth = synthetic_scene
    for name in ("view_000.png", "view_002.png"):
        shutil.copy(images / name, tmp_path / name)
    rec = ColmapEngine(max_image_px=320).reconstruct(_photos(tmp_path))
    assert [v.name for v in rec.views] == ["view_000.png", "view_002.png"]
    assert rec.dropped == []
    scores = score_poses(
        [v.cam_from_world for v in rec.views], [truth[v.name]["cam_from_world"] for v in rec.views]
    )
    assert scores.rra_5 == 1.0 and scores.rta_5 == 1.0


def test_photos_that_share_nothing_fail_with_a_message(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(2):
        noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((320, 240)).save(tmp_path / f"noise_{k}.png")
    with pytest.raises(EngineError, match="share"):
        ColmapEngine(max_image_px=320).reconstruct(_photos(tmp_path))


def test_a_crash_in_the_worker_is_an_engine_error_and_the_caller_goes_on(synthetic_scene):
    images, _ = synthetic_scene
    engine = ColmapEngine(max_image_px=160, _abort_at="features")
    with pytest.raises(EngineError, match=r"features stage .*SIGABRT"):
        engine.reconstruct(_photos(images)[:2])
    # Still here: the abort took the worker process only.
    assert ColmapEngine(max_image_px=160).name == "colmap"


def test_an_observer_can_cancel(synthetic_scene):
    images, _ = synthetic_scene

    class Stop(Observer):
        def progress(self, stage, fraction, message=""):
            if stage == "features":
                raise Cancelled()

    with pytest.raises(Cancelled):
        ColmapEngine(max_image_px=160).reconstruct(_photos(images), Stop())


def test_too_few_photos_are_refused_at_once():
    with pytest.raises(EngineError, match="at least 2"):
        ColmapEngine().reconstruct([Photo("a.jpg", FLOWERPOT / "P81019-151014.jpg")])


def test_focal_prior_comes_from_the_35mm_equivalent():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 35  # FocalLengthIn35mmFilm
    f = focal_prior_px(exif, 2832, 2128)
    # Sceaux castle: a 35 mm equivalent of 35 mm; its calibrated focal is 2905.88 px.
    assert f == pytest.approx(2905.88, rel=0.02)
    assert focal_prior_px(Image.Exif(), 640, 480) is None


def test_descriptor_votes_find_the_photos_that_share_features():
    from aetherscan.engines.sfm.matching import descriptor_votes

    rng = np.random.default_rng(1)

    def unit(n):
        d = rng.normal(size=(n, 128)).astype(np.float32)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    shared = unit(40)  # photos 0 and 2 see the same 40 features, slightly changed
    photos = [
        np.concatenate([shared, unit(60)]),
        unit(100),
        np.concatenate([shared + 0.01 * unit(40), unit(60)]),
        unit(100),
    ]
    votes = descriptor_votes(photos, neighbours=1)
    assert np.array_equal(votes, votes.T)
    assert np.argmax(votes[0]) == 2 and np.argmax(votes[2]) == 0
    assert votes[0, 2] >= 2 * 40 * 0.9


@pytest.mark.slow
def test_flowerpot_fixtures_give_sane_cameras_and_name_every_photo_left_out():
    photos = [Photo(p.name, p) for p in sorted(FLOWERPOT.glob("*.jpg"))]
    rec = ColmapEngine(max_image_px=480, densify=False).reconstruct(photos)
    placed = [v.name for v in rec.views]
    dropped = [d.name for d in rec.dropped]
    # Every photo is placed or reported, never both; each report says why.
    assert sorted(placed + dropped) == sorted(p.name for p in photos)
    assert all(d.reason for d in rec.dropped)
    # 45 degree turns between shots: the portrait overview shots place, the close-ups may not.
    # The global mapper places 7, of which 3 contradict their own pairs: those are left out.
    assert len(placed) >= 4
    assert any("contradict" in d.reason for d in rec.dropped)
    # Most matches lie on the flat printed target, and a flat surface cannot confirm a pose:
    # with 45 degrees between shots, too little else ties the photos together to vouch for it.
    assert rec.quality.verdict == "uncertain"
    assert any("not confirmed" in reason for reason in rec.quality.reasons)
    # The point nearest to all optical axes: what the cameras look at (the pot).
    A, b = np.zeros((3, 3)), np.zeros(3)
    for view in rec.views:
        axis = view.cam_from_world[2, :3]
        P = np.eye(3) - np.outer(axis, axis)
        A += P
        b += P @ view.center
    centre = np.linalg.solve(A, b)
    for view in rec.views:
        # EXIF: 3.81 mm lens on a 4.65 mm wide sensor, 640 px long side: about 524 px.
        assert view.K[0, 0] == pytest.approx(3.81 / 4.65 * 640, rel=0.2)
        depth = view.cam_from_world[2, :3] @ centre + view.cam_from_world[2, 3]
        assert depth > 0  # the pot is in front of every camera
    # Sparse confidence: the photos that see a point (whole part) and how closely its
    # reprojection fits them (fraction): spread finely enough to rank points by.
    confidence = rec.point_cloud().confidence
    seen_by = np.floor(confidence)
    assert seen_by.min() >= 2 and seen_by.max() <= len(placed)
    assert len(np.unique(confidence)) > len(np.unique(seen_by)) * 10
