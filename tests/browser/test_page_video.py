"""A video among the photos (feature video): one tile that says the server chooses its frames,
sent in pieces in its place among the photos, with its progress on the tile; the tile then says
how many frames the server took, and they count as photos in upload_complete. A video the
server refuses says why on its tile and the upload goes on without it."""

from __future__ import annotations

import json
import math
import threading

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
from video_kit import photo_pan_clip

pytestmark = pytest.mark.browser

# What the page sends and shows, recorded as it happens: each message sent over its WebSocket
# (a video piece with its filename, "last" and the bytes it carries), every stage line, and
# every status a tile showed.
RECORD = """
window.__sent = [];
window.__cancelAfterPieces = 0;
window.__stages = [];
window.__statuses = [];
const originalSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === "string") {
    const message = JSON.parse(data);
    const entry = { type: message.type };
    if (message.type === "video_data") {
      const payload = message.data.slice(message.data.indexOf(",") + 1);
      const padding = payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0;
      Object.assign(entry, {
        filename: message.filename,
        last: message.last,
        bytes: (payload.length * 3) / 4 - padding,
      });
    }
    if (message.type === "image_data") entry.filename = message.filename;
    if (message.type === "upload_complete") entry.count = message.count;
    window.__sent.push(entry);
    const result = originalSend.call(this, data);
    // A test may press Cancel the moment a given piece of a video has gone.
    if (message.type === "video_data" && --window.__cancelAfterPieces === 0) {
      document.querySelector("#cancel").click();
    }
    return result;
  }
  return originalSend.call(this, data);
};
new MutationObserver((records) => {
  for (const record of records) {
    const text = record.addedNodes[0]?.textContent;
    if (text === undefined) continue;
    if (record.target.id === "stage-text") window.__stages.push(text);
    if (record.target.classList?.contains("photo-status")) window.__statuses.push(text);
  }
}).observe(document, { childList: true, subtree: true });
"""


class RecordingEngine(StagedEngine):
    """StagedEngine that records the names of the photos of each call."""

    name = "recording"

    def __init__(self, **options) -> None:
        super().__init__(points_per_view=50, **options)
        self.calls: list[list[str]] = []

    def reconstruct(self, photos, observer=None):
        self.calls.append([photo.name for photo in photos])
        return super().reconstruct(photos, observer)


def start_server(tmp_path, engine) -> LiveServer:
    _require_server_app()
    _require_three()
    return LiveServer(tmp_path / "data", engine=engine).start()


def open_page(page, server, query: str = "") -> None:
    page.add_init_script(RECORD)
    page.goto(f"{server.url}/{query}")
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")


def tile(page, name: str):
    return page.locator("#thumbnails .photo").filter(has=page.locator(".photo-name", has_text=name))


def add_files(page, paths, count: int) -> None:
    page.set_input_files("#file-input", [str(path) for path in paths])
    page.wait_for_function(
        f"() => document.querySelectorAll('#thumbnails .photo').length === {count} && "
        "!document.querySelector('#thumbnails .photo[data-status=\"checking\"]')"
    )


def sent(page) -> list[dict]:
    return page.evaluate("() => window.__sent")


def finish(page) -> str:
    page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)", timeout=90_000)
    return page.evaluate(f"() => {HOOK}.state")


