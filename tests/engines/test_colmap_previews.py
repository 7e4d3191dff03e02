"""The COLMAP engine's previews: a first look from the photos' first features, the mapper's
growing model, and the final cameras with sparse points while dense stereo runs. They come
before the result's first points and change nothing of the result."""

from pathlib import Path

import numpy as np
import pytest

from aetherscan.engines.base import Observer, Photo, Preview
from aetherscan.engines.colmap import ColmapEngine
from aetherscan.geometry.metrics import score_poses
from aetherscan.reconstruction import PointCloud


class Timeline(Observer):
    """What the engine said, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.events.append(("progress", (stage, fraction, message)))

    def points(self, cloud: PointCloud) -> None:
        self.events.append(("points", cloud))

    def preview(self, preview: Preview) -> None:
        self.events.append(("preview", preview))

    def of(self, kind: str) -> list:
        return [value for what, value in self.events if what == kind]


def _photos(folder: Path) -> list[Photo]:
    return [Photo(p.name, p) for p in sorted(folder.glob("*.png"))]


@pytest.mark.slow
def test_previews_come_first_and_leave_the_result_as_it_is(synthetic_scene):
    images, truth = synthetic_scene
    photos = _photos(images)
    timeline = Timeline()
    result = ColmapEngine(max_image_px=256).reconstruct(photos, timeline)

    previews: list[Preview] = timeline.of("preview")
    assert len(previews) >= 2  # a first look, and the final cameras before dense stereo
    kinds = [what for what, _ in timeline.events]
    assert max(i for i, k in enumerate(kinds) if k == "preview") < kinds.index("points")
    first = previews[0]
    assert first.message.startswith("a first look")
    assert len(first.cameras) >= 3 and {c.name for c in first.cameras} <= set(truth)
    assert len(first.cloud) > 0 and np.isfinite(first.cloud.xyz).all()
    # A rough look (its focal length is a guess), but not a wrong one on this easy scene.
    scores = score_poses(
        [c.cam_from_world for c in first.cameras],
        [truth[c.name]["cam_from_world"] for c in first.cameras],
    )
    assert scores.rra_15 == 1.0
    for camera in first.cameras:
        # At the photos' own size; the focal length stays the prior (no EXIF here: COLMAP's
        # guess of 1.2 times the long side), which a few weak photos cannot correct.
        assert (camera.width, camera.height) == (320, 240)
        assert camera.K[0, 0] == pytest.approx(1.2 * 320, rel=0.01)
        assert camera.K[:2, 2] == pytest.approx([160, 120], abs=2)

    last = previews[-1]  # the result's own cameras, while its dense points are computed
    assert [c.name for c in last.cameras] == [v.name for v in result.views]
    for camera, view in zip(last.cameras, result.views, strict=True):
        assert np.array_equal(camera.cam_from_world, view.cam_from_world)
        assert np.array_equal(camera.K, view.K)

    quiet = Timeline()
    same = ColmapEngine(max_image_px=256, previews=False).reconstruct(photos, quiet)
    assert quiet.of("preview") == []
    assert [v.name for v in same.views] == [v.name for v in result.views]
    for a, b in zip(same.views, result.views, strict=True):
        assert np.array_equal(a.cam_from_world, b.cam_from_world)
        assert np.array_equal(a.points, b.points)
