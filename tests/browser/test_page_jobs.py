"""The page's states around a job, in Chromium against the real server: the photos the engine
could not place say why beside their thumbnails; a job reopened from its address shows its
photos, its unplaced ones and its camera count, and so does another job put in the address of an
open tab; after Cancel no photo says "uploaded"; a reconnect takes the "connection lost" alert
away; the Download menu names each format."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from browser_kit import (
    HOOK,
    SHOTS,
    LiveServer,
    StagedEngine,
    _require_server_app,
    _require_three,
    write_test_photos,
)

pytestmark = pytest.mark.browser

UNPLACED = "it shares too few features with the other photos"


def start_server(tmp_path, engine) -> LiveServer:
    _require_server_app()
    _require_three()
    return LiveServer(tmp_path / "data", engine=engine).start()


def open_page(page, server, address: str = "/") -> None:
    page.goto(server.url + address)
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")


def reconstruct(page, paths: list[str]) -> str:
    """Add the photos, press Start, wait for the end; the job's id."""
    page.set_input_files("#file-input", paths)
    page.wait_for_function("() => !document.querySelector('#start').disabled")
    page.click("#start")
    page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)")
    assert page.evaluate(f"() => {HOOK}.state") == "done", page.evaluate(f"() => {HOOK}.messages")
    return page.evaluate(f"() => {HOOK}.app.jobId")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def photo_item(page, name: str):
    return page.locator("#thumbnails .photo").filter(has=page.locator(".photo-name", has_text=name))


def job_status(server, job_id: str) -> dict:
    return httpx.get(f"{server.url}/api/jobs/{job_id}").json()


