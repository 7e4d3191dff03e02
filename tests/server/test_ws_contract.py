"""The WebSocket contract of issue 5, with a real client against a running server: exact messages
and shapes for a client that never says hello, streaming before completion, several sessions."""

from __future__ import annotations

import json
import threading

import numpy as np
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

POINT_KEYS = ["x", "y", "z", "r", "g", "b"]


def test_ping_gets_exactly_pong(server):
    with server.connect() as client:
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}


def test_an_old_client_gets_exactly_the_contract(server, engine, three_photos):
    with server.connect() as client:
        replies = client.upload(three_photos)
        assert replies == [
            {"type": "image_received", "status": "saved", "filename": name} for name in three_photos
        ]
        client.send({"type": "upload_complete", "count": 3})
        messages = client.receive_until("reconstruction_complete")

    *points, complete = messages
    assert {m["type"] for m in points} == {"points"}, "no extension message without hello"
    assert list(complete) == ["type", "total_points"]
    received = [point for message in points for point in message["data"]]
    assert complete["total_points"] == len(received) == 3 * engine.points_per_view
    assert all(len(m["data"]) <= 5000 for m in points)
    for point in received[:50]:
        assert list(point) == POINT_KEYS
        assert all(isinstance(point[k], float) for k in "xyz")
        assert all(isinstance(point[k], int) and 0 <= point[k] <= 255 for k in "rgb")
    # The points are the engine's, unchanged but for the float32 text round trip.
    first_view = engine._view(0, _photo_of(server, three_photos, "image1.jpg"))
    xyz = np.array(
        [[p["x"], p["y"], p["z"]] for p in received[: engine.points_per_view]], np.float32
    )
    np.testing.assert_array_equal(xyz, first_view.points)
    # Every message is one JSON object with "type" first, as the original server sent them.
    for raw in client.raw:
        assert isinstance(raw, str) and raw.startswith('{"type":')


def test_points_arrive_before_the_reconstruction_ends(tmp_path, three_photos):
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        first = client.receive()  # the engine is still held at its gate
        assert first["type"] == "points" and not gate.is_set()
        gate.set()
        rest = client.receive_until("reconstruction_complete")
    sent = len(first["data"]) + sum(len(m["data"]) for m in rest if m["type"] == "points")
    assert rest[-1]["total_points"] == sent == 3 * engine.points_per_view


def test_two_sessions_at_once_each_get_only_their_own_points(server, engine):
    red = {f"red{i}.jpg": photo_bytes((220, 20, 20)) for i in range(2)}
    blue = {f"blue{i}.jpg": photo_bytes((20, 20, 220)) for i in range(3)}
    with server.connect() as a, server.connect() as b:
        # Interleave the uploads so that the two sessions really overlap.
        for (name_a, data_a), (name_b, data_b) in zip(red.items(), blue.items(), strict=False):
            a.upload({name_a: data_a})
            b.upload({name_b: data_b})
        b.upload(dict(list(blue.items())[2:]))
        a.send({"type": "upload_complete", "count": 2})
        b.send({"type": "upload_complete", "count": 3})
        from_a = a.receive_until("reconstruction_complete")
        from_b = b.receive_until("reconstruction_complete")

    for messages, photos, colour in ((from_a, red, "r"), (from_b, blue, "b")):
        points = [p for m in messages if m["type"] == "points" for p in m["data"]]
        assert messages[-1]["total_points"] == len(points) == len(photos) * engine.points_per_view
        assert all(p[colour] > 150 for p in points), "a point from the other session's photos"
    assert sorted(engine.calls) == [list(blue), list(red)]


def test_a_session_can_reconstruct_again_after_completion(server, three_photos):
    with server.connect() as client:
        for _ in range(2):
            client.upload(three_photos)
            client.send({"type": "upload_complete", "count": 3})
            assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0


def test_points_are_sent_even_when_the_engine_streams_none(tmp_path, three_photos):
    engine = ScriptedEngine(stream=False)
    with RunningServer(make_settings(tmp_path), engine) as server, server.connect() as client:
        client.upload(three_photos)
        client.send({"type": "upload_complete", "count": 3})
        messages = client.receive_until("reconstruction_complete")
    sent = sum(len(m["data"]) for m in messages if m["type"] == "points")
    assert messages[-1]["total_points"] == sent == 3 * engine.points_per_view


def test_an_engine_error_is_an_error_message_and_the_session_goes_on(server):
    with server.connect() as client:
        client.upload({"a.jpg": photo_bytes(), "fail.jpg": photo_bytes()})
        client.send({"type": "upload_complete", "count": 2})
        messages = client.receive_until("error")
        assert "fail.jpg was scripted to fail" in messages[-1]["message"]
        assert list(messages[-1]) == ["type", "message"]
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}


def _photo_of(server: RunningServer, photos: dict[str, bytes], name: str):
    """The engine's input photo for ``name``, rebuilt from the bytes sent."""
    from aetherscan.engines.base import Photo

    path = server.settings.data_dir / f"check-{name}"
    path.write_bytes(photos[name])
    return Photo(name, path)


def test_reply_json_is_compact_and_utf8(server):
    with server.connect() as client:
        client.upload({"été 📷.jpg": photo_bytes(), "b.jpg": photo_bytes()})
        assert json.loads(client.raw[0])["filename"] == "été 📷.jpg"
