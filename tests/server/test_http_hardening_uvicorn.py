"""The HTTP guards of aetherscan.server.timeouts subclass uvicorn's protocol classes, which are
not a public API. These tests check each part of them that the guards use, on a real server,
and fail with a sentence that says what changed and what to do, instead of letting the guards
break quietly (a head deadline that never fires, a size cap that counts nothing)."""

from __future__ import annotations

import inspect
import socket

import pytest
import uvicorn
from server_kit import RunningServer, ScriptedEngine, make_settings
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aetherscan.server.app import server_config
from aetherscan.server.timeouts import guard_http_protocol

HOOKS = ("connection_made", "data_received", "eof_received", "on_response_complete")
HOOKS += ("connection_lost",)
REQUEST = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"


def changed(what: str) -> str:
    return (
        f"uvicorn {uvicorn.__version__} changed what aetherscan.server.timeouts relies on: "
        f"{what}. Keep uvicorn below {uvicorn.__version__} in pyproject.toml until the guards "
        "are ported (the module docstring lists what they use)."
    )


@pytest.mark.parametrize("base", [H11Protocol, HttpToolsProtocol])
def test_the_protocol_classes_have_the_hooks_the_guards_override(base):
    for name in HOOKS:
        assert callable(getattr(base, name, None)), changed(f"{base.__name__}.{name} is gone")
    parameters = list(inspect.signature(base.on_response_complete).parameters)
    assert parameters == ["self"], changed(
        f"{base.__name__}.on_response_complete takes {parameters}"
    )


def test_uvicorn_takes_the_options_the_server_sets(tmp_path):
    config = server_config(object(), make_settings(tmp_path))  # type: ignore[arg-type]
    assert config.h11_max_incomplete_event_size == 32 * 1024, changed(
        "Config no longer keeps h11_max_incomplete_event_size"
    )
    assert issubclass(config.http, H11Protocol), changed("the http option no longer takes a class")


@pytest.mark.parametrize("base", [H11Protocol, HttpToolsProtocol])
def test_uvicorn_calls_the_hooks_and_keeps_the_state_the_guards_read(tmp_path, base):
    guarded = guard_http_protocol(30, base)
    seen: list[dict] = []

    class Watched(guarded):  # type: ignore[valid-type, misc]
        def on_response_complete(self) -> None:
            cycle = getattr(self, "cycle", None)
            seen.append(
                {
                    "cycle": cycle is not None,
                    "response_complete": getattr(cycle, "response_complete", None),
                    "loop": callable(getattr(getattr(self, "loop", None), "call_later", None)),
                    "transport": getattr(self, "transport", None) is not None,
                }
            )
            super().on_response_complete()

    settings = make_settings(tmp_path)
    with (
        RunningServer(settings, ScriptedEngine(), http=Watched) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection,
    ):
        for _ in range(2):  # keep-alive: the hook must run after each response
            connection.sendall(REQUEST)
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
        connections = server._server.server_state.connections
        protocols = [p for p in connections if isinstance(p, Watched)]
    assert len(seen) == 2, changed(
        f"{base.__name__}.on_response_complete ran {len(seen)} times for 2 responses"
    )
    expected = {"cycle": True, "response_complete": True, "loop": True, "transport": True}
    for state in seen:
        assert state == expected, changed(
            f"{base.__name__} at the end of a response has {state}, not {expected} "
            "(self.cycle.response_complete, self.loop, self.transport)"
        )
    assert protocols, changed("the server no longer makes its connections with the http class")
