"""The viewer in headless Chromium against the real server: photos in through the file input,
the point cloud on screen, downloads, and the plain messages when something is wrong."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from browser_kit import HOOK, LiveServer, _require_server_app, _require_three
from PIL import Image

pytestmark = pytest.mark.browser

FLOWERPOT = Path(__file__).resolve().parents[1] / "fixtures" / "flowerpot"
# Another folder of photos for the end-to-end test, e.g. for the README's screenshot.
PHOTOS = Path(os.environ.get("AETHERSCAN_BROWSER_PHOTOS", FLOWERPOT))
BACKGROUND = np.array([0x15, 0x17, 0x1C])  # the renderer's clear colour (web/js/scene.js)
RECONSTRUCTION_TIMEOUT_MS = 540_000


def open_viewer(page, live_server) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")


def drawn_pixels(page, selector: str = "#viewport canvas") -> np.ndarray:
    """Mask of the canvas pixels that are not background."""
    image = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")
    return np.abs(np.asarray(image, np.int16) - BACKGROUND).max(axis=2) > 24


def hook(page, expression: str):
    return page.evaluate(f"() => {HOOK}.{expression}")


@pytest.mark.slow
def test_photos_become_a_point_cloud_on_screen(page, live_server, tmp_path):
    open_viewer(page, live_server)
    info = json.loads(page.request.get(live_server.url + "/api/info").text())
    page.wait_for_function(f"() => {HOOK}.app.engine !== null")
    assert info["engine"] in page.text_content("#engine").lower()

    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    page.set_input_files("#file-input", [str(p) for p in photos])
    assert page.locator("#thumbnails .photo img").count() == len(photos)
    # Start waits for the photos' checks (web/js/checks.js), which these all pass.
    page.wait_for_function("() => !document.querySelector('#start').disabled")
    page.click("#start")
    page.wait_for_function(
        f"() => ['done', 'failed'].includes({HOOK}.state)", timeout=RECONSTRUCTION_TIMEOUT_MS
    )
    assert hook(page, "state") == "done", hook(page, "app.messages")

    # Every point the server sent is drawn, and the server says how many it sent.
    total = hook(page, "app.totalPoints")
    assert total > 0
    assert hook(page, "pointsReceived") == total
    assert hook(page, "pointsDrawn") == total
    assert hook(page, "app.binaryFrames") == hook(page, "framesReceived") > 0
    job = json.loads(
        page.request.get(f"{live_server.url}/api/jobs/{hook(page, 'app.jobId')}").text()
    )
    assert job["state"] == "done"
    assert job["num_points"] == total
    assert hook(page, "camerasShown") == len(job["views"]) > 0
    # Each photo is either in the scene or marked with the engine's reason.
    dropped = page.locator('#thumbnails .photo[data-status="dropped"]')
    assert dropped.count() == len(job["dropped"])
    for index in range(dropped.count()):
        title = dropped.nth(index).get_attribute("title")
        assert any(d["name"] in title and d["reason"] in title for d in job["dropped"]), title
    placed = page.locator('#thumbnails .photo[data-status="placed"]').count()
    assert placed + dropped.count() == len(photos)

    # The Download menu lists the server's files, and the PLY holds the points shown.
    page.click("#downloads summary")
    links = page.locator("#download-list a")
    formats = [links.nth(i).get_attribute("data-format") for i in range(links.count())]
    assert set(formats) == set(job["downloads"])
    ply_url = page.locator('#download-list a[data-format="ply"]').get_attribute("href")
    ply = page.request.get(live_server.url + ply_url).body()
    assert f"element vertex {total}\n".encode() in ply[: ply.index(b"end_header")]
    page.click("#downloads summary")

    # Point data went to the GPU once, as received: 8 bytes a point plus little else.
    uploads = page.evaluate("() => ({...window.__glUploads})")
    assert 8 * total <= uploads["bytes"] <= 8 * total + 1_000_000

    # The sliders change what is drawn without fetching or uploading anything.
    frames = hook(page, "framesReceived")
    page.fill("#confidence", "1000")
    page.dispatch_event("#confidence", "input")
    low, high = page.evaluate(f"() => {HOOK}.view.cloud.confidenceRange()")
    drawn = hook(page, "pointsDrawn")
    assert 0 < drawn <= total
    if high > low:
        assert drawn < total
    renders = hook(page, "framesRendered")
    page.fill("#point-size", "4")
    page.dispatch_event("#point-size", "input")
    page.wait_for_function(f"() => {HOOK}.framesRendered > {renders}")
    page.fill("#confidence", "0")
    page.dispatch_event("#confidence", "input")
    assert hook(page, "pointsDrawn") == total
    assert hook(page, "framesReceived") == frames
    assert page.evaluate("() => window.__glUploads.calls") == uploads["calls"]

    # The canvas shows the cloud itself (cameras hidden), in the photos' colours: a few pixels
    # a point for a sparse cloud, a good part of the canvas for a dense one.
    page.uncheck("#show-cameras")
    page.click("#reset-view")
    page.wait_for_timeout(300)
    mask = drawn_pixels(page)
    assert mask.sum() >= min(total, 0.02 * mask.size) / 2, f"{mask.sum()} pixels for {total} points"
    image = np.asarray(Image.open(io.BytesIO(page.locator("#viewport canvas").screenshot())))
    colours = {tuple(c) for c in image[..., :3][mask] // 16}
    assert len(colours) >= min(20, total // 10), f"the points have only {len(colours)} colours"

    page.check("#show-cameras")
    page.locator(".panel").evaluate("panel => { panel.scrollTop = 0; }")
    page.wait_for_timeout(300)
    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot))
    if os.environ.get("AETHERSCAN_SCREENSHOT"):  # e.g. docs/screenshot.png for the README
        shutil.copy(shot, os.environ["AETHERSCAN_SCREENSHOT"])

    # The address now names the job: reloading shows it again, read over REST.
    assert page.url.endswith(f"#job={job['job_id']}")
    page.reload()
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'done'")
    assert hook(page, "pointsDrawn") == total
    assert hook(page, "camerasShown") == len(job["views"])
    assert page.locator("#download-list a").count() == len(job["downloads"])


def test_says_when_photos_are_too_few_or_not_images(page, live_server, tmp_path):
    open_viewer(page, live_server)
    page.set_input_files("#file-input", str(next(FLOWERPOT.glob("*.jpg"))))
    assert page.is_disabled("#start")
    assert "at least 2 photos" in page.text_content("#stage-text")
    page.click("#thumbnails .photo .remove")
    assert page.locator("#thumbnails .photo").count() == 0

    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list: soil, a bigger pot\n")
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"this is not a JPEG at all\n" * 10)
    expected = {path.name: server_answer(live_server, path) for path in (notes, fake)}
    assert all(answer["type"] == "error" for answer in expected.values()), expected

    # Checked when added (web/js/checks.js): flagged with the server's own sentence, left out.
    page.set_input_files("#file-input", [str(notes), str(fake)])
    page.wait_for_function(
        "() => document.querySelectorAll('#thumbnails .photo[data-status=\"excluded\"]').length === 2"
    )
    for name, answer in expected.items():
        item = page.locator("#thumbnails .photo").filter(has_text=name)
        assert answer["message"] == f"{name}: {item.locator('.photo-reason').text_content()}"
    assert page.is_disabled("#start")
    assert page.text_content("#photo-count") == "0 photos, 2 left out"


def server_answer(live_server, path: Path) -> dict:
    """What the server says, to a client of its own, about the file sent as a photo."""
    from websockets.sync.client import connect

    mime = "text/plain" if path.suffix == ".txt" else "image/jpeg"
    data = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
    with connect(live_server.url.replace("http", "ws") + "/ws") as socket:
        socket.send(json.dumps({"type": "image_data", "data": data, "filename": path.name}))
        return json.loads(socket.recv(timeout=30))


def test_reports_a_lost_connection_and_reconnects(page, tmp_path):
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path / "data").start()
    try:
        open_viewer(page, server)
        assert page.text_content("#connection") == "connected"
        server.stop()
        page.wait_for_function(
            "() => document.querySelector('#connection').textContent.startsWith('offline')"
        )
        assert "connection to the server was lost" in page.text_content("#messages")
        assert page.is_disabled("#start")
        server.start()
        page.wait_for_function(
            "() => document.querySelector('#connection').textContent === 'connected'",
            timeout=30_000,
        )
    finally:
        server.stop()


def test_says_when_the_server_cannot_be_reached(page, live_server):
    # The page loads, but its WebSocket goes to a path where no WebSocket answers (on the
    # page's own origin: its Content-Security-Policy allows no other).
    nowhere = live_server.url.replace("http", "ws", 1) + "/no-websocket-here"
    page.add_init_script(
        "{ const Original = window.WebSocket;"
        "  window.WebSocket = class extends Original {"
        f"    constructor(url, protocols) {{ super({json.dumps(nowhere)}, protocols); }}"
        "  }; }"
    )
    page.goto(live_server.url + "/")
    page.wait_for_function(
        "() => document.querySelector('#stage-text').textContent.includes('Cannot reach')"
    )
    assert page.text_content("#connection") == "server unreachable"
    assert page.is_disabled("#start")
