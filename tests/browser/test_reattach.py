"""A dropped connection does not lose the scan: the page follows its job again once it is back
(the WebSocket extension 'attach', docs/protocol.md), and the stream starts over."""

from __future__ import annotations

import threading

import pytest
from browser_kit import HOOK, JudgedEngine, LiveServer, _require_server_app, _require_three
from PIL import Image

pytestmark = pytest.mark.browser


class HeldEngine(JudgedEngine):
    """JudgedEngine that waits, in the middle of its work, until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__(points_per_view=300)
        self.started = threading.Event()
        self.go_on = threading.Event()

    def reconstruct(self, photos, observer=None):
        observer.progress("features", 0.2, "holding")
        self.started.set()
        self.go_on.wait(30)
        return super().reconstruct(photos, observer)


def test_a_dropped_connection_follows_the_running_job_again(page, tmp_path):
    _require_server_app()
    _require_three()
    files = []
    for index, color in enumerate([(200, 60, 40), (40, 160, 200), (90, 200, 90)]):
        path = tmp_path / f"photo{index + 1}.jpg"
        Image.new("RGB", (64, 48), color).save(path)
        files.append(str(path))
    engine = HeldEngine()
    server = LiveServer(tmp_path / "data", engine=engine).start()
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        page.set_input_files("#file-input", files)
        page.click("#start")
        assert engine.started.wait(30)
        page.wait_for_function(f"() => {HOOK}.state === 'running'")
        # The line drops while the engine works (a phone changing cells).
        page.evaluate(f"() => {HOOK}.connection.socket.close()")
        page.wait_for_function(f"() => {HOOK}.app.reattachJobId !== null")
        assert page.evaluate(f"() => {HOOK}.state") == "running"
        page.wait_for_function(f"() => {HOOK}.app.online && {HOOK}.app.reattachJobId === null")
        engine.go_on.set()
        page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)", timeout=30000)
        assert page.evaluate(f"() => {HOOK}.state") == "done", page.evaluate(
            f"() => {HOOK}.messages"
        )
        assert page.evaluate(f"() => {HOOK}.pointsReceived") == 3 * 300
        assert page.evaluate(f"() => {HOOK}.camerasShown") == 3
    finally:
        engine.go_on.set()
        server.stop()
