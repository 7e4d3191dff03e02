"""Idle and stalled connections are closed after idle_timeout_s with a 408 that names the
setting: a connection that sends nothing, a request head trickled byte by byte, a keep-alive
connection that starts a second request and stops, a body that stops half way. Connections
that work (a WebSocket that talks, a keep-alive reuse) are left alone."""

from __future__ import annotations

import json
import socket
import time

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aetherscan.server.timeouts import guard_http_protocol

TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("stalls"), idle_timeout_s=TIMEOUT_S)
    with RunningServer(settings, ScriptedEngine()) as running:
        yield running


def raw(server) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return connection


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def assert_timed_out(reply: bytes, what: str) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    detail = json.loads(body)["detail"]
    assert detail == f"{what} did not arrive within {TIMEOUT_S:g} s (setting idle_timeout_s)"


def assert_still_serving(server) -> None:
    assert server.http.get("/api/health").json() == {"status": "ok"}


def test_a_connection_that_sends_nothing_is_closed(server):
    started = time.monotonic()
    with raw(server) as connection:
        reply = read_all(connection)
    assert TIMEOUT_S * 0.8 < time.monotonic() - started < TIMEOUT_S + 5
    assert_timed_out(reply, "the request")
    assert_still_serving(server)


def test_a_request_head_trickled_byte_by_byte_is_closed(server):
    head = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    started = time.monotonic()
    with raw(server) as connection:
        for byte in head:  # each byte well within the timeout; the whole head not
            try:
                connection.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > TIMEOUT_S + 5:
                break
        reply = read_all(connection)
    assert time.monotonic() - started < TIMEOUT_S + 5
    assert_timed_out(reply, "the request")
    assert_still_serving(server)


def test_a_keep_alive_connection_is_reused_then_closed_when_it_stalls(server):
    request = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    with raw(server) as connection:
        for _ in range(3):  # quick requests on one connection are served
            connection.sendall(request)
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(TIMEOUT_S / 3)
        connection.sendall(b"GET /api/health HTTP/1.1\r\n")  # and then half a head
        reply = read_all(connection)
    assert_timed_out(reply, "the request")


def test_a_body_that_stops_half_way_is_answered_408(server):
    head = (
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
    )
    with raw(server) as connection:
        connection.sendall(head + b"--xyz\r\nContent-Disposition: form-data; name=")
        reply = read_all(connection)
    assert_timed_out(reply, "the rest of the request")
    assert_still_serving(server)
    assert not any((server.settings.data_dir / "jobs").iterdir())


def test_a_websocket_that_talks_outlives_the_head_deadline(server):
    with server.connect() as client:
        for _ in range(6):  # 1.2 s, more than twice the timeout, never silent for long
            client.send({"type": "ping"})
            assert client.receive() == {"type": "pong"}
            time.sleep(TIMEOUT_S * 0.4)


@pytest.mark.parametrize("parser", [H11Protocol, HttpToolsProtocol])
def test_the_head_deadline_works_with_either_http_parser(tmp_path, parser):
    settings = make_settings(tmp_path, idle_timeout_s=TIMEOUT_S)
    http = guard_http_protocol(TIMEOUT_S, parser)
    with RunningServer(settings, ScriptedEngine(), http=http) as server:
        with raw(server) as connection:
            connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            assert_timed_out(read_all(connection), "the request")
        assert_still_serving(server)
