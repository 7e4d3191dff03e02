"""Bad input over the WebSocket: each is answered with an error that says what was wrong, and the
session (and the server) go on. Odd but valid photos must work; limits are explained."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image
from server_kit import (
    RunningServer,
    ScriptedEngine,
    data_url,
    make_settings,
    noise_png,
    odd_but_valid_photos,
    photo_bytes,
    png,
)

GOOD = photo_bytes()
IMAGE = {"type": "image_data", "data": data_url(GOOD), "filename": "good.jpg"}


def image(data: bytes, filename: str = "bad.jpg", mime: str = "image/jpeg") -> dict:
    return {"type": "image_data", "data": data_url(data, mime), "filename": filename}


# A 12000x9000 1-bit PNG of 13 kB: 108 million pixels once decoded.
BOMB = png(12000, 9000, 1, 0, bytes((12000 // 8 + 1) * 9000))

# (what is sent, words the error must contain)
BAD_MESSAGES = {
    "not json": ("hello there", "not valid JSON"),
    "truncated json": ('{"type": "ping"', "not valid JSON"),
    "json list": ("[1, 2]", "must be a JSON object"),
    "json string": ('"ping"', "must be a JSON object"),
    "json number": ("42", "must be a JSON object"),
    "json null": ("null", "must be a JSON object"),
    "no type": ({"data": "x"}, 'no "type" field'),
    "type not a string": ({"type": 3}, "unknown message type 3"),
    "unknown type": ({"type": "teleport"}, 'unknown message type "teleport"'),
    "type case": ({"type": "PING"}, 'unknown message type "PING"'),
    "count missing": ({"type": "upload_complete"}, 'field "count" is missing'),
    "count a string": ({"type": "upload_complete", "count": "5"}, 'field "count" should be'),
    "count a float": ({"type": "upload_complete", "count": 2.5}, 'field "count" should be'),
    "data missing": ({"type": "image_data", "filename": "a.jpg"}, 'field "data" is missing'),
    "filename missing": ({"type": "image_data", "data": "x"}, 'field "filename" is missing'),
    "data a number": ({"type": "image_data", "data": 5, "filename": "a"}, 'field "data" should'),
    "filename null": (
        {"type": "image_data", "data": "x", "filename": None},
        'field "filename" should be a valid string, got null',
    ),
    "features not a list": ({"type": "hello", "features": "all"}, 'field "features" should'),
    "data not a data url": (
        {"type": "image_data", "data": "/9j/4AAQSkZJRg==", "filename": "a.jpg"},
        "not a base64 data URL",
    ),
    "data url without base64": (
        {"type": "image_data", "data": "data:image/jpeg,abc", "filename": "a.jpg"},
        "not a base64 data URL",
    ),
    "base64 with junk": (
        {"type": "image_data", "data": "data:image/jpeg;base64,@@@@", "filename": "a.jpg"},
        "damaged or truncated",
    ),
    "base64 truncated": (
        {"type": "image_data", "data": data_url(GOOD)[:-3], "filename": "a.jpg"},
        "damaged or truncated",
    ),
    "jpeg truncated": (image(GOOD[: len(GOOD) // 2]), "Truncated"),
    "not an image": (image(b"just some text, not pixels"), "not an image"),
    "html as image": (image(b"<html><body>hi</body></html>", mime="text/html"), "not an image"),
    "empty file": (image(b""), "the file is empty"),
    "zero pixels": (image(png(0, 0), mime="image/png"), "not an image"),
    "one pixel": (image(photo_bytes(size=(1, 1))), "1x1 pixels"),
    "too thin": (image(photo_bytes(size=(2000, 8))), "at least 16 pixels"),
    "20000x20000": (image(png(20000, 20000), mime="image/png"), "more pixels than the limit"),
    "decompression bomb": (image(BOMB, mime="image/png"), "more pixels than the limit"),
    "photo over max_photo_mb": (image(noise_png(300), mime="image/png"), "max_photo_mb"),
    "message over max_message_mb": (
        {"type": "image_data", "data": "data:;base64," + "A" * 600_000, "filename": "a"},
        "max_message_mb",
    ),
    "upload_complete first": ({"type": "upload_complete", "count": 3}, "no photos were received"),
}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    settings = make_settings(
        tmp_path_factory.mktemp("refusals"), max_photo_mb=0.2, max_message_mb=0.5
    )
    with RunningServer(settings, ScriptedEngine()) as server:
        yield server


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_bad_message_is_explained_and_the_session_goes_on(shared_server, case):
    message, words = BAD_MESSAGES[case]
    with shared_server.connect() as client:
        client.send(message)
        reply = client.receive()
        assert reply["type"] == "error" and words in reply["message"], reply
        assert list(reply) == ["type", "message"]
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}
        assert client.upload({"after.jpg": GOOD}) == [
            {"type": "image_received", "status": "saved", "filename": "after.jpg"}
        ]


def test_a_binary_message_is_refused(shared_server):
    with shared_server.connect() as client:
        client.connection.send(b"\x00\x01")
        assert "binary messages are not understood" in client.receive()["message"]
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}


@pytest.mark.parametrize("count, words", [(1, "at least 2 photos; 1 was"), (5, "says 5 photos")])
def test_upload_complete_with_one_photo_or_a_wrong_count(shared_server, count, words):
    with shared_server.connect() as client:
        client.upload({"a.jpg": GOOD})
        if count != 1:
            client.upload({"b.jpg": GOOD})
        client.send({"type": "upload_complete", "count": count})
        assert words in client.receive()["message"]
        # The photos are kept: the client can finish its upload and go on.
        client.upload({"c.jpg": GOOD})
        client.send({"type": "upload_complete", "count": 2 + (count != 1)})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0


ODD_BUT_VALID = odd_but_valid_photos()


def test_odd_pixel_formats_are_accepted_and_reconstructed(shared_server):
    with shared_server.connect() as client:
        client.send({"type": "hello", "features": ["job"]})
        client.receive()
        replies = client.upload(ODD_BUT_VALID)
        assert [r.get("filename") for r in replies] == list(ODD_BUT_VALID), replies
        client.send({"type": "upload_complete", "count": len(ODD_BUT_VALID)})
        complete = client.receive_until("reconstruction_complete")[-1]
    status = shared_server.http.get(f"/api/jobs/{complete['job_id']}").json()
    assert [v["name"] for v in status["views"]] == list(ODD_BUT_VALID)


def test_an_exif_rotated_photo_comes_out_upright(shared_server):
    photo = Image.new("RGB", (64, 48), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    with shared_server.connect() as client:
        client.send({"type": "hello", "features": ["job", "cameras"]})
        client.receive()
        client.upload({"rotated.jpg": buffer.getvalue(), "plain.jpg": GOOD})
        client.send({"type": "upload_complete", "count": 2})
        messages = client.receive_until("reconstruction_complete")
    rotated = messages[-2]["cameras"][0]
    assert (rotated["width"], rotated["height"]) == (48, 64)
    status = shared_server.http.get(f"/api/jobs/{messages[-1]['job_id']}").json()
    thumbnail = status["photos"][0].pop("thumbnail")
    assert status["photos"][0] == {"name": "rotated.jpg", "width": 48, "height": 64, "mask": False}
    with Image.open(io.BytesIO(shared_server.http.get(thumbnail).content)) as small:
        assert small.size == (48, 64)  # upright too


FILENAMES = {
    "../../etc/passwd": "passwd",
    "/etc/shadow": "shadow",
    "C:\\Users\\me\\IMG_1.JPG": "IMG_1.JPG",
    "nul\x00byte.jpg": "nulbyte.jpg",
    "bell\x07\nnewline.jpg": "bellnewline.jpg",
    "..": "photo-1.jpg",
    "": "photo-1.jpg",
}


@pytest.mark.parametrize("filename", list(FILENAMES))
def test_filenames_are_labels_and_never_paths(shared_server, filename):
    with shared_server.connect() as client:
        client.send({"type": "hello", "features": ["job"]})
        client.receive()
        reply = client.upload({filename: GOOD})[0]
        assert reply == {
            "type": "image_received",
            "status": "saved",
            "filename": FILENAMES[filename],
        }
    files = {path.name for path in (shared_server.settings.data_dir / "jobs").rglob("*")}
    assert "passwd" not in files and "shadow" not in files
    assert not (shared_server.settings.data_dir.parent / "etc").exists()


def test_a_10kb_filename_becomes_a_short_label(shared_server):
    with shared_server.connect() as client:
        label = client.upload({"x" * 10_000 + ".jpg": GOOD})[0]["filename"]
    assert len(label) <= 120 and label.endswith(".jpg")


def test_a_repeated_filename_keeps_both_photos(shared_server):
    with shared_server.connect() as client:
        client.send({"type": "hello", "features": ["job"]})
        client.receive()
        replies = client.upload({"same.jpg": GOOD})
        replies += client.upload({"same.jpg": photo_bytes((0, 0, 255))})
        replies += client.upload({"same.jpg": photo_bytes((0, 255, 0))})
        assert [r["filename"] for r in replies] == ["same.jpg", "same (2).jpg", "same (3).jpg"]
        client.send({"type": "upload_complete", "count": 3})
        job_id = client.receive_until("reconstruction_complete")[-1]["job_id"]
    photos = sorted(
        p.name for p in (shared_server.settings.data_dir / "jobs" / job_id / "photos").iterdir()
    )
    assert photos == ["0000.jpg", "0001.jpg", "0002.jpg"]


def test_thousands_of_tiny_messages_are_all_answered(shared_server):
    with shared_server.connect() as client:
        for _ in range(2000):
            client.connection.send('{"type":"ping"}')
        replies = [client.receive() for _ in range(2000)]
    assert replies == [{"type": "pong"}] * 2000


def test_photos_per_job_and_bytes_per_job_limits(tmp_path):
    settings = make_settings(tmp_path, max_job_mb=0.0002)  # 210 bytes: less than one JPEG
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        assert "max_job_mb" in client.upload({"a.jpg": GOOD})[0]["message"]
    settings = make_settings(tmp_path / "2", max_photos_per_job=2)
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        replies = client.upload({"a.jpg": GOOD, "b.jpg": GOOD, "c.jpg": GOOD})
        assert [r["type"] for r in replies] == ["image_received", "image_received", "error"]
        assert "max_photos_per_job" in replies[2]["message"]
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0


def test_jobs_per_client_limit(tmp_path):
    settings = make_settings(tmp_path, max_jobs_per_client=1)
    with (
        RunningServer(settings, ScriptedEngine()) as server,
        server.connect() as first,
        server.connect() as second,
    ):
        first.upload({"1.jpg": GOOD})
        refused = second.upload({"1.jpg": GOOD})[0]
        assert "max_jobs_per_client = 1" in refused["message"]
        first.upload({"2.jpg": GOOD})
        first.send({"type": "upload_complete", "count": 2})
        first.receive_until("reconstruction_complete")
        # Finished jobs no longer count.
        assert second.upload({"1.jpg": GOOD})[0]["type"] == "image_received"


@pytest.mark.parametrize(
    "limits, setting",
    [
        ({"max_jobs_total": 2, "max_queue_length": 5}, "max_jobs_total = 2"),
        ({"max_jobs_total": 5, "max_queue_length": 1}, "max_queue_length = 1"),
    ],
)
def test_total_jobs_and_queue_limits(tmp_path, limits, setting):
    gate = threading.Event()
    settings = make_settings(tmp_path, max_jobs_per_client=5, **limits)
    with RunningServer(settings, ScriptedEngine(gate=gate)) as server:
        clients = [server.connect() for _ in range(3)]
        for client in clients:
            client.upload({"1.jpg": GOOD, "2.jpg": GOOD})
        running, queued, refused = clients
        running.send({"type": "upload_complete", "count": 2})
        running.receive_until("points")  # held at the gate
        queued.send({"type": "upload_complete", "count": 2})
        refused.send({"type": "upload_complete", "count": 2})
        assert setting in refused.receive()["message"]
        gate.set()
        for client in (running, queued):
            assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0
        # The refused client kept its photos and can try again.
        refused.send({"type": "upload_complete", "count": 2})
        assert refused.receive_until("reconstruction_complete")[-1]["total_points"] > 0
        for client in clients:
            client.close()


def test_an_idle_connection_is_closed_with_a_reason(tmp_path):
    settings = make_settings(tmp_path, idle_timeout_s=0.3)
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        client.send({"type": "hello", "features": []})
        client.receive()
        error = client.receive(timeout_s=5)
        assert error["code"] == "timeout" and "idle_timeout_s" in error["message"]
        with pytest.raises(Exception, match="1000"):
            client.receive(timeout_s=5)


def test_a_silent_client_waiting_for_its_job_is_not_closed(tmp_path):
    settings = make_settings(tmp_path, idle_timeout_s=0.3)
    with RunningServer(settings, ScriptedEngine(delay_s=0.3)) as server, server.connect() as client:
        client.upload({"1.jpg": GOOD, "2.jpg": GOOD, "3.jpg": GOOD})
        client.send({"type": "upload_complete", "count": 3})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0