def test_a_video_is_sent_in_pieces_and_its_frames_count_as_photos(page, tmp_path):
    clip = photo_pan_clip(tmp_path / "pot.webm")
    size = clip.path.stat().st_size
    (photo,) = write_test_photos(tmp_path, 1)
    hold = threading.Event()
    engine = RecordingEngine(hold=hold)
    server = start_server(tmp_path, engine)
    try:
        open_page(page, server, "?video_piece_kb=256")  # pieces of 256 kB, to have several
        add_files(page, [clip.path, photo], 2)
        video = tile(page, "pot.webm")
        assert "video" in video.get_attribute("class").split()
        assert video.locator(".photo-status").text_content() == f"video, {size / 1e6:.1f} MB"
        assert "frames are chosen by the server" in video.locator(".photo-reason").text_content()
        assert video.locator(".photo-reason").is_visible()
        assert page.text_content("#stage-text") == (
            "Ready: press Start to reconstruct 1 photo and 1 video."
        )
        assert page.text_content("#photo-count").startswith("1 photo, 1 video, ")

        page.click("#start")
        assert engine.started.wait(60)  # the engine holds until the tile is looked at
        page.wait_for_function(
            "() => document.querySelector('#thumbnails .photo.video')?.dataset.status === 'saved'"
        )
        status = video.locator(".photo-status").text_content()
        taken = int(status.split()[0])
        assert status == f"{taken} frames taken" and taken >= 8, status
        reason = video.locator(".photo-reason").text_content()
        assert reason == f"The server took {taken} frames of its 8.0 s; each counts as a photo."
        count = page.text_content("#photo-count")
        assert count.startswith(f"1 photo, 1 video ({taken} frames), "), count
        page.screenshot(path="/tmp/video_tile.png")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "page-video-frames-taken.png"))
        hold.set()
        assert finish(page) == "done", page.evaluate(f"() => {HOOK}.messages")

        # The video went first, as it was added, in pieces of 256 kB; then the photo, and
        # upload_complete counting the frames with it.
        messages = sent(page)
        pieces = [m for m in messages if m["type"] == "video_data"]
        piece = 256 * 1024 // 3 * 3
        assert len(pieces) == math.ceil(size / piece) > 1
        assert all(m["filename"] == "pot.webm" for m in pieces)
        assert [m["last"] for m in pieces] == [False] * (len(pieces) - 1) + [True]
        assert sum(m["bytes"] for m in pieces) == size
        uploads = [m for m in messages if m["type"] in ("video_data", "image_data")]
        assert uploads[-1] == {"type": "image_data", "filename": "photo1.jpg"}
        (complete,) = [m for m in messages if m["type"] == "upload_complete"]
        assert complete["count"] == taken + 1

        # The engine got the frames and the photo; the job's record says the same.
        (names,) = engine.calls
        assert len(names) == taken + 1 and names[-1] == "photo1.jpg"
        assert all(name.startswith("pot-t") and name.endswith("s.jpg") for name in names[:-1])
        job_id = page.evaluate(f"() => {HOOK}.app.jobId")
        job = json.loads(page.request.get(f"{server.url}/api/jobs/{job_id}").text())
        assert [p["name"] for p in job["photos"]] == names

        # While it went: its progress in bytes on its tile, and the stage line while the
        # server chose its frames.
        statuses = page.evaluate("() => window.__statuses")
        uploading = [s for s in statuses if s.startswith("uploading… ")]
        assert f"uploading… {size / 1e6:.1f} MB of {size / 1e6:.1f} MB" in uploading
        assert len(set(uploading)) >= 3, uploading
        stages = page.evaluate("() => window.__stages")
        assert any(s.startswith("The server is choosing frames of pot.webm") for s in stages)
        # Placed, the frames are counted on the tile.
        assert video.locator(".photo-status").text_content() == (
            f"{taken} of {taken} frames placed"
        )
    finally:
        hold.set()
        server.stop()


def test_a_video_cancelled_mid_way_is_sent_whole_again(page, tmp_path):
    from aetherscan.video import sample_video

    clip = photo_pan_clip(tmp_path / "pot.webm")
    expected = len(sample_video(clip.path, name="pot.webm").frames)
    (photo,) = write_test_photos(tmp_path, 1)
    engine = RecordingEngine()
    server = start_server(tmp_path, engine)
    try:
        open_page(page, server, "?video_piece_kb=256")
        add_files(page, [photo, clip.path], 2)
        page.evaluate("() => { window.__cancelAfterPieces = 2; }")
        page.click("#start")
        page.wait_for_function(f"() => {HOOK}.state === 'failed'")
        assert page.text_content("#stage-text") == "Cancelled."
        first = len(sent(page))
        # Again: the server dropped the two pieces it had with the cancel, so the video is
        # sent whole once more, and its frames are those of the whole clip.
        page.click("#start")
        assert finish(page) == "done", page.evaluate(f"() => {HOOK}.messages")
        again = sent(page)[first:]
        pieces = [m for m in again if m["type"] == "video_data"]
        assert all(m["bytes"] > 0 for m in pieces)
        assert [m["last"] for m in pieces] == [False] * (len(pieces) - 1) + [True]
        assert sum(m["bytes"] for m in pieces) == clip.path.stat().st_size
        assert not [m for m in page.evaluate(f"() => {HOOK}.messages") if m["level"] == "error"]
        (names,) = engine.calls
        assert names[0] == "photo1.jpg" and len(names) == expected + 1
        status = tile(page, "pot.webm").locator(".photo-status").text_content()
        assert status == f"{expected} of {expected} frames placed"
    finally:
        server.stop()


def damaged_mp4(tmp_path):
    """The first half of an MP4 (its index, at the end, is gone): the server cannot read it."""
    clip = photo_pan_clip(tmp_path / "whole.mp4")
    path = tmp_path / "cut.mp4"
    data = clip.path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_refused_video_says_why_and_the_photos_go_on(page, tmp_path):
    video_path = damaged_mp4(tmp_path)
    first, second = write_test_photos(tmp_path, 2)
    engine = RecordingEngine()
    server = start_server(tmp_path, engine)
    try:
        open_page(page, server)
        add_files(page, [first, video_path, second], 3)
        video = tile(page, "cut.mp4")
        assert video.locator(".photo-status").text_content().startswith("video, ")
        page.click("#start")
        assert finish(page) == "done", page.evaluate(f"() => {HOOK}.messages")

        assert video.get_attribute("data-status") == "refused"
        sentence = video.locator(".photo-reason")
        assert sentence.is_visible()
        assert "cannot be read as a video" in sentence.text_content()
        assert "cut.mp4: this file cannot be read as a video" in page.text_content("#messages")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#thumbnails").screenshot(path=str(SHOTS / "page-video-refused.png"))
        assert engine.calls == [["photo1.jpg", "photo2.jpg"]]
        messages = sent(page)
        (piece,) = [m for m in messages if m["type"] == "video_data"]  # 0.5 MB: one piece
        assert piece["last"] is True
        order = [m.get("filename") for m in messages if m["type"] in ("video_data", "image_data")]
        assert order == ["photo1.jpg", "cut.mp4", "photo2.jpg"]
        (complete,) = [m for m in messages if m["type"] == "upload_complete"]
        assert complete["count"] == 2
    finally:
        server.stop()


