"""The viewer says what the engine thinks of its result: next to "Done", plainly, that an
uncertain result may be wrong and why; a quiet note for a good one. Over the WebSocket and again
after a reload (read over REST)."""

from __future__ import annotations

import os
import shutil

import pytest
from browser_kit import HOOK, JudgedEngine, LiveServer
from PIL import Image
from scene_kit import run_job

from aetherscan.reconstruction import Quality

pytestmark = pytest.mark.browser

REASONS = ["only 2 of 9 photos were placed", "the cameras are too close together."]


@pytest.fixture
def photos(tmp_path):
    paths = []
    for index, color in enumerate([(200, 60, 40), (40, 160, 200)]):
        path = tmp_path / f"photo{index + 1}.jpg"
        Image.new("RGB", (64, 48), color).save(path)
        paths.append(str(path))
    return paths


def reconstruct_in_the_viewer(page, tmp_path, quality, photos) -> LiveServer:
    return run_job(page, tmp_path, JudgedEngine(quality), photos)


def keep_screenshot(page, tmp_path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    if os.environ.get("AETHERSCAN_SCREENSHOT_DIR"):  # to look at it
        shutil.copy(shot, os.environ["AETHERSCAN_SCREENSHOT_DIR"])


def test_an_uncertain_result_is_said_to_be_possibly_wrong_with_the_reasons(page, tmp_path, photos):
    server = reconstruct_in_the_viewer(page, tmp_path, Quality("uncertain", REASONS), photos)
    try:
        expected = (
            "Done — the result may be wrong: only 2 of 9 photos were placed; "
            "the cameras are too close together."
        )
        stage = page.locator("#stage-text")
        assert stage.text_content() == expected
        assert stage.get_attribute("data-verdict") == "uncertain"
        colour = stage.evaluate("element => getComputedStyle(element).color")
        assert colour == "rgb(240, 176, 48)"  # the warning colour, not the plain text's
        assert page.text_content("#verdict").startswith("800 points from 2 cameras: check them")
        keep_screenshot(page, tmp_path, "verdict-uncertain.png")
        # The address names the job: a reload reads it over REST and says the same.
        page.reload()
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'done'")
        assert page.text_content("#stage-text") == expected
        # A new scan clears the verdict with the result.
        page.click("#new-scan")
        assert page.locator("#stage-text").get_attribute("data-verdict") is None
        assert page.is_hidden("#verdict")
    finally:
        server.stop()


def test_an_unchecked_result_is_uncertain_too(page, tmp_path, photos):
    server = reconstruct_in_the_viewer(page, tmp_path, None, photos)
    try:
        assert page.text_content("#stage-text") == (
            "Done — the result may be wrong: the engine did not check this result."
        )
    finally:
        server.stop()


def test_a_good_result_gets_a_quiet_note(page, tmp_path, photos):
    quality = Quality("good", ["one photo was slightly blurred"])
    server = reconstruct_in_the_viewer(page, tmp_path, quality, photos)
    try:
        stage = page.text_content("#stage-text")
        assert stage == "Done: 800 points from 2 cameras." and "wrong" not in stage
        assert page.locator("#stage-text").get_attribute("data-verdict") == "good"
        assert page.text_content("#verdict") == (
            "✓ The engine's checks passed. Note: one photo was slightly blurred."
        )
        colour = page.locator("#verdict").evaluate("element => getComputedStyle(element).color")
        assert colour == "rgb(154, 161, 178)"  # muted
        keep_screenshot(page, tmp_path, "verdict-good.png")
    finally:
        server.stop()
