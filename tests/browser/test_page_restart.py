"""A job that starts over (feature "restart"): the worker running it stopped after some of its
points were sent, and the job runs again from the start. The page drops the points, cameras and
preview it had of the job, keeps the job (its id, its clock) and says why; the new run's points
are drawn as usual, and the count at the end is theirs alone.

Only remote workers restart a job, so the test plays that part: its engine sends a first run,
then waits while the test publishes the RestartedEvent to the job on the server's event loop
(as aetherscan.server.queued does, with the progress that follows it), then sends other points.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
from browser_kit import (
    HOOK,
    LiveServer,
    _require_server_app,
    _require_three,
    look_at,
    solid_photos,
)
from scene_kit import settle

pytestmark = pytest.mark.browser

GATE_TIMEOUT_S = 60
TARGET = np.array([0.0, 0.0, 5.0])
# The first run's points sit 2 units to the side of the second run's, so that any left over
# would widen the cloud's box.
FIRST_RUN_CENTRE = TARGET + np.array([-2.0, 0.0, 0.0])
FIRST_RUN_POINTS = 250  # a view
SECOND_RUN_POINTS = 400  # a view
MESSAGE = (
    "the worker running this job stopped (killed, out of memory, or its machine lost): "
    "the job runs again from the start (try 2 of 3)"
)
CLOCK = re.compile(r"^(\d+):(\d\d) elapsed")


def poses(count: int) -> list[np.ndarray]:
    """``count`` cameras on an arc 4 units from the target, looking at it."""
    angles = np.radians(25 * (np.arange(count) - count // 2))
    return [look_at(TARGET + 4 * np.array([np.sin(a), -0.3, -np.cos(a)]), TARGET) for a in angles]


def blob(seed: int, centre, count: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(count, 3)) * 0.3 + centre).astype(np.float32)


class RestartedEngine:
    """TEST DOUBLE for the Engine protocol: a first run (a preview, then points of each view),
    which the test then declares lost; once the test opens the gate, the second run: other
    points of each view, streamed, and a result made of those alone."""

    name = "restarted"

    def __init__(self) -> None:
        self.first_run_sent = threading.Event()
        self.gate = threading.Event()

    def reconstruct(self, photos, observer=None):
        from aetherscan.engines.base import Observer, Preview, PreviewCamera
        from aetherscan.photos import read_size
        from aetherscan.reconstruction import PointCloud, Reconstruction, View

        observer = observer or Observer()
        sizes = [read_size(photo.path) for photo in photos]
        intrinsics = [np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], float) for w, h in sizes]
        placed = poses(len(photos))

        def cloud(xyz: np.ndarray, index: int, grey: int) -> PointCloud:
            n = len(xyz)
            colours = np.full((n, 3), grey, np.uint8)
            return PointCloud(xyz, colours, np.ones(n, np.float32), np.full(n, index, np.int32))

        # The first run: a provisional look, then points of each view.
        observer.progress("mapping", 0.3, "the first try")
        cameras = [
            PreviewCamera(photo.name, w, h, k, pose)
            for photo, (w, h), k, pose in zip(photos, sizes, intrinsics, placed, strict=True)
        ]
        sparse = blob(99, FIRST_RUN_CENTRE, 100)
        observer.preview(Preview(cameras, cloud(sparse, 0, 200), "a first look"))
        for index in range(len(photos)):
            observer.points(cloud(blob(index, FIRST_RUN_CENTRE, FIRST_RUN_POINTS), index, 90))
        self.first_run_sent.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise RuntimeError("the test did not open the gate")

        # The second run: other points, the only ones of the result.
        views = []
        for index, (photo, (w, h), k, pose) in enumerate(
            zip(photos, sizes, intrinsics, placed, strict=True)
        ):
            observer.progress("mapping", 0.3 + 0.6 * (index + 1) / len(photos), "the second try")
            part = cloud(blob(100 + index, TARGET, SECOND_RUN_POINTS), index, 220)
            observer.points(part)
            views.append(View(photo.name, w, h, k, pose, part.xyz, part.rgb, part.confidence))
        return Reconstruction(self.name, views)


def restart(server: LiveServer, job_id: str, message: str) -> None:
    """Tell the job's listeners that it starts over, on the server's event loop, followed by the
    progress that a new try reports (as aetherscan.server.queued does for a lost worker)."""
    from aetherscan.server.jobs import ProgressEvent, RestartedEvent

    manager = server._server.config.app.state.service.jobs
    job = manager.get_open(job_id)
    assert job is not None, f"job {job_id} is not open on the server"

    def publish() -> None:
        job.publish(RestartedEvent(message))
        manager.on_progress(job, ProgressEvent("load", 0.0, message))

    manager.loop.call_soon_threadsafe(publish)


def scene(page) -> dict:
    """What the page shows of the job: its points, cameras and preview."""
    return page.evaluate(
        f"""() => {{
          const hook = {HOOK};
          const view = hook.view;
          const caption = document.querySelector(".preview-caption");
          return {{
            state: hook.state,
            jobId: hook.app.jobId,
            pointsReceived: hook.pointsReceived,
            pointsDrawn: hook.pointsDrawn,
            pointsTotal: view.cloud.pointsTotal,
            pointObjects: view.cloud.group.children.length,
            bounds: view.cloud.bounds,
            camerasShown: hook.camerasShown,
            previewShown: view.preview.shown,
            previewObjects: view.preview.group.children.length,
            captionShown: Boolean(caption && !caption.hidden),
            stats: document.querySelector("#stats").textContent,
            emptyHintShown: !document.querySelector("#empty-hint").hidden,
            stage: document.querySelector("#stage-text").textContent,
            clock: document.querySelector("#clock").textContent,
            messages: hook.messages.map((m) => ({{ ...m }})),
            shownMessages: [...document.querySelectorAll("#messages .message")].map((m) => ({{
              level: [...m.classList].find((c) => c !== "message"),
              text: m.querySelector("span").textContent,
            }})),
          }};
        }}"""
    )


def test_a_restarted_job_starts_over_on_the_page(page, tmp_path):
    _require_server_app()
    _require_three()
    engine = RestartedEngine()
    server = LiveServer(tmp_path / "data", engine=engine).start()
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        colours = [(200, 60, 40), (40, 160, 200), (90, 200, 90)]
        page.set_input_files("#file-input", solid_photos(tmp_path / "photos", colours))
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        started = time.monotonic()
        page.click("#start")

        # The first run is on screen: its points, and the preview's cameras.
        first_total = 3 * FIRST_RUN_POINTS
        page.wait_for_function(
            f"() => {HOOK}.pointsReceived === {first_total} && {HOOK}.view.preview.frustums"
        )
        # ... and a second of it on the clock, so that the clock's total can show it ran on.
        page.wait_for_function(
            "() => /^0:0[1-9] elapsed/.test(document.querySelector('#clock').textContent)"
        )
        settle(page)
        before = scene(page)
        assert before["state"] == "running"
        assert before["pointsDrawn"] == first_total
        assert f"{first_total} points" in before["stats"]
        assert before["previewShown"] and before["captionShown"]
        job_id = before["jobId"]
        assert job_id

        # The worker is lost: the job starts over.
        restart_at_s = time.monotonic() - started
        restart(server, job_id, MESSAGE)
        page.wait_for_function(f"() => {HOOK}.messages.some((m) => m.text.includes('try 2 of 3'))")
        page.wait_for_function(
            "() => document.querySelector('#stage-text').textContent.includes('try 2 of 3')"
        )
        settle(page)
        after = scene(page)
        # Nothing of the first run is left: no points, no preview, no cameras.
        assert after["pointsReceived"] == after["pointsDrawn"] == after["pointsTotal"] == 0
        assert after["pointObjects"] == 0 and after["bounds"] is None
        assert after["camerasShown"] == 0
        assert not after["previewShown"] and after["previewObjects"] == 0
        assert not after["captionShown"]
        assert "points" not in after["stats"] and after["emptyHintShown"]
        # The job itself goes on: the same one, running, its clock still counting.
        assert after["state"] == "running" and after["jobId"] == job_id
        assert CLOCK.match(after["clock"]), after["clock"]
        # The person is told why, in a notice that stays, and on the stage line.
        notice = (
            "The worker running this job stopped (killed, out of memory, or its machine lost): "
            "the job runs again from the start (try 2 of 3). The view was cleared for the new run."
        )
        assert {"level": "warning", "text": notice} in after["shownMessages"]
        assert {"level": "warning", "text": notice} in after["messages"]
        assert after["stage"] == f"Reading photos: {MESSAGE}"
        page.wait_for_timeout(300)  # the progress bar's way back to the start (0.2 s)
        page.screenshot(path="/tmp/restart.png")

        # The second run: its points are drawn as usual, and only they count.
        engine.gate.set()
        page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)")
        total_s = time.monotonic() - started
        settle(page)
        done = scene(page)
        assert done["state"] == "done", done["messages"]
        second_total = 3 * SECOND_RUN_POINTS
        assert done["jobId"] == job_id
        assert done["pointsReceived"] == done["pointsDrawn"] == done["pointsTotal"] == second_total
        assert page.evaluate(f"() => {HOOK}.app.totalPoints") == second_total
        assert f"{second_total:,} points · 3 cameras" in done["stats"]
        assert done["camerasShown"] == 3
        # The cloud's box is the second run's blob alone (0.3 wide about the target), not
        # stretched to the first run's, 2 units aside.
        low, high = (np.array(corner) for corner in done["bounds"])
        assert (low > TARGET - 1.5).all() and (high < TARGET + 1.5).all(), done["bounds"]
        # No "the server reported ... but ... arrived": the counts agree.
        assert not any("arrived" in m["text"] for m in done["messages"]), done["messages"]
        # One clock for the whole job, from Start, through the restart.
        took = re.fullmatch(r"Took (\d+):(\d\d)\.", done["clock"])
        assert took, done["clock"]
        took_s = 60 * int(took[1]) + int(took[2])
        assert took_s >= int(restart_at_s) and abs(took_s - total_s) <= 1.5, (took_s, total_s)
    finally:
        engine.gate.set()
        server.stop()
