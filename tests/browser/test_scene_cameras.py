"""The first fit and "Reset view" frame the cameras too: a long lens's cameras stand far from the
small thing they see, and "Show cameras" must show them; hidden, the fit is the cloud's own."""

from __future__ import annotations

import numpy as np
import pytest
from browser_kit import PlacedEngine, look_at, solid_photos
from scene_kit import on_screen, run_job, settle, shot

pytestmark = pytest.mark.browser

TARGET = np.array([0.0, 0.0, 40.0])


def long_lens_views(count: int = 5) -> list[dict]:
    """Cameras on an arc 40 units from a cloud 0.6 units across, with a lens of 8 widths."""
    rng = np.random.default_rng(3)
    views = []
    for index in range(count):
        angle = np.radians(4 * (index - count // 2))
        centre = TARGET + 40 * np.array([np.sin(angle), 0, -np.cos(angle)])
        views.append(
            {
                "cam_from_world": look_at(centre, TARGET),
                "focal": 8.0,
                "points": rng.normal(size=(500, 3)) * 0.3 + TARGET,
                "colors": rng.integers(60, 255, (500, 3)),
                "confidence": np.full(500, 3.0),
            }
        )
    return views


def centres(views) -> list[np.ndarray]:
    return [-v["cam_from_world"][:3, :3].T @ v["cam_from_world"][:3, 3] for v in views]


def spread_px(page, points) -> float:
    """How far apart, in pixels, the farthest two of ``points`` are drawn."""
    shown = np.array([p for p in on_screen(page, points) if p is not None])
    return float(np.ptp(shown, axis=0).max())


def test_the_fit_frames_far_cameras_and_reset_view_brings_them_back(page, tmp_path):
    views = long_lens_views()
    colours = [(200, 60, 40), (40, 160, 200), (90, 200, 90), (220, 200, 60), (160, 90, 200)]
    photos = solid_photos(tmp_path / "photos", colours)
    server = run_job(page, tmp_path, PlacedEngine(views), photos)
    try:
        cloud = np.concatenate([v["points"] for v in views])[::25]
        assert all(on_screen(page, centres(views))), "a camera is outside the first view"
        assert all(on_screen(page, [TARGET]))
        shot(page, "cameras-long-lens.png")
        with_cameras = spread_px(page, cloud)

        # Without the cameras, the view fits the cloud alone: it is drawn much larger.
        page.uncheck("#show-cameras")
        settle(page)
        assert spread_px(page, cloud) > 5 * with_cameras
        assert not any(on_screen(page, centres(views)))
        page.check("#show-cameras")
        settle(page)
        assert all(on_screen(page, centres(views)))

        # Once the view is moved, only Reset view frames them again.
        canvas = page.locator("#viewport canvas").bounding_box()
        x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down(button="right")  # pan far away
        page.mouse.move(x + 500, y + 300, steps=8)
        page.mouse.up(button="right")
        page.mouse.wheel(0, -1500)
        page.wait_for_timeout(300)
        assert not all(on_screen(page, centres(views)))
        page.click("#reset-view")
        settle(page)
        assert all(on_screen(page, centres(views)))
    finally:
        server.stop()