def post_job(server, paths: list[str]) -> str:
    """A job made over REST, waited for until done: its id."""
    files = [("files", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in paths]
    job_id = httpx.post(f"{server.url}/api/jobs", files=files).json()["job_id"]
    for _ in range(300):
        if job_status(server, job_id)["state"] == "done":
            return job_id
        time.sleep(0.1)
    raise AssertionError(f"the job {job_id} did not finish")


def assert_shows_job(page, server, job_id: str) -> None:
    """The page shows the job as its REST status describes it: each photo (the server's
    thumbnail where it gives one, a name card otherwise), placed or not with its reason, and
    the camera count."""
    job = job_status(server, job_id)
    page.wait_for_function(
        f"() => {HOOK}.state === 'done' && {HOOK}.app.jobId === {json.dumps(job_id)}"
    )
    names = page.locator("#thumbnails .photo-name").all_text_contents()
    assert names == [photo["name"] for photo in job["photos"]]
    dropped = {d["name"]: d["reason"] for d in job["dropped"]}
    for photo in job["photos"]:
        item = photo_item(page, photo["name"])
        if photo["name"] in dropped:
            assert item.get_attribute("data-status") == "dropped"
            assert item.locator(".photo-reason").text_content() == dropped[photo["name"]]
            assert item.locator(".photo-reason").is_visible()
        else:
            assert item.get_attribute("data-status") == "placed"
            assert item.locator(".photo-status").text_content() == "placed"
        if photo.get("thumbnail"):
            image = item.locator("img")
            assert image.get_attribute("src") == photo["thumbnail"]
            item.locator("img").evaluate("img => img.decode()")
            assert image.evaluate("img => img.naturalWidth") > 0
        else:
            assert item.locator(".preview.no-preview").count() == 1
    views = len(job["views"])
    assert f"{views} cameras" in page.text_content("#stats")
    assert page.evaluate(f"() => {HOOK}.camerasShown") == views


def test_unplaced_photos_say_why_and_a_reopened_job_shows_its_photos(
    page_asking_for_gone_jobs, tmp_path
):
    page = page_asking_for_gone_jobs
    paths = write_test_photos(tmp_path, 4)
    server = start_server(tmp_path, StagedEngine(dropped={"photo3.jpg": UNPLACED}))
    try:
        open_page(page, server)
        job_id = reconstruct(page, paths)
        item = photo_item(page, "photo3.jpg")
        assert item.get_attribute("data-status") == "dropped"
        assert item.locator(".photo-reason").text_content() == UNPLACED
        assert item.locator(".photo-reason").is_visible()
        assert photo_item(page, "photo1.jpg").locator(".photo-status").text_content() == "placed"
        assert "3 cameras" in page.text_content("#stats")
        shot(page, "page-unplaced.png")

        # Reopened from its address: photos, the unplaced one with its reason, the cameras.
        page.reload()
        assert_shows_job(page, server, job_id)
        assert page.url.endswith(f"#job={job_id}")
        shot(page, "page-reopened.png")

        # Another job put in the address of the open tab replaces it on screen.
        other = post_job(server, paths[:2])
        page.evaluate(f"() => {{ location.hash = 'job={other}'; }}")
        assert_shows_job(page, server, other)
        assert page.evaluate(f"() => {HOOK}.pointsDrawn") == 2 * 400
        # And back (the browser's Back button walks the hashes too).
        page.go_back()
        assert_shows_job(page, server, job_id)
        # A job that is not there says so, and the page stays usable.
        page.evaluate("() => { location.hash = 'job=no-such-job'; }")
        page.wait_for_function(
            "() => document.querySelector('#messages').textContent.includes('no longer')"
        )
        assert "Could not show the scan: that reconstruction is no longer on the server." in (
            page.text_content("#messages")
        )
        assert page.url.endswith(f"#job={job_id}")  # the address names what is shown
        assert page.evaluate(f"() => {HOOK}.app.jobId") == job_id
    finally:
        server.stop()


def test_cancel_forgets_the_upload_and_a_reconnect_clears_the_alert(page, tmp_path):
    paths = write_test_photos(tmp_path, 3)
    hold = threading.Event()
    engine = StagedEngine(hold=hold)
    server = start_server(tmp_path, engine)
    try:
        open_page(page, server)
        page.set_input_files("#file-input", paths)
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        assert engine.started.wait(30)
        page.wait_for_function(f"() => {HOOK}.state === 'running'")
        statuses = page.locator("#thumbnails .photo-status").all_text_contents()
        assert statuses == ["uploaded"] * 3
        # Another scan's address while this one runs: refused in words, the job goes on.
        page.evaluate("() => { location.hash = 'job=another-scan'; }")
        page.wait_for_function(
            "() => document.querySelector('#messages').textContent.includes('is running')"
        )
        assert "another-scan" not in page.url
        assert page.evaluate(f"() => {HOOK}.state") == "running"
        page.click("#cancel")
        assert page.text_content("#stage-text") == "Cancelled."
        assert "uploaded" not in page.locator("#thumbnails").text_content()
        assert page.locator('#thumbnails .photo[data-status="ready"]').count() == 3
        hold.set()

        # The line drops: an alert; it comes back: the alert goes, beside the green badge.
        server.stop()
        page.wait_for_function(
            "() => document.querySelector('#connection').textContent.startsWith('offline')"
        )
        assert "connection to the server was lost" in page.text_content("#messages")
        server.start()
        page.wait_for_function(
            "() => document.querySelector('#connection').textContent === 'connected'",
            timeout=30_000,
        )
        assert "connection to the server was lost" not in page.text_content("#messages")
        # The photos can go up again.
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
    finally:
        hold.set()
        server.stop()


def test_the_download_menu_names_each_format_with_a_hint(page, tmp_path):
    paths = write_test_photos(tmp_path, 2)
    server = start_server(tmp_path, StagedEngine())
    try:
        open_page(page, server)
        job_id = reconstruct(page, paths)
        downloads = job_status(server, job_id)["downloads"]
        assert {"ply", "ply_ascii", "colmap_text", "nerfstudio", "all"} <= set(downloads)
        page.click("#downloads summary")
        links = page.locator("#download-list a")
        assert links.count() == len(downloads)
        shown = {}
        for index in range(links.count()):
            link = links.nth(index)
            key = link.get_attribute("data-format")
            label = link.locator(".format-label").text_content()
            hint = link.locator(".format-hint").text_content()
            assert label != key and "_" not in label, (key, label)
            assert hint, key
            assert link.get_attribute("download") == ""  # the server's file name is kept
            assert link.get_attribute("href") == downloads[key]
            shown[key] = (label, hint)
        assert shown["nerfstudio"][1].startswith("for nerfstudio / Gaussian splatting")
        assert "Blender" in shown["glb"][1] and "three.js" in shown["glb"][1]
        assert "text" in shown["ply_ascii"][0].lower()
        shot(page, "page-downloads.png")
    finally:
        server.stop()
