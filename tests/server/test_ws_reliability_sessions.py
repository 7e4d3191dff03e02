"""WebSocket sessions are limited per client (max_ws_sessions_per_client) and in all
(max_ws_sessions_total): the session over a limit gets an error that names the setting and a
close frame with code 1013 (try again later) and a short reason; the others go on, and a slot
is free again when its session ends."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings
from websockets.exceptions import ConnectionClosed

from aetherscan.settings import Settings


def address(number: int) -> dict[str, str]:
    """The headers of a client at another address (behind the trusted proxy 127.0.0.1)."""
    return {"X-Forwarded-For": f"10.0.0.{number}"}


def assert_refused(client, setting: str) -> None:
    error = client.receive(timeout_s=10)
    assert error["type"] == "error" and f"(setting {setting} = " in error["message"], error
    with pytest.raises(ConnectionClosed) as closed:
        client.receive(timeout_s=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason.endswith(f"(setting {setting})")
    assert len(closed.value.rcvd.reason.encode()) <= 123


def assert_serves(client) -> None:
    client.send({"type": "ping"})
    assert client.receive(timeout_s=10) == {"type": "pong"}


def admitted_after_a_while(server, headers) -> None:
    """A new session of the client is admitted once the server has seen one of its sessions end."""
    deadline = time.monotonic() + 10
    while True:
        with server.connect(headers) as client:
            client.send({"type": "ping"})
            if client.receive(timeout_s=10)["type"] == "pong":
                return
        assert time.monotonic() < deadline, "no slot came free"
        time.sleep(0.05)


def test_the_limits_have_defaults():
    assert Settings().max_ws_sessions_per_client == 8
    assert Settings().max_ws_sessions_total == 64


def test_one_client_gets_at_most_its_share_of_sessions(tmp_path):
    with RunningServer(make_settings(tmp_path), ScriptedEngine()) as server, ExitStack() as open_:
        mine = [open_.enter_context(server.connect()) for _ in range(8)]  # the default limit
        for _ in range(4):
            with server.connect() as extra:
                assert_refused(extra, "max_ws_sessions_per_client")
        with server.connect(address(7)) as someone_else:
            assert_serves(someone_else)
        for client in mine:
            assert_serves(client)
        mine.pop().close()
        admitted_after_a_while(server, None)


def test_the_server_has_at_most_its_total_of_sessions(tmp_path):
    settings = make_settings(tmp_path, max_ws_sessions_total=4, max_ws_sessions_per_client=3)
    with RunningServer(settings, ScriptedEngine()) as server, ExitStack() as open_:
        clients = [open_.enter_context(server.connect(address(n))) for n in range(4)]
        with server.connect(address(9)) as extra:
            assert_refused(extra, "max_ws_sessions_total")
        for client in clients:
            assert_serves(client)
        assert server.http.get("/api/health").status_code == 200  # REST is not a session
        clients.pop().close()
        admitted_after_a_while(server, address(9))
