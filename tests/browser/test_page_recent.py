"""The page lists this browser's recent scans while it is idle (localStorage): each a link to
/#job=<id> with its date, photo count and verdict; a scan whose job is gone says so and can be
removed. Where it asks for photos it shows a picture of a good capture."""

from __future__ import annotations

import json

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

from aetherscan.reconstruction import Quality

pytestmark = pytest.mark.browser


def reconstruct(page, paths: list[str]) -> str:
    page.set_input_files("#file-input", paths)
    page.wait_for_function("() => !document.querySelector('#start').disabled")
    page.click("#start")
    page.wait_for_function(f"() => {HOOK}.state === 'done'")
    return page.evaluate(f"() => {HOOK}.app.jobId")


def stored(page) -> list[dict]:
    return json.loads(page.evaluate("() => localStorage.getItem('aetherscan.recentScans')"))


def test_recent_scans_are_listed_as_links_and_a_gone_one_can_be_removed(
    page_asking_for_gone_jobs, tmp_path
):
    page = page_asking_for_gone_jobs
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path / "data", engine=StagedEngine(Quality("good", []))).start()
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        assert page.is_hidden("#recent")  # nothing scanned in this browser yet
        # The picture of a good capture, where the page asks for photos.
        picture = page.locator("#dropzone svg.capture-ring")
        assert picture.is_visible()
        assert picture.locator(".cameras use").count() == 18  # one every 20 degrees
        assert "15-20°" in page.text_content("#dropzone .capture-tip")

        first = reconstruct(page, write_test_photos(tmp_path, 3))
        assert page.is_hidden("#recent")  # not while a scan is shown
        page.click("#new-scan")
        second = reconstruct(page, write_test_photos(tmp_path, 2))
        page.click("#new-scan")

        # Idle again: both, newest first, as links with their photo count and verdict.
        assert page.is_visible("#recent")
        items = page.locator("#recent-list .recent-scan")
        assert items.count() == 2
        assert [s["jobId"] for s in stored(page)] == [second, first]
        assert [s["photos"] for s in stored(page)] == [2, 3]
        link = items.nth(1).locator("a")
        assert link.get_attribute("href") == f"#job={first}"
        assert link.text_content() == "3 photos · checks passed"
        assert items.nth(1).locator("time").text_content() != ""
        assert items.nth(1).locator(".details").text_content().endswith(" · photo1.jpg, …")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "page-idle-recent.png"))

        # A link opens its scan in this tab.
        link.click()
        page.wait_for_function(
            f"() => {HOOK}.state === 'done' && {HOOK}.app.jobId === {json.dumps(first)}"
        )
        assert page.locator("#thumbnails .photo").count() == 3
        page.click("#new-scan")

        # The second scan is deleted on the server: after a reload the list says so.
        assert httpx.delete(f"{server.url}/api/jobs/{second}").status_code == 204
        page.reload()
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        gone = page.locator("#recent-list .recent-scan.gone")
        gone.wait_for()
        assert gone.get_attribute("data-job-id") == second
        assert "no longer on the server" in gone.text_content()
        assert page.locator("#recent-list .recent-scan:not(.gone)").count() == 1
        page.screenshot(path=str(SHOTS / "page-recent-gone.png"))
        gone.locator("button", has_text="Remove").click()
        assert page.locator("#recent-list .recent-scan").count() == 1
        assert [s["jobId"] for s in stored(page)] == [first]

        # Photos added: the list makes way for them.
        page.set_input_files("#file-input", write_test_photos(tmp_path, 2))
        assert page.is_hidden("#recent")
        page.click("#thumbnails .photo .remove")
        page.click("#thumbnails .photo .remove")
        assert page.is_visible("#recent")
    finally:
        server.stop()


def test_a_damaged_list_in_storage_is_ignored(page, tmp_path):
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path / "data", engine=StagedEngine()).start()
    try:
        page.goto(server.url + "/")
        page.evaluate("() => localStorage.setItem('aetherscan.recentScans', '{not json')")
        page.reload()
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        assert page.is_hidden("#recent")
        reconstruct(page, write_test_photos(tmp_path, 2))
        assert len(stored(page)) == 1
    finally:
        server.stop()
