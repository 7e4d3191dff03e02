"""What the server asks of browsers: which web pages may use it, and the headers that keep the
viewer and the downloads safe.

A browser sends the requests of any web page it shows to any address, this server on 127.0.0.1
included: without a check, a page on another site could upload photos, read jobs
whose ids it learns and drive the WebSocket (which CORS does not cover) from a visitor's
browser. Browsers name the page's origin in an ``Origin`` header on every cross-origin request,
every POST and DELETE, and every WebSocket handshake, so ``SameOrigin`` refuses a request whose
``Origin`` is neither the server's own nor listed in the setting ``cors_origins``. A request
without ``Origin`` comes from a program (curl, a Python client) or is a plain same-origin GET,
and is served.

The server's own origin is the host that the request was sent to (its ``Host`` header, port
included); behind a reverse proxy that rewrites ``Host``, list the public origin in
``cors_origins``. The check does not stop DNS rebinding (a page whose own name is made to point
at 127.0.0.1 is same-origin by that test); a server reachable by others should sit behind a
proxy that checks ``Host``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)

# The viewer: its scripts and styles are files of its own, besides its inline import map
# (allowed by its hash); photo thumbnails are blob: URLs (a video's frame is drawn from a blob:
# video, media-src), the page's icon a data: URL, and the
# WebSocket and the REST API are the page's own origin ('self' covers ws: and wss: to it).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'{hashes}; style-src 'self'; "
    "img-src 'self' blob: data:; media-src blob:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; "
    "frame-ancestors 'none'"
)
# The API and the downloads are data, never pages: nothing in them may run or load.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
# FastAPI's /docs and /redoc load their scripts from a CDN and run an inline one.
DOCS_POLICY = "frame-ancestors 'none'"
DOCS_PATHS = ("/docs", "/redoc")
DATA_PATHS = ("/api/", "/openapi.json")


def inline_script_hashes(page: Path) -> list[str]:
    """CSP sources ('sha256-...') for the inline scripts of the HTML file ``page``."""
    try:
        html = page.read_bytes()
    except OSError:
        return []
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    ]


def page_policy(index_html: Path) -> str:
    hashes = "".join(" " + source for source in inline_script_hashes(index_html))
    return PAGE_POLICY.format(hashes=hashes)


class SecurityHeaders:
    """Adds to every HTTP response: ``X-Content-Type-Options: nosniff`` (a download is never
    run as what it looks like), ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` (no
    page may frame the viewer to trick clicks), ``Referrer-Policy: no-referrer`` (job ids in
    URLs are secrets), and a Content-Security-Policy: ``page_policy`` for the viewer,
    DATA_POLICY for the API and the downloads."""

    def __init__(self, app: ASGIApp, page_policy: str) -> None:
        self.app, self.page_policy = app, page_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(DATA_PATHS):
            policy = DATA_POLICY
        elif path.startswith(DOCS_PATHS):
            policy = DOCS_POLICY
        else:
            policy = self.page_policy
        added = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", policy.encode()),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in added if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SameOrigin:
    """Refuses (403, with a sentence) HTTP requests and WebSocket handshakes whose ``Origin``
    is another site's, unless ``allowed_origins`` lists it (``*``: any site)."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.any_origin = "*" in allowed_origins
        self.allowed = {_normal(origin) for origin in allowed_origins if origin != "*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is None or self._allows(origin.decode("latin-1"), headers.get(b"host")):
            await self.app(scope, receive, send)
            return
        shown = origin.decode("latin-1")[:200]
        log.info("refused a request from a page of %s (%s)", shown, scope["path"])
        detail = (
            f"this server serves web pages of its own origin only, and the page that sent this "
            f"request is from {shown}; to allow it, add that origin to the setting cors_origins"
        )
        body = json.dumps({"detail": detail}).encode()
        if scope["type"] == "http":
            await _answer(send, "http.response", body)
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await _answer(send, "websocket.http.response", body)
        else:
            await send({"type": "websocket.close", "code": 1008})

    def _allows(self, origin: str, host: bytes | None) -> bool:
        if self.any_origin:
            return True
        page = _normal(origin)
        if page is None:
            return False  # "null" (a sandboxed frame, a file:// page) or nonsense
        if page in self.allowed:
            return True
        own = _host_and_port(host.decode("latin-1")) if host else None
        if own is None:
            return False
        scheme, name, port = page
        return own[0] == name and (own[1] or _DEFAULT_PORTS[scheme]) == port


def _normal(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin such as ``http://127.0.0.1:8000``, or None."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname, port


def _host_and_port(host: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a Host header such as ``127.0.0.1:8000``, or None."""
    try:
        parts = urlsplit("//" + host.strip().lower())
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


async def _answer(send: Send, kind: str, body: bytes) -> None:
    await send(
        {
            "type": f"{kind}.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": f"{kind}.body", "body": body})
