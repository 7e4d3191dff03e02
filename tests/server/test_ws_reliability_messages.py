"""Hostile WebSocket messages of the family that used to end a session without a word (10 kB of
brackets, a number of 5000 digits): each is answered with a short error, the session goes on and
the photos it received stay. What the WebSocket standard makes the server close instead (text
that is not UTF-8, a message over twice max_message_mb) ends only that connection, and with the
``attach`` feature not even its photos are lost."""

from __future__ import annotations

import json
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

RED, GREEN = photo_bytes((220, 20, 20)), photo_bytes((20, 220, 20))
SOON_S = 10

# (what is sent, words of the error)
HOSTILE = {
    "10 kB of brackets": ("[" * 10_000, "more than 32 levels deep"),
    "deep but closed": ("[" * 5000 + "]" * 5000, "more than 32 levels deep"),
    "deep in a field": (
        '{"type":"hello","features":' + "[" * 900 + "]" * 900 + "}",
        "more than 32 levels deep",
    ),
    "deep in an ignored field": (
        '{"type":"ping","later":' + "{" + '"a":{' * 500 + "}" * 501 + "}",
        "more than 32 levels deep",
    ),
    "5000 digits": (
        '{"type":"upload_complete","count":' + "7" * 5000 + "}",
        'field "count" should be a valid integer, got a number of 5000 digits',
    ),
    "5000 digits as the type": ('{"type":' + "1" * 5000 + "}", "unknown message type"),
    "5000 digits, negative": ('{"type":"hello","protocol":-' + "1" * 5000 + "}", "5000 digits"),
    "a float of 5000 digits": (
        '{"type":"upload_complete","count":' + "9" * 5000 + ".5}",
        'field "count" should be a valid integer',
    ),
    "1e999": ('{"type":"upload_complete","count":1e999}', 'field "count" should be'),
    "NaN": ('{"type":"upload_complete","count":NaN}', "got a number (NaN)"),
    "Infinity": ('{"type":"upload_complete","count":Infinity}', "got a number (Infinity)"),
    "-Infinity": ('{"type":"hello","protocol":-Infinity}', "got a number (-Infinity)"),
    "a key twice": ('{"type":"ping","type":"cancel"}', 'the key "type" appears twice'),
    "a key twice, deeper": (
        '{"type":"hello","features":[],"x":{"a":1,"a":2}}',
        'the key "a" appears twice',
    ),
    "a lone surrogate": (
        '{"type":"image_data","data":"x","filename":"\\ud800.jpg"}',
        "lone surrogate",
    ),
    "a lone surrogate in a key": ('{"type":"ping","\\udfff":1}', "lone surrogate"),
    "a huge string where a number goes": (
        json.dumps({"type": "upload_complete", "count": "x" * 3_000_000}),
        'field "count" should be a valid integer, got a string',
    ),
    "a huge list as the type": (json.dumps({"type": ["a"] * 300_000}), "unknown message type"),
    "a huge mask name": (
        json.dumps({"type": "mask_data", "photo": "m" * 3_000_000, "data": "x"}),
        "mask_data is an extension",
    ),
}


def image(data: bytes, name: str) -> dict:
    return {"type": "image_data", "data": data_url(data), "filename": name}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("hostile"), max_jobs_per_client=50)
    with RunningServer(settings, ScriptedEngine(points_per_view=100)) as running:
        yield running


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_message_is_answered_and_the_photos_stay(server, name):
    text, words = HOSTILE[name]
    with server.connect() as client:
        client.upload({"a.jpg": RED})
        client.send(text)
        error = client.receive(timeout_s=SOON_S)
        assert error["type"] == "error" and words in error["message"], error
        assert len(error["message"]) < 400, "a sentence, not the message sent back"
        client.send({"type": "ping"})
        assert client.receive(timeout_s=SOON_S) == {"type": "pong"}
        client.upload({"b.jpg": GREEN})
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] == 200


def test_a_binary_frame_where_text_is_expected(server):
    with server.connect() as client:
        client.upload({"a.jpg": RED})
        client.connection.send(json.dumps({"type": "ping"}).encode())  # as a binary frame
        error = client.receive(timeout_s=SOON_S)
        assert error["type"] == "error" and "binary messages" in error["message"]
        client.upload({"b.jpg": GREEN})
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] == 200


