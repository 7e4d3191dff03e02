"""One photo at a time: a click on its frustum or its thumbnail shows the photo, its points stand
out, and the points of chosen photos are hidden or shown again, all without uploading anything
to the GPU again."""

from __future__ import annotations

import io

import numpy as np
import pytest
from browser_kit import PlacedEngine, look_at, solid_photos
from PIL import Image
from scene_kit import HOOK, on_screen, run_job, settle, shot, uploads

pytestmark = pytest.mark.browser

TARGET = np.array([0.0, 0.0, 5.0])
COLOURS = [(230, 60, 40), (40, 200, 90), (60, 110, 240)]
PER_VIEW = [600, 500, 400]
# Each view's points: a tight cluster of its photo's colour, apart from the others.
CLUSTERS = [TARGET + offset for offset in ([-1.2, 0, 0], [0, 0, 0], [1.2, 0, 0])]

# The middle of frustum `index`'s image rectangle, on screen (client pixels).
FRUSTUM_MIDDLE = """
async (index) => {
  const THREE = await import("three");
  const view = window.aetherscan.view;
  const lines = view.frustums.children[index];
  view.scene.updateMatrixWorld();
  const vertices = lines.geometry.getAttribute("position");
  const middle = new THREE.Vector3();
  for (const v of [1, 3, 5, 7]) middle.add(new THREE.Vector3().fromBufferAttribute(vertices, v));
  middle.divideScalar(4).applyMatrix4(lines.matrixWorld).project(view.camera);
  const rect = view.renderer.domElement.getBoundingClientRect();
  return [rect.left + ((middle.x + 1) / 2) * rect.width, rect.top + ((1 - middle.y) / 2) * rect.height];
}
"""


def ring_views() -> list[dict]:
    rng = np.random.default_rng(5)
    views = []
    for index, (colour, count) in enumerate(zip(COLOURS, PER_VIEW, strict=True)):
        angle = np.radians(35 * (index - 1))
        centre = TARGET + 5 * np.array([np.sin(angle), -0.4, -np.cos(angle)])
        views.append(
            {
                "cam_from_world": look_at(centre, TARGET),
                "points": rng.normal(size=(count, 3)) * 0.12 + CLUSTERS[index],
                "colors": np.tile(colour, (count, 1)),
                "confidence": np.linspace(4, 2, count),
            }
        )
    return views


def brightness_at(page, point) -> float:
    """The mean brightness of the canvas in a 9 x 9 patch where ``point`` is drawn."""
    (x, y) = on_screen(page, [point])[0]
    box = page.locator("#viewport canvas").bounding_box()
    image = np.asarray(
        Image.open(io.BytesIO(page.locator("#viewport canvas").screenshot())).convert("RGB"),
        float,
    )
    column, row = int(x - box["x"]), int(y - box["y"])
    return float(image[row - 4 : row + 5, column - 4 : column + 5].mean())


def drawn(page) -> int:
    return page.evaluate(f"() => {HOOK}.pointsDrawn")


