"""What broken or hostile WebSocket clients do, and what they must not do to the others: a
message over twice the limit, thousands of tiny messages, a client that vanishes in the middle
of a frame or right after sending photos, one that stops reading while its job streams, one
that stalls half way through a frame. Each time the server cleans up after that client alone
and serves the others (whose results stay their own)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from server_kit import (
    RawWebSocket,
    RunningServer,
    ScriptedEngine,
    data_url,
    make_settings,
    photo_bytes,
)
from websockets.exceptions import ConnectionClosed

RED, GREEN, BLUE = (
    photo_bytes((220, 20, 20)),
    photo_bytes((20, 220, 20)),
    photo_bytes((20, 20, 220)),
)


def wait_until(predicate, timeout_s: float = 15, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def image(data: bytes, filename: str) -> dict:
    return {"type": "image_data", "data": data_url(data), "filename": filename}


def photo_files(server) -> list:
    return list((server.settings.data_dir / "jobs").glob("*/photos/*"))


def only_job_id(server) -> str:
    (folder,) = (server.settings.data_dir / "jobs").iterdir()
    return folder.name


def reconstruct(client, photos: dict[str, bytes]) -> list:
    """A whole job for a well-behaved client; returns its messages."""
    client.upload(photos)
    client.send({"type": "upload_complete", "count": len(photos)})
    return client.receive_until("reconstruction_complete", timeout_s=60)


def assert_own_points(messages: list, color: tuple[int, int, int], total: int) -> None:
    """Every point has the colour of this client's photos: nobody else's points came here."""
    points = [p for m in messages if m["type"] == "points" for p in m["data"]]
    assert len(points) == total == messages[-1]["total_points"]
    for point in points[:: max(1, len(points) // 50)]:
        assert all(abs(point[k] - c) <= 8 for k, c in zip("rgb", color, strict=True)), point


def test_a_message_over_twice_the_limit_closes_that_connection_only(tmp_path):
    settings = make_settings(tmp_path, max_message_mb=0.1)  # the library closes over 0.2 MB
    with (
        RunningServer(settings, ScriptedEngine(points_per_view=300)) as server,
        server.connect() as other,
    ):
        with server.connect() as client:
            client.send("x" * 300_000)
            with pytest.raises(ConnectionClosed) as closed:
                client.receive()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        other.send({"type": "ping"})
        assert other.receive() == {"type": "pong"}
        messages = reconstruct(other, {"a.jpg": RED, "b.jpg": RED})
        assert_own_points(messages, (220, 20, 20), 600)


def test_thousands_of_tiny_messages_while_another_client_reconstructs(tmp_path):
    engine = ScriptedEngine(points_per_view=500, delay_s=0.2)
    with (
        RunningServer(make_settings(tmp_path), engine) as server,
        server.connect() as flood,
        server.connect() as worker,
    ):
        worker.upload({"a.jpg": GREEN, "b.jpg": GREEN, "c.jpg": GREEN})
        worker.send({"type": "upload_complete", "count": 3})
        tiny = ['{"type":"ping"}'] * 8 + ["x", '{"type":"?"}']
        for start in range(0, 3000, 500):  # 500 at a time without waiting, 3000 in all
            for index in range(start, start + 500):
                flood.connection.send(tiny[index % len(tiny)])
            for index in range(start, start + 500):
                reply = flood.receive()
                if tiny[index % len(tiny)].startswith('{"type":"ping"'):
                    assert reply == {"type": "pong"}, (index, reply)
                else:
                    assert reply["type"] == "error", (index, reply)
        messages = worker.receive_until("reconstruction_complete", timeout_s=60)
        assert_own_points(messages, (20, 220, 20), 1500)


def test_a_client_that_vanishes_in_the_middle_of_a_photo(tmp_path):
    with RunningServer(make_settings(tmp_path), ScriptedEngine(points_per_view=300)) as server:
        raw = RawWebSocket(server.port)
        raw.send(image(RED, "a.jpg"))
        wait_until(lambda: len(photo_files(server)) == 1, what="the first photo")
        frame = raw.frame(json.dumps(image(BLUE, "b.jpg")).encode())
        raw.socket.sendall(frame[: len(frame) // 2])
        raw.close()  # no close frame, half a message
        job_id = only_job_id(server)
        status = server.wait_for_state(job_id)
        assert status["state"] == "cancelled" and status["error"] == "the client disconnected"
        assert photo_files(server) == []
        with server.connect() as other:
            assert_own_points(
                reconstruct(other, {"a.jpg": GREEN, "b.jpg": GREEN}), (20, 220, 20), 600
            )


def test_clients_that_vanish_right_after_sending_photos(tmp_path):
    """The photos are still being decoded, stored, or refused (the second job of one address
    over max_jobs_per_client) when the server learns of the disconnect. Every such session
    ends and leaves no photo; the client that stays is served."""
    settings = make_settings(tmp_path, max_jobs_per_client=2)
    with (
        RunningServer(settings, ScriptedEngine(points_per_view=300)) as server,
        server.connect() as other,
    ):
        other.upload({"a.jpg": GREEN})
        for _ in range(5):
            raw = RawWebSocket(server.port)
            for index in range(4):
                raw.send(image(photo_bytes((200, 0, 0), size=(640, 480)), f"{index}.jpg"))
            raw.close()
        wait_until(lambda: server.app_tasks() == 1, what="the vanished sessions to end")
        jobs = server.settings.data_dir / "jobs"
        assert len(photo_files(server)) == 1  # the photo of the client that stays
        states = sorted(
            server.http.get(f"/api/jobs/{folder.name}").json()["state"] for folder in jobs.iterdir()
        )
        assert states[-1] == "uploading" and set(states[:-1]) == {"cancelled"}
        other.upload({"b.jpg": GREEN})
        other.send({"type": "upload_complete", "count": 2})
        messages = other.receive_until("reconstruction_complete")
        assert_own_points(messages, (20, 220, 20), 600)


def stalled_reader(server, photos: dict[str, bytes]) -> RawWebSocket:
    """A client that starts a job and never reads a byte of the answer."""
    raw = RawWebSocket(server.port, receive_buffer=4096)
    for name, data in photos.items():
        raw.send(image(data, name))
    raw.send({"type": "upload_complete", "count": len(photos)})
    return raw


def test_a_client_that_stops_reading_is_cut_off_and_its_running_job_cancelled(tmp_path):
    gate = threading.Event()
    engine = ScriptedEngine(points_per_view=100_000, gate=gate)  # 6 MB of JSON for view 1
    settings = make_settings(tmp_path, idle_timeout_s=1.0)
    with RunningServer(settings, engine) as server, server.connect() as other:
        raw = stalled_reader(server, {"a.jpg": RED, "b.jpg": RED})
        wait_until(lambda: any(server.settings.data_dir.glob("jobs/*")), what="the job")
        job_id = only_job_id(server)
        for _ in range(20):  # the server answers others while it waits for the stalled client
            other.send({"type": "ping"})
            assert other.receive(timeout_s=5) == {"type": "pong"}
            time.sleep(0.05)
        status = server.wait_for_state(job_id, timeout_s=30)
        assert status["state"] == "cancelled" and status["error"] == "the client stopped reading"
        assert photo_files(server) == []
        raw.close()
        gate.set()
        engine.points_per_view = 300
        assert_own_points(reconstruct(other, {"a.jpg": BLUE, "b.jpg": BLUE}), (20, 20, 220), 600)


def test_a_finished_job_is_kept_when_its_client_stopped_reading(tmp_path):
    """The job finishes while its points still wait to be sent; the client that stopped reading
    is cut off, but the results stay, for REST (nothing lost)."""
    engine = ScriptedEngine(points_per_view=60_000)
    settings = make_settings(tmp_path, idle_timeout_s=1.0)
    with RunningServer(settings, engine) as server:
        raw = stalled_reader(server, {"a.jpg": RED, "b.jpg": RED, "c.jpg": RED})
        wait_until(lambda: any(server.settings.data_dir.glob("jobs/*")), what="the job")
        job_id = only_job_id(server)
        assert server.wait_for_state(job_id, timeout_s=30)["state"] == "done"
        time.sleep(3 * settings.idle_timeout_s)  # the session gives up on the client meanwhile
        status = server.http.get(f"/api/jobs/{job_id}").json()
        assert status["state"] == "done" and status["num_points"] == 180_000
        assert server.http.get(status["downloads"]["ply"]).status_code == 200
        raw.close()


def read_frames(raw: RawWebSocket) -> list[tuple[int, bytes]]:
    """The server's frames (opcode, payload) up to its close frame."""
    return raw.receive_frames(lambda opcode, _: opcode == 0x8)


def test_a_client_that_stalls_in_the_middle_of_a_frame_times_out(tmp_path):
    settings = make_settings(tmp_path, idle_timeout_s=0.5)
    with RunningServer(settings, ScriptedEngine()) as server:
        raw = RawWebSocket(server.port)
        frame = raw.frame(json.dumps(image(RED, "a.jpg")).encode())
        raw.socket.sendall(frame[:100])
        started = time.monotonic()
        frames = read_frames(raw)
        assert time.monotonic() - started < 15
        (opcode, text), (close_opcode, _) = frames[0], frames[-1]
        assert opcode == 0x1 and close_opcode == 0x8
        error = json.loads(text)
        assert error["type"] == "error" and "(setting idle_timeout_s)" in error["message"]
        raw.close()
        assert server.http.get("/api/health").status_code == 200
        assert not any((server.settings.data_dir / "jobs").iterdir())
