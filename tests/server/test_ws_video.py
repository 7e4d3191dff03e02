"""A video over the WebSocket (feature video): sent in pieces, its frames answered as photos,
then video_received; refusals with a sentence, and nothing left behind by a connection that
drops mid-video."""

from __future__ import annotations

import base64
import time

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes
from video_kit import photo_pan_clip

HELLO = {"type": "hello", "protocol": 1, "features": ["video", "progress"]}


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    return photo_pan_clip(
        tmp_path_factory.mktemp("clip") / "pot.webm", blur_every=5
    ).path.read_bytes()


def send_video(client, data: bytes, name: str = "pot.webm", piece: int = 64 * 1024) -> None:
    for start in range(0, len(data), piece):
        chunk = base64.b64encode(data[start : start + piece]).decode()
        last = start + piece >= len(data)
        client.send(
            {
                "type": "video_data",
                "filename": name,
                "data": f"data:video/webm;base64,{chunk}",
                "last": last,
            }
        )


def test_a_video_in_pieces_gives_photos_and_a_job(tmp_path, clip_bytes):
    engine = ScriptedEngine(points_per_view=50)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.send(HELLO)
        client.receive()
        send_video(client, clip_bytes)
        replies = client.receive_until("video_received", timeout_s=60)
        received = [m["filename"] for m in replies if m["type"] == "image_received"]
        summary = replies[-1]
        assert summary["frames"] == received and len(received) >= 8
        assert summary["filename"] == "pot.webm" and summary["duration_s"] == pytest.approx(
            8.0, abs=0.1
        )
        assert all(name.startswith("pot-t") for name in received)
        client.upload({"after.jpg": photo_bytes()})  # photos may follow a video
        client.send({"type": "upload_complete", "count": len(received) + 1})
        done = client.receive_until("reconstruction_complete", timeout_s=60)[-1]
        assert done["total_points"] == 50 * (len(received) + 1)
        assert engine.calls[-1] == [*received, "after.jpg"]


def test_refusals_say_why_and_the_session_goes_on(tmp_path, clip_bytes):
    settings = make_settings(tmp_path, max_video_mb=0.05)
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        client.send(
            {"type": "video_data", "filename": "a.webm", "data": "data:video/webm;base64,AAAA"}
        )
        assert "needs the feature video" in client.receive()["message"]  # before hello
        client.send(HELLO)
        client.receive()
        send_video(client, clip_bytes, piece=16 * 1024)
        error = client.receive_until("error")[-1]
        assert error["code"] == "limit" and "max_video_mb" in error["message"]
        send_video(client, b"not a video at all" * 100, name="junk.webm")
        error = client.receive_until("error")[-1]
        assert error["code"] == "bad_photo" and "junk" in error["message"]
        assert client.upload({"a.jpg": photo_bytes()})[0]["type"] == "image_received"
    assert not list((tmp_path / "tmp").glob("video-*"))


def test_a_connection_that_drops_mid_video_leaves_nothing(tmp_path, clip_bytes):
    with RunningServer(make_settings(tmp_path), ScriptedEngine()) as server:
        with server.connect() as client:
            client.send(HELLO)
            client.receive()
            first = base64.b64encode(clip_bytes[:50_000]).decode()
            client.send(
                {
                    "type": "video_data",
                    "filename": "pot.webm",
                    "data": f"data:video/webm;base64,{first}",
                }
            )
            client.send({"type": "ping"})
            assert client.receive_until("pong")[-1]["type"] == "pong"
            assert list((tmp_path / "tmp").glob("video-*"))
        deadline = time.monotonic() + 10
        while list((tmp_path / "tmp").glob("video-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list((tmp_path / "tmp").glob("video-*"))