def test_a_photo_picked_is_shown_its_points_stand_out_and_others_hide(page, tmp_path):
    photos = solid_photos(tmp_path / "photos", COLOURS, size=(120, 80))
    server = run_job(page, tmp_path, PlacedEngine(ring_views()), photos)
    try:
        before = uploads(page)
        panel = page.locator("#photo-panel")
        assert panel.is_hidden()
        lit = [brightness_at(page, centre) for centre in CLUSTERS]

        # A click on the middle frustum's image picks its photo.
        x, y = page.evaluate(FRUSTUM_MIDDLE, 1)
        page.mouse.click(x, y)
        settle(page)
        assert page.evaluate(f"() => {HOOK}.view.pickedPhoto") == 1
        assert panel.is_visible()
        assert panel.locator(".name").text_content() == "photo2.jpg"
        thumbnail = page.locator("#thumbnails .photo img").nth(1).get_attribute("src")
        assert panel.locator("img").get_attribute("src") == thumbnail
        assert panel.locator(".points").text_content() == "Photo 2 of 3: 500 points."
        # Its points as bright as before, the others' dimmed.
        now = [brightness_at(page, centre) for centre in CLUSTERS]
        assert now[1] >= 0.9 * lit[1]
        assert now[0] < 0.6 * lit[0] and now[2] < 0.6 * lit[2], (lit, now)
        shot(page, "photo-picked.png")

        # Only this photo's points; then none of them; then every photo's again.
        panel.locator("button.only").click()
        assert drawn(page) == 500
        panel.locator("input.shown").uncheck()
        assert drawn(page) == 0
        assert panel.locator(".points").text_content() == "Photo 2 of 3: 500 points (hidden)."
        panel.locator("input.shown").check()
        assert drawn(page) == 500
        settle(page)
        shot(page, "photo-only-its-points.png")
        panel.locator("button.all").click()
        assert drawn(page) == sum(PER_VIEW)
        # One photo's own switch hides just its points, and the counts say so.
        panel.locator("input.shown").uncheck()
        assert drawn(page) == sum(PER_VIEW) - 500
        assert page.text_content("#stats").startswith("1,000 of 1,500 points")
        panel.locator("input.shown").check()

        # A thumbnail picks its photo too (and is marked), and so do the panel's arrows and
        # the page's API.
        page.locator("#thumbnails .photo").nth(2).locator(".preview").click()
        assert panel.locator(".name").text_content() == "photo3.jpg"
        marked = page.locator("#thumbnails .photo.picked .photo-name").all_text_contents()
        assert marked == ["photo3.jpg"]
        panel.locator("button.next").click()
        assert panel.locator(".name").text_content() == "photo1.jpg"
        panel.locator("button.previous").click()
        assert panel.locator(".name").text_content() == "photo3.jpg"
        page.evaluate(f"() => {HOOK}.view.selectPhoto(0)")
        assert panel.locator(".name").text_content() == "photo1.jpg"

        # Closed: no photo picked, every point as it was.
        panel.locator("button.close").click()
        settle(page)
        assert panel.is_hidden()
        assert page.evaluate(f"() => {HOOK}.view.pickedPhoto") is None
        again = [brightness_at(page, centre) for centre in CLUSTERS]
        np.testing.assert_allclose(again, lit, rtol=0.1)
        assert uploads(page)["calls"] == before["calls"], "a toggle uploaded to the GPU"
        assert page.locator("#thumbnails .photo.picked").count() == 0

        # Escape puts the photo away.
        page.evaluate(f"() => {HOOK}.view.selectPhoto(2)")
        page.keyboard.press("Escape")
        assert panel.is_hidden()

        # A job opened again from its address shows the server's thumbnail of the photo.
        page.reload()
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'done'")
        page.evaluate(f"() => {HOOK}.view.selectPhoto(1)")
        source = panel.locator("img").get_attribute("src")
        assert source == page.locator("#thumbnails .photo img").nth(1).get_attribute("src")
        assert "/thumbnail" in source, source
        page.wait_for_function("() => document.querySelector('#photo-panel img').naturalWidth > 0")
        shot(page, "photo-picked-reopened.png")
    finally:
        server.stop()


def test_a_click_beside_every_camera_picks_nothing(page, tmp_path):
    photos = solid_photos(tmp_path / "photos", COLOURS)
    server = run_job(page, tmp_path, PlacedEngine(ring_views()), photos)
    try:
        box = page.locator("#viewport canvas").bounding_box()
        page.mouse.click(box["x"] + box["width"] - 20, box["y"] + box["height"] - 20)
        settle(page)
        assert page.evaluate(f"() => {HOOK}.view.pickedPhoto") is None
        assert page.locator("#photo-panel").is_hidden()
        # A drag is no click: the view turns, no photo is picked.
        x, y = page.evaluate(FRUSTUM_MIDDLE, 0)
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 60, y + 10, steps=5)
        page.mouse.up()
        assert page.evaluate(f"() => {HOOK}.view.pickedPhoto") is None
    finally:
        server.stop()