def test_a_video_refused_mid_way_is_not_sent_on(page, tmp_path, monkeypatch):
    monkeypatch.setenv("AETHERSCAN_MAX_VIDEO_MB", "0.6")  # the server refuses its third piece
    clip = photo_pan_clip(tmp_path / "pot.webm")
    first, second = write_test_photos(tmp_path, 2)
    engine = RecordingEngine()
    server = start_server(tmp_path, engine)
    try:
        open_page(page, server, "?video_piece_kb=256")
        add_files(page, [clip.path, first, second], 3)
        page.click("#start")
        assert finish(page) == "done", page.evaluate(f"() => {HOOK}.messages")
        video = tile(page, "pot.webm")
        assert video.get_attribute("data-status") == "refused"
        reason = video.locator(".photo-reason").text_content()
        assert "setting max_video_mb" in reason, reason
        # The pieces after the refusal are not sent (a few may have gone meanwhile); an empty
        # last piece ends the video, then the photos follow.
        pieces = [m for m in sent(page) if m["type"] == "video_data"]
        assert 3 <= len(pieces) < 8
        assert pieces[-1]["last"] is True and pieces[-1]["bytes"] == 0
        assert not any(m["last"] for m in pieces[:-1])
        assert engine.calls == [["photo1.jpg", "photo2.jpg"]]
    finally:
        server.stop()


def test_too_few_photos_are_left_after_a_refused_video(page, tmp_path):
    video_path = damaged_mp4(tmp_path)
    (photo,) = write_test_photos(tmp_path, 1)
    engine = RecordingEngine()
    server = start_server(tmp_path, engine)
    try:
        open_page(page, server)
        add_files(page, [video_path, photo], 2)
        page.click("#start")
        assert finish(page) == "failed"
        messages = page.text_content("#messages")
        assert "Only 1 photo was accepted; at least 2 are needed." in messages, messages
        assert not [m for m in sent(page) if m["type"] == "upload_complete"]
        assert engine.calls == []
    finally:
        server.stop()


def test_the_tile_shows_a_frame_where_the_page_may_play_videos_and_videos_are_sniffed(
    page, tmp_path
):
    from aetherscan.server import browsers

    # The server's policy lets a <video> play the file the person picked (media-src blob:), so
    # the tile shows a frame of it and its length; under a policy without it (media-src falls
    # back to default-src 'none') the page shows a card instead, and no violation.
    policy = browsers.PAGE_POLICY
    assert "media-src blob:" in policy
    without = policy.replace(" media-src blob:;", "")
    clip = photo_pan_clip(tmp_path / "pot.webm", seconds_per_photo=0.5)
    server = start_server(tmp_path, RecordingEngine())
    try:
        open_page(page, server)
        allowed = page.evaluate(
            "async policies => { const { allowsBlobMedia } = await import('/js/video.js');"
            " return policies.map(allowsBlobMedia); }",
            [without, policy, "default-src *", None],
        )
        assert allowed == [False, True, False, True]

        add_files(page, [clip.path], 1)
        page.wait_for_function(
            "() => document.querySelector('#thumbnails .video .has-still img')?.naturalWidth"
            " === 160"
        )
        assert page.text_content("#thumbnails .video-length") == "0:04"
        assert page.text_content("#stage-text") == "Ready: press Start to reconstruct 1 video."
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "page-video-still.png"))

        def sniff(head: bytes):
            return page.evaluate(
                "async bytes => (await import('/js/video.js')).sniffVideo(new Uint8Array(bytes))",
                list(head),
            )

        def ftyp(brand: bytes) -> bytes:
            return (24).to_bytes(4, "big") + b"ftyp" + brand + bytes(4) + b"isomiso2" + bytes(40)

        assert sniff(ftyp(b"isom")) == "MP4"
        assert sniff(ftyp(b"mp42")) == "MP4"
        assert sniff(ftyp(b"qt  ")) == "MOV"
        assert sniff(bytes(4) + b"mdat" + bytes(8)) == "MOV"  # an old QuickTime file
        assert sniff(b"\x1a\x45\xdf\xa3" + bytes(12)) == "WebM"
        assert sniff(ftyp(b"heic")) is None  # a photo (checks.js)
        assert sniff(ftyp(b"avif")) is None
        assert sniff(b"\xff\xd8\xff\xe0" + bytes(12)) is None
        assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") is None
    finally:
        server.stop()
