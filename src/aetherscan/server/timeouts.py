"""Connections that stall are closed after idle_timeout_s, with a 408 that says why.

uvicorn only times out the silence between two requests of a keep-alive connection, and it
restarts that clock on every byte, so a client that connects and sends nothing, or half a
request head, one byte now and then, would hold its connection for ever (slowloris). The app
cannot see such a connection: ASGI calls it once the head is complete. So two guards:

- ``guard_http_protocol`` wraps uvicorn's HTTP protocol: a request head must be complete within
  the time, counted from the connection (or the end of the previous response);
- ``StalledBodyTimeout``, an ASGI middleware, answers a request whose body stops arriving for
  that long.

A WebSocket, once upgraded, has its own idle timeout (the session's) and protocol pings.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


def _timeout_detail(what: str, timeout_s: float) -> bytes:
    detail = f"{what} did not arrive within {timeout_s:g} s (setting idle_timeout_s)"
    return json.dumps({"detail": detail}).encode()


def guard_http_protocol(
    timeout_s: float, base: type[asyncio.Protocol] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``base``, default its automatic choice) with a deadline
    for each request head; pass it as uvicorn's ``http`` option."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol

    class HeadDeadline(base):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

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
            if self.cycle is not None and not self.cycle.response_complete:
                return  # the head arrived: the app is serving the request
            log.info("closing a connection whose request did not arrive in %g s", timeout_s)
            body = _timeout_detail("the request", timeout_s)
            transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            transport.close()

    HeadDeadline.__name__ = HeadDeadline.__qualname__ = f"HeadDeadline{base.__name__}"
    return HeadDeadline


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
