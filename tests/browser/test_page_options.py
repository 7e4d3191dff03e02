"""The page's job option: "Refine the camera poses" shows where the server's engine takes
refine_poses (welcome.job_options, feature options), and the job it starts carries it."""

from __future__ import annotations

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


class RefiningEngine(StagedEngine):
    """TEST DOUBLE: StagedEngine that takes the job option refine_poses and records it."""

    name = "refining"

    def __init__(self) -> None:
        super().__init__()
        self.given: list[bool | None] = []

    def reconstruct(self, photos, observer=None, *, refine_poses=None):
        self.given.append(refine_poses)
        return super().reconstruct(photos, observer)


def start(page, tmp_path, engine) -> LiveServer:
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path / "data", engine=engine).start()
    page.goto(server.url)
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
    return server


def run_job(page, tmp_path) -> None:
    page.set_input_files("#file-input", write_test_photos(tmp_path, 3))
    page.wait_for_function("() => !document.querySelector('#start').disabled")
    page.click("#start")
    page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)")
    assert page.evaluate(f"() => {HOOK}.state") == "done", page.evaluate(f"() => {HOOK}.messages")


def test_the_refine_option_goes_with_the_job(page, tmp_path):
    engine = RefiningEngine()
    server = start(page, tmp_path, engine)
    try:
        assert page.is_visible("#refine-option")
        assert not page.is_checked("#refine-poses")
        page.check("#refine-poses")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "page_refine_option.png"))
        run_job(page, tmp_path)
        assert engine.given == [True]
        page.click("#new-scan")
        page.wait_for_function(f"() => {HOOK}.state === 'idle'")
        page.uncheck("#refine-poses")
        run_job(page, tmp_path)
        assert engine.given == [True, None]  # unchecked: the server's setting decides
    finally:
        server.stop()


def test_an_engine_without_options_shows_no_choice(page, tmp_path):
    server = start(page, tmp_path, StagedEngine())
    try:
        assert not page.is_visible("#refine-option")
        run_job(page, tmp_path)
    finally:
        server.stop()
