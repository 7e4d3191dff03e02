"""Previews (feature "preview") while a job runs: provisional cameras and sparse points drawn at
once, each preview replacing the one before, the view following them until the person moves
it; the result's cameras and first points then replace them."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from browser_kit import (
    LiveServer,
    PlacedEngine,
    _require_server_app,
    _require_three,
    look_at,
    solid_photos,
)
from scene_kit import HOOK, on_screen, settle, shot

pytestmark = pytest.mark.browser

TARGET = np.array([0.0, 0.0, 5.0])
GATE_TIMEOUT_S = 60


def ring(count: int, target=TARGET) -> list[np.ndarray]:
    return [
        look_at(target + 4 * np.array([np.sin(a), -0.3, -np.cos(a)]), target)
        for a in np.radians(25 * (np.arange(count) - count // 2))
    ]


class PreviewingEngine(PlacedEngine):
    """TEST DOUBLE: sends the previews it is given, each once the test opens its gate, then
    returns its views as PlacedEngine does."""

    def __init__(self, views, previews) -> None:
        super().__init__(views)
        self.previews = previews  # (cameras_from_world, points xyz, message)
        self.gates = [threading.Event() for _ in previews]

    def reconstruct(self, photos, observer=None):
        from aetherscan.engines.base import Preview, PreviewCamera
        from aetherscan.photos import read_size
        from aetherscan.reconstruction import PointCloud

        sizes = [read_size(photo.path) for photo in photos]
        for (poses, xyz, message), gate in zip(self.previews, self.gates, strict=True):
            cameras = [
                PreviewCamera(
                    photo.name,
                    w,
                    h,
                    np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], float),
                    pose,
                )
                for photo, (w, h), pose in zip(photos, sizes, poses, strict=False)
            ]
            n = len(xyz)
            cloud = PointCloud(
                np.asarray(xyz, np.float32),
                np.full((n, 3), 200, np.uint8),
                np.ones(n, np.float32),
                np.zeros(n, np.int32),
            )
            observer.preview(Preview(cameras, cloud, message))
            if not gate.wait(GATE_TIMEOUT_S):
                raise RuntimeError("the test did not open the gate")
        return super().reconstruct(photos, observer)


def preview_state(page) -> dict:
    return page.evaluate(
        f"""() => {{
          const p = {HOOK}.view.preview;
          return {{
            points: p.points ? p.points.geometry.getAttribute("position").count : 0,
            cameras: p.frustums ? p.frustums.children.length : 0,
            children: p.group.children.length,
            caption: document.querySelector(".preview-caption")?.textContent ?? null,
            captionShown: !document.querySelector(".preview-caption")?.hidden,
          }};
        }}"""
    )


def wait_for_preview(page, points: int, cameras: int) -> None:
    page.wait_for_function(
        f"""() => {{
          const p = {HOOK}.view.preview;
          return p.points && p.points.geometry.getAttribute("position").count === {points}
            && p.frustums && p.frustums.children.length === {cameras};
        }}"""
    )
    settle(page)


def camera_position(page) -> list[float]:
    return page.evaluate(f"() => {HOOK}.view.camera.position.toArray()")


def test_previews_are_drawn_replaced_and_give_way_to_the_result(page, tmp_path):
    _require_server_app()
    _require_three()
    rng = np.random.default_rng(4)
    first = rng.normal(size=(300, 3)) * 0.3 + TARGET
    # The second preview, in a frame of its own: elsewhere, and larger.
    elsewhere = TARGET + np.array([6.0, 0.0, 3.0])
    second = rng.normal(size=(500, 3)) * 0.6 + elsewhere
    third = rng.normal(size=(200, 3)) * 0.6 + elsewhere
    previews = [
        (ring(2), first, "a first look: 2 of 3 photos placed"),
        (ring(3, elsewhere), second, "3 of 3 photos placed"),
        (ring(3, elsewhere), third, "the result's cameras, while dense stereo runs"),
    ]
    views = [
        {
            "cam_from_world": pose,
            "points": rng.normal(size=(400, 3)) * 0.3 + TARGET,
            "colors": rng.integers(60, 255, (400, 3)),
            "confidence": np.full(400, 3.0),
        }
        for pose in ring(3)
    ]
    engine = PreviewingEngine(views, previews)
    server = LiveServer(tmp_path / "data", engine=engine).start()
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        photos = solid_photos(tmp_path / "photos", [(200, 60, 40), (40, 160, 200), (90, 200, 90)])
        page.set_input_files("#file-input", photos)
        page.click("#start")

        # The first preview: its points and cameras on screen before any result.
        wait_for_preview(page, 300, 2)
        state = preview_state(page)
        assert state["captionShown"] and state["caption"] == (
            "Preview: a first look: 2 of 3 photos placed"
        )
        assert page.evaluate(f"() => {HOOK}.camerasShown") == 0
        assert page.evaluate(f"() => {HOOK}.pointsReceived") == 0
        centres = [-p[:3, :3].T @ p[:3, 3] for p in ring(2)]
        assert all(on_screen(page, [*centres, TARGET])), "the view does not show the preview"
        assert page.is_hidden("#empty-hint")
        shot(page, "preview-first-look.png")

        # The second replaces it (not merged), and the view follows it to its new place.
        engine.gates[0].set()
        wait_for_preview(page, 500, 3)
        assert preview_state(page)["children"] == 2  # one set of points, one of frustums
        assert on_screen(page, [elsewhere])[0] is not None
        assert preview_state(page)["caption"] == "Preview: 3 of 3 photos placed"

        # Once the person moves the view, a new preview leaves it where they put it.
        box = page.locator("#viewport canvas").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 80, y + 20, steps=5)
        page.mouse.up()
        settle(page)
        moved = camera_position(page)
        engine.gates[1].set()
        wait_for_preview(page, 200, 3)
        assert camera_position(page) == pytest.approx(moved)

        # The result: its cameras and points replace the preview's, which count nowhere.
        engine.gates[2].set()
        page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)")
        assert page.evaluate(f"() => {HOOK}.state") == "done"
        settle(page)
        state = preview_state(page)
        assert state["points"] == 0 and state["cameras"] == 0 and state["children"] == 0
        assert not state["captionShown"]
        assert page.evaluate(f"() => {HOOK}.camerasShown") == 3
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == 1200
        assert page.evaluate(f"() => {HOOK}.app.totalPoints") == 1200
        # The view was moved around a preview, whose world is not the result's: the result's
        # points are framed once.
        assert all(on_screen(page, [v["points"].mean(axis=0) for v in views]))
        shot(page, "preview-replaced-by-result.png")
    finally:
        for gate in engine.gates:
            gate.set()
        server.stop()
