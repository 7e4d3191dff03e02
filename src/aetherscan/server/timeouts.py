"""Connections that stall are closed after idle_timeout_s with a 408, and request heads too big
to be a real client's are refused with a 431; both with a sentence that says why.

uvicorn only times out the silence between two requests of a keep-alive connection, and it
restarts that clock on every byte, so a client that connects and sends nothing, or half a
request head, one byte now and then, would hold its connection for ever (slowloris). The app
cannot see such a connection: ASGI calls it once the head is complete. Nor can it see a head of
64 MB, which the HTTP parser would read and take apart on the event loop, stalling every other
client for seconds (uvicorn's httptools parser has no size limit at all). So three guards:

- ``guard_http_protocol`` wraps uvicorn's HTTP protocol: a request head must be complete within
  the time, counted from the connection (or the end of the previous response), and must fit in
  ``MAX_HEAD_BYTES`` and ``MAX_HEADERS``; it is refused before the parser sees the excess;
- ``server_config`` (app.py) picks the h11 parser and gives it the same size limit, which also
  holds for a head that a client pipelines behind a request still being served;
- ``StalledBodyTimeout``, an ASGI middleware, answers a request whose body stops arriving for
  that long.

The protocol guard subclasses uvicorn's protocol classes and relies on these parts of them:
``connection_made``, ``data_received``, ``on_response_complete``, ``connection_lost``, and the
attributes ``loop``, ``transport`` and ``cycle`` (with ``cycle.response_complete``).
``tests/server/test_http_hardening_uvicorn.py`` fails with a sentence when a uvicorn release
changes them. A WebSocket, once upgraded, has its own idle timeout (the session's) and pings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 32 * 1024  # the request line and all headers; browsers send about 1 kB
MAX_HEADERS = 100  # Apache's LimitRequestFields
LINGER_S = 1.0  # how long a refused client may go on sending before it is cut off
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after the headers (h11 takes bare LF too)


def _json(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


def _timeout_detail(what: str, timeout_s: float) -> bytes:
    return _json(f"{what} did not arrive within {timeout_s:g} s (setting idle_timeout_s)")


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (status, len(body), body)
    )


def guard_http_protocol(
    timeout_s: float,
    base: type[asyncio.Protocol] | None = None,
    *,
    max_head_bytes: int = MAX_HEAD_BYTES,
    max_headers: int = MAX_HEADERS,
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class ``base`` (default h11's) with a deadline and a size limit
    for each request head; pass it as uvicorn's ``http`` option."""
    if base is None:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol

    class GuardedHead(base):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _head_lines = 0
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # read and dropped until the connection closes (see _refuse)
            if self._reading_head() and not self._head_fits(data):
                self._refuse()
                return
            super().data_received(data)

        def eof_received(self) -> bool | None:
            if self._refused:
                self.transport.close()
                return None
            return super().eof_received()

        def on_response_complete(self) -> None:
            self._head_bytes = self._head_lines = 0
            super().on_response_complete()
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def _reading_head(self) -> bool:
            """Whether the bytes that come next start or continue a request head: no request
            yet, or the last one answered."""
            return self.cycle is None or self.cycle.response_complete

        def _head_fits(self, data: bytes) -> bool:
            """Count the head's part of ``data`` (up to its blank line); False once the head
            has more bytes or lines than allowed."""
            end = _HEAD_END.search(data)
            head = data if end is None else data[: end.start() + 1]
            self._head_bytes += len(head)
            self._head_lines += head.count(b"\n")
            return self._head_bytes <= max_head_bytes and self._head_lines <= max_headers + 1

        def _refuse(self) -> None:
            """Answer 431 and stop parsing. What the client sends meanwhile is read and dropped
            for LINGER_S, so that it can read the answer instead of a connection reset."""
            self._refused = True
            self._stop_timer()
            if self._head_bytes > max_head_bytes:
                what = f"more than {max_head_bytes // 1024} kB of request line and headers"
            else:
                what = f"more than {max_headers} headers"
            log.info("refusing a request with %s", what)
            detail = f"the request has {what}, more than this server reads"
            transport = self.transport
            transport.write(_response(b"431 Request Header Fields Too Large", _json(detail)))
            self.loop.call_later(LINGER_S, transport.close)

        def _await_head(self) -> None:
            self._stop_timer()
            self._head_timer = self.loop.call_later(timeout_s, self._head_overdue)

        def _stop_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_overdue(self) -> None:
            self._head_timer = None
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            if not self._reading_head():
                return  # the head arrived: the app is serving the request
            log.info("closing a connection whose request did not arrive in %g s", timeout_s)
            transport.write(
                _response(b"408 Request Timeout", _timeout_detail("the request", timeout_s))
            )
            transport.close()

    GuardedHead.__name__ = GuardedHead.__qualname__ = f"GuardedHead{base.__name__}"
    return GuardedHead


class StalledBodyTimeout:
    """Answers 408 to a request whose body does not arrive for ``timeout_s``, and closes it."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        response_started = answered = False

        async def timed_receive() -> Message:
            nonlocal body_done, answered
            if body_done:  # e.g. a response that listens for the client going away
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                log.info("a request body stalled for %g s", self.timeout_s)
                if not response_started:
                    answered = True
                    await _send_408(
                        send, _timeout_detail("the rest of the request", self.timeout_s)
                    )
                body_done = True
                return {"type": "http.disconnect"}
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if answered:  # the app's answer to the disconnect it was told of goes nowhere
                return
            response_started = True
            await send(message)

        await self.app(scope, timed_receive, guarded_send)


async def _send_408(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
