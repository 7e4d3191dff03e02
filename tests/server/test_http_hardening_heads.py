"""Request heads are capped in size and header count, and refused before they are parsed: a
64 MB header is answered 431 with a sentence while other clients are served without delay.
Heads under the caps, big bodies behind small heads, keep-alive and pipelined requests are
served as before. (The head deadline is in test_stalled_connections.py.)"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, noise_png

from aetherscan.server.timeouts import MAX_HEAD_BYTES, MAX_HEADERS

HUGE_MB = 64
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RunningServer(
        make_settings(tmp_path_factory.mktemp("heads")), ScriptedEngine()
    ) as running:
        yield running


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(connection: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_and_detail(reply: bytes) -> tuple[int, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)["detail"]


class Pinger:
    """Another client asking /api/health in a loop, recording each answer's delay."""

    def __init__(self, server) -> None:
        self.url = f"http://127.0.0.1:{server.port}/api/health"
        self.delays: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=20) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                assert client.get(self.url).status_code == 200
                self.delays.append(time.monotonic() - started)
                time.sleep(0.01)

    def __enter__(self) -> Pinger:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join(30)


def test_a_huge_header_is_refused_at_once_and_nobody_waits(server):
    head = HEALTH + b"X-Huge: " + b"a" * (HUGE_MB * 1024 * 1024) + b"\r\n\r\n"
    with Pinger(server) as pinger, connect(server) as connection:
        started = time.monotonic()
        # Cut off after the answer's linger time, if it comes to that: the answer comes first.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(head)
        reply = read_until_closed(connection)
        elapsed = time.monotonic() - started
    assert status_and_detail(reply) == (
        431,
        "the request has more than 32 kB of request line and headers, more than this server reads",
    )
    assert elapsed < 10
    # Before the cap, parsing the head held the event loop for ~2 s (the ping waited as long).
    assert max(pinger.delays) < 1.0, f"a ping waited {max(pinger.delays):.2f} s"
    assert len(pinger.delays) >= 5


def test_more_headers_than_allowed_are_refused(server):
    headers = b"".join(b"X-H%d: v\r\n" % index for index in range(MAX_HEADERS + 1))
    with connect(server) as connection:
        connection.sendall(HEALTH + headers + b"\r\n")
        status, detail = status_and_detail(read_until_closed(connection))
    assert (status, detail) == (
        431,
        "the request has more than 100 headers, more than this server reads",
    )


def test_heads_within_the_caps_are_served(server):
    # MAX_HEADERS headers in all (Host and the padding included), MAX_HEAD_BYTES in all.
    padding = [(f"x-pad-{index}", "v") for index in range(MAX_HEADERS - 2)]
    fixed = len(HEALTH) + sum(len(f"{n}: {v}\r\n") for n, v in padding) + len("X-Big: \r\n\r\n")
    big = "b" * (MAX_HEAD_BYTES - fixed)
    request = HEALTH + b"".join(f"{n}: {v}\r\n".encode() for n, v in padding)
    request += f"X-Big: {big}\r\n\r\n".encode()
    assert len(request) == MAX_HEAD_BYTES
    with connect(server) as connection:
        connection.sendall(request)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_big_body_behind_a_small_head_is_not_counted_as_head(server):
    photos = [noise_png(160), noise_png(161)]  # about 77 kB each, so the body is over 32 kB
    boundary = b"xyzzy"
    body = (
        b"".join(
            b'--%s\r\nContent-Disposition: form-data; name="files"; filename="%d.png"\r\n'
            b"Content-Type: image/png\r\n\r\n%s\r\n" % (boundary, index, data)
            for index, data in enumerate(photos)
        )
        + b"--%s--\r\n" % boundary
    )
    request = (
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Content-Type: multipart/form-data; boundary=%s\r\n\r\n%s" % (len(body), boundary, body)
    )
    assert len(body) > MAX_HEAD_BYTES
    with connect(server) as connection:
        connection.sendall(HEALTH + b"\r\n")  # a first request, so the POST reuses the connection
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
        connection.sendall(request)  # head and body in one write
        reply = connection.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201"), reply[:300]
    job_id = json.loads(reply.partition(b"\r\n\r\n")[2])["job_id"]
    assert server.wait_for_state(job_id)["state"] == "done"


def test_pipelined_requests_are_answered_and_a_huge_pipelined_head_is_refused(server):
    with connect(server) as connection:
        connection.sendall((HEALTH + b"\r\n") * 3)
        replies = b""
        while replies.count(b"HTTP/1.1 200") < 3:
            replies += connection.recv(65536)
    # A huge head behind a request that is being served is h11's to refuse (its own cap).
    with Pinger(server) as pinger, connect(server) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(HEALTH + b"\r\n" + HEALTH + b"X-Huge: " + b"a" * 8_000_000)
        reply = read_until_closed(connection)
    assert reply.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 400" in reply or b"HTTP/1.1 431" in reply
    assert max(pinger.delays) < 1.0
