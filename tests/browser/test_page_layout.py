"""At 1280x800, with many photos, unplaced ones and two or three warnings, step 3 (sliders,
Download) stays on screen and uncovered, and so do the stage line and the latest message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_kit import (
    LiveServer,
    StagedEngine,
    _require_server_app,
    _require_three,
    write_test_photos,
)

from aetherscan.reconstruction import Quality

pytestmark = pytest.mark.browser

HOOK = "window.aetherscan"
SHOTS = Path(os.environ.get("AETHERSCAN_SHOTS", "/tmp/shots"))
REASONS = [
    "only 10 of 12 photos were placed",
    "the cameras cover a narrow arc (40 degrees), so the far side of the object is missing",
]
DROPPED = {
    "photo5.jpg": "it shares too few features with the other photos",
    "photo9.jpg": "it is blurred: too few sharp features were found in it",
}


def uncovered(page, selector: str) -> bool:
    """Whether the element is inside the window and is what a click at its centre would hit."""
    return page.locator(selector).first.evaluate(
        """element => {
            const box = element.getBoundingClientRect();
            if (box.top < 0 || box.bottom > innerHeight || box.left < 0 || box.right > innerWidth) {
                return false;
            }
            const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
            return hit !== null && (element === hit || element.contains(hit));
        }"""
    )


def test_step_3_stays_on_screen_with_warnings(page_asking_for_gone_jobs, tmp_path):
    page = page_asking_for_gone_jobs
    _require_server_app()
    _require_three()
    engine = StagedEngine(Quality("uncertain", REASONS), dropped=DROPPED)
    server = LiveServer(tmp_path / "data", engine=engine).start()
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        page.set_input_files("#file-input", write_test_photos(tmp_path, 12))
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
        SHOTS.mkdir(parents=True, exist_ok=True)
        # Warning 1: two photos not placed. Warning 2: a scan that is gone. 3: the line drops.
        page.evaluate("() => { location.hash = 'job=gone-long-ago'; }")
        page.wait_for_function("() => document.querySelectorAll('#messages .message').length === 2")
        page.screenshot(path=str(SHOTS / "page-layout-2-warnings.png"))
        for selector in ("#confidence", "#point-size", "#downloads summary", "#stage-text"):
            assert uncovered(page, selector), selector
        server.stop()
        page.wait_for_function("() => document.querySelectorAll('#messages .message').length === 3")
        page.screenshot(path=str(SHOTS / "page-layout-3-warnings.png"))
        for selector in ("#confidence", "#point-size", "#downloads summary", "#stage-text"):
            assert uncovered(page, selector), selector
        assert uncovered(page, "#messages .message:last-child span")
        # The photos that were not placed say why, above step 3 once scrolled to.
        page.locator('#thumbnails .photo[data-status="dropped"]').first.scroll_into_view_if_needed()
        reason = page.locator('#thumbnails .photo[data-status="dropped"] .photo-reason').first
        assert reason.text_content() == DROPPED["photo5.jpg"]
        # The Download menu opens upwards, over the panel, in the window.
        page.click("#downloads summary")
        assert uncovered(page, "#download-list a")
        page.screenshot(path=str(SHOTS / "page-layout-download-open.png"))
    finally:
        server.stop()
