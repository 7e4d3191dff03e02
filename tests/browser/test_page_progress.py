"""While a job runs the page counts the time and, once the progress is steady, estimates the
time left; at the end it shows the total. A 2-photo result (and one without dense points) says
why it is rough and what to do."""

from __future__ import annotations

import re
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

from aetherscan.reconstruction import Quality

pytestmark = pytest.mark.browser

CLOCK = re.compile(r"^(\d+):(\d\d) elapsed(?: · about (\d+):(\d\d) left| · finishing…)?$")


def start_server(tmp_path, engine) -> LiveServer:
    _require_server_app()
    _require_three()
    return LiveServer(tmp_path / "data", engine=engine).start()


def seconds(minutes: str, secs: str) -> int:
    return 60 * int(minutes) + int(secs)


def test_the_clock_counts_estimates_the_time_left_and_shows_the_total(page, tmp_path):
    # 10 steps 0.8 s apart: about 8 s of work, its fraction following time.
    engine = StagedEngine(steps=10, seconds_per_step=0.8)
    server = start_server(tmp_path, engine)
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        assert page.is_hidden("#clock")
        page.set_input_files("#file-input", write_test_photos(tmp_path, 3))
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        started = time.monotonic()
        page.click("#start")
        seen = []  # (seconds since Start, the clock's text)
        while page.evaluate(f"() => {HOOK}.state") not in ("done", "failed"):
            seen.append((time.monotonic() - started, page.text_content("#clock")))
            if len(seen) == 20:
                page.screenshot(path=str(SHOTS / "page-running-clock.png"))
            time.sleep(0.25)
        total_s = time.monotonic() - started
        running = [(at, CLOCK.match(text)) for at, text in seen if text]
        assert running and all(match for _, match in running), seen
        # It ticks every second, from 0:00, never ahead of the time that passed.
        elapsed = [seconds(m[1], m[2]) for _, m in running]
        assert elapsed[0] <= 1 and elapsed == sorted(elapsed)
        assert set(range(1, int(total_s) - 1)) <= set(elapsed), elapsed
        assert all(e <= at + 1 for (at, _), e in zip(running, elapsed, strict=True))
        # The estimate waits for steady progress, then is about right: the elapsed time plus
        # the time left is near the job's length (the engine's work is even in time).
        estimates = [(at, seconds(m[3], m[4])) for at, m in running if m[3]]
        assert estimates, seen
        assert estimates[0][0] >= 2.5, estimates  # not in the first seconds
        for at, left in estimates:
            assert abs(at + left - total_s) <= 6, (at, left, total_s)
        # The end: the total, which stays.
        final = page.text_content("#clock")
        match = re.fullmatch(r"Took (\d+):(\d\d)\.", final)
        assert match, final
        assert abs(seconds(*match.groups()) - total_s) <= 1.5, (final, total_s)
        page.wait_for_timeout(1500)
        assert page.text_content("#clock") == final
        # After a reload the job's record gives the total.
        page.reload()
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'done'")
        assert re.fullmatch(r"Took \d+:\d\d\.", page.text_content("#clock"))
        # A new scan: no clock.
        page.click("#new-scan")
        assert page.is_hidden("#clock")
    finally:
        server.stop()


def test_a_cancelled_job_says_how_long_it_ran(page, tmp_path):
    server = start_server(tmp_path, StagedEngine(steps=40, seconds_per_step=0.5))
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        page.set_input_files("#file-input", write_test_photos(tmp_path, 2))
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        page.wait_for_function(
            "() => document.querySelector('#clock').textContent.startsWith('0:02')"
        )
        page.click("#cancel")
        text = page.text_content("#clock")
        assert re.fullmatch(r"Cancelled after 0:0[23]\.", text), text
        page.wait_for_timeout(1200)
        assert page.text_content("#clock") == text  # stopped
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("photos", "sparse_only", "expected"),
    [
        (2, False, "each point is seen from only two angles"),
        (2, True, "dense stereo matched no pixels between them"),
        (3, True, "Only sparse points were found"),
        (3, False, None),
    ],
)
def test_a_rough_result_says_why_and_what_to_do(page, tmp_path, photos, sparse_only, expected):
    engine = StagedEngine(Quality("good", []), sparse_only=sparse_only)
    server = start_server(tmp_path, engine)
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        page.set_input_files("#file-input", write_test_photos(tmp_path, photos))
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
        if expected is None:
            assert page.is_hidden("#advice")
            return
        advice = page.text_content("#advice")
        assert page.is_visible("#advice")
        assert expected in advice
        if photos == 2:
            assert advice.endswith(
                "Add photos between these two, 15-20 degrees apart, and reconstruct again."
            )
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(SHOTS / f"page-two-photos{'-sparse' if sparse_only else ''}.png")
            )
        # A new scan takes the advice away with the result.
        page.click("#new-scan")
        assert page.is_hidden("#advice")
    finally:
        server.stop()