def test_a_huge_filename_is_labelled_at_once_without_stalling_the_server(server):
    with server.connect() as client, server.connect() as other:
        started = time.monotonic()
        client.send(image(RED, "p" * 6_000_000 + ".jpg"))
        other.send({"type": "ping"})
        assert other.receive(timeout_s=SOON_S) == {"type": "pong"}
        reply = client.receive(timeout_s=SOON_S)
        assert time.monotonic() - started < 5
        assert reply["type"] == "image_received"
        assert len(reply["filename"]) == 120 and reply["filename"].endswith("p.jpg")


def test_text_that_is_not_utf8_closes_only_that_connection_and_an_attached_job_stays(server):
    """The WebSocket standard (RFC 6455, 8.1) makes the server fail a connection whose text is
    not UTF-8 (close code 1007); its client attaches from a new connection and goes on."""
    with server.connect() as other:
        raw = RawWebSocket(server.port)
        raw.send({"type": "hello", "features": ["attach"]})
        raw.send(image(RED, "a.jpg"))
        received = b""
        while b'"image_received"' not in received:
            received += raw.socket.recv(65536)
        job_id = json.loads(received[received.rindex(b"{") :])["job_id"]
        raw.socket.sendall(raw.frame(b'{"type":"ping"}\xff'))
        while chunk := raw.socket.recv(65536):
            received += chunk
        raw.close()
        assert b"\x88\x02\x03\xef" in received, "closed with 1007"
        other.send({"type": "ping"})
        assert other.receive() == {"type": "pong"}
        with server.connect() as again:
            again.send({"type": "hello", "features": ["attach"]})
            again.receive()
            again.send({"type": "attach", "job_id": job_id})
            attached = again.receive()
            assert attached["state"] == "uploading" and attached["photos"] == ["a.jpg"]
            again.upload({"b.jpg": GREEN})
            again.send({"type": "upload_complete", "count": 2})
            assert again.receive_until("reconstruction_complete")[-1]["total_points"] == 200


def test_a_message_over_twice_the_limit_with_attach_keeps_the_photos(tmp_path):
    settings = make_settings(tmp_path, max_message_mb=0.1)  # the library closes over 0.2 MB
    with RunningServer(settings, ScriptedEngine(points_per_view=100)) as server:
        with server.connect() as client:
            client.send({"type": "hello", "features": ["attach"]})
            client.receive()
            job_id = client.upload({"a.jpg": RED})[0]["job_id"]
            client.send("x" * 300_000)
            with pytest.raises(ConnectionClosed) as closed:
                client.receive()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        with server.connect() as again:
            again.send({"type": "hello", "features": ["attach"]})
            again.receive()
            again.send({"type": "attach", "job_id": job_id})
            assert again.receive()["photos"] == ["a.jpg"]
            again.upload({"b.jpg": GREEN})
            again.send({"type": "upload_complete", "count": 2})
            assert again.receive_until("reconstruction_complete")[-1]["total_points"] == 200


@pytest.mark.parametrize(
    "photo, words",
    [("\\ud800.jpg", "lone surrogate"), ("m" * 3_000_000, "no photo of this upload has that name")],
    ids=["lone surrogate", "3 MB"],
)
def test_a_mask_for_a_hostile_photo_name_is_refused_in_a_sentence(server, photo, words):
    """Such names used to come back whole in the error (3 MB), or not at all: a lone surrogate
    cannot be sent, and the failed send stopped the session's uploads for good."""
    with server.connect() as client:
        client.send({"type": "hello", "features": ["masks"]})
        client.receive()
        client.upload({"a.jpg": RED})
        text = json.dumps({"type": "mask_data", "photo": "PHOTO", "data": data_url(GREEN)})
        client.send(text.replace("PHOTO", photo))
        error = client.receive(timeout_s=SOON_S)
        assert error["type"] == "error" and words in error["message"], error
        assert len(error["message"]) < 400
        client.upload({"b.jpg": GREEN})
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] == 200