def test_the_engines_reasons_can_say_there_are_no_dense_points(page, tmp_path):
    quality = Quality("uncertain", ["dense stereo found no points: the cloud is sparse"])
    server = start_server(tmp_path, StagedEngine(quality))
    try:
        page.goto(server.url + "/")
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
        page.set_input_files("#file-input", write_test_photos(tmp_path, 2))
        page.wait_for_function("() => !document.querySelector('#start').disabled")
        page.click("#start")
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
        assert "dense stereo matched no pixels between them" in page.text_content("#advice")
        # Said again after a reload (the verdict comes back over REST).
        page.reload()
        page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'done'")
        assert "Add photos between these two" in page.text_content("#advice")
    finally:
        server.stop()


def test_a_job_opened_while_it_runs_shows_its_stage_and_time(page, tmp_path):
    hold = threading.Event()
    engine = StagedEngine(hold=hold)
    server = start_server(tmp_path, engine)
    try:
        paths = write_test_photos(tmp_path, 2)
        files = [("files", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in paths]
        job_id = httpx.post(f"{server.url}/api/jobs", files=files).json()["job_id"]
        assert engine.started.wait(30)
        page.goto(f"{server.url}/#job={job_id}")
        page.wait_for_function(
            "() => document.querySelector('#stage-text').textContent === 'Reading photos…'"
        )
        page.wait_for_function(
            "() => /^0:0[1-9] elapsed/.test(document.querySelector('#clock').textContent)"
        )
        assert page.is_hidden("#recent")  # a scan is being opened, not idle
        hold.set()
        page.wait_for_function(f"() => {HOOK}.state === 'done'")
        assert re.fullmatch(r"Took 0:0\d\.", page.text_content("#clock"))
        assert page.locator("#thumbnails .photo").count() == 2
    finally:
        hold.set()
        server.stop()


def test_the_estimate_follows_the_progress_line(page, tmp_path):
    server = start_server(tmp_path, StagedEngine())
    try:
        page.goto(server.url + "/")
        result = page.evaluate(
            """async () => {
                const { JobClock, formatDuration } = await import('/js/clock.js');
                let now = 0;
                const clock = new JobClock(document.createElement('p'), () => now);
                const says = [];
                const at = (ms, fraction) => {
                    now = ms;
                    if (fraction !== undefined) clock.progress(fraction);
                    says.push(clock.text());
                };
                clock.start(0);
                at(0, 0);
                at(2000, 0.2);  // 10 % done, but only 2 s: not yet
                at(4000, 0.4);  // steady: 4 s for 40 %, so 6 s left (said in 5 s steps)
                at(5000);       // a second later, no news: 5 s left
                at(5000, 0.45); // slower than the line: 1.1 s a 10 %, so 6.1 s left
                at(10000, 0.5); // 10 s for 50 %: 10 s left
                // A reconnect: the stream starts over and replays its progress at once.
                at(20000, 0.1);
                at(20010, 0.3);
                at(20020, 0.5);
                at(24020, 0.7); // 20 % in 4 s from the burst's last: 6 s left
                at(40000, 1.0);
                clock.stop('done');
                says.push(clock.text());
                return { says, formats: [formatDuration(0), formatDuration(65_000),
                                         formatDuration(3_725_000)] };
            }"""
        )
        assert result["formats"] == ["0:00", "1:05", "1:02:05"]
        assert result["says"] == [
            "0:00 elapsed",
            "0:02 elapsed",
            "0:04 elapsed · about 0:05 left",
            "0:05 elapsed · about 0:05 left",
            "0:05 elapsed · about 0:05 left",
            "0:10 elapsed · about 0:10 left",
            "0:20 elapsed",
            "0:20 elapsed",
            "0:20 elapsed",
            "0:24 elapsed · about 0:05 left",
            "0:40 elapsed · finishing…",
            "Took 0:40.",
        ]
    finally:
        server.stop()
