"""The FastAPI application: the viewer page at /, the WebSocket at /ws, the REST API under /api.

``create_app(settings)`` builds it; the engine is made once at start-up (lifespan) unless one is
passed in, and one JobManager owns it. ``serve(settings)`` runs it on uvicorn. Requests that
another site's page makes from a visitor's browser are refused, and every answer carries
security headers (aetherscan.server.browsers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from aetherscan import __version__
from aetherscan.engines import create_engine
from aetherscan.engines.base import Engine
from aetherscan.photos import pillow_pixel_limit
from aetherscan.server import routes, ws
from aetherscan.server.browsers import SameOrigin, SecurityHeaders, page_policy
from aetherscan.server.jobs import JobManager
from aetherscan.server.service import Service
from aetherscan.server.storage import TEMP_FOLDER, Storage
from aetherscan.server.timeouts import MAX_HEAD_BYTES, StalledBodyTimeout, guard_http_protocol
from aetherscan.server.uploads import MB
from aetherscan.settings import Settings

log = logging.getLogger(__name__)

# src/aetherscan/server/app.py -> the repository's web/ folder (a source checkout).
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[3] / "web"
MULTIPART_OVERHEAD_BYTES = 1 * MB  # part headers and boundaries around the photos
UPLOAD_FORM = 'send the photos as multipart/form-data, each in a part named "files"'
BAD_MULTIPART = (
    "the upload is not valid multipart/form-data: a part is damaged, or a part's header "
    "(its file name, for example) is longer than 4 kB"
)


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs: JobManager
        if settings.broker_url and engine is None:
            # The workers run the engine (aetherscan.server.queued, docs/scaling.md).
            from aetherscan.server.queued import QueuedJobManager

            storage = Storage(settings.data_dir, jobs_run_elsewhere=True)
            jobs = QueuedJobManager(settings, storage, settings.engine)
            the_engine = jobs.engine
        else:
            the_engine = (
                engine if engine is not None else await asyncio.to_thread(build_engine, settings)
            )
            storage = Storage(settings.data_dir)
            jobs = JobManager(settings, storage, the_engine)
        await jobs.start()
        app.state.service = Service(settings, storage, jobs, the_engine)
        log.info(
            "AetherScan serving with the %s engine%s, data in %s",
            the_engine.name,
            " (run by the workers of the broker)" if settings.broker_url else "",
            settings.data_dir,
        )
        try:
            # The engines and exports open accepted photos with Pillow too: its own guard must
            # not refuse what max_photo_megapixels allows, for as long as the server runs.
            with pillow_pixel_limit(settings.max_photo_megapixels):
                yield
        finally:
            await jobs.stop()
            storage.close()

    app = FastAPI(
        title="AetherScan",
        version=__version__,
        summary="Photos in, a coloured 3D point cloud and camera poses out.",
        lifespan=lifespan,
    )
    app.include_router(routes.router)
    app.include_router(ws.router)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(
        UploadSizeLimit, max_bytes=int(settings.max_job_mb * MB + MULTIPART_OVERHEAD_BYTES)
    )
    app.add_middleware(StalledBodyTimeout, timeout_s=settings.idle_timeout_s)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    # Outermost (added last): a foreign page's request is refused before anything reads it,
    # and every answer, refusals included, carries the security headers.
    app.add_middleware(SameOrigin, allowed_origins=settings.cors_origins)
    web_dir = settings.web_dir or DEFAULT_WEB_DIR
    app.add_middleware(SecurityHeaders, page_policy=page_policy(web_dir / "index.html"))
    _mount_web(app, web_dir)
    return app


def build_engine(settings: Settings) -> Engine:
    return create_engine(settings.engine, **settings.engine_options())


def server_config(app: FastAPI, settings: Settings, **options: object) -> uvicorn.Config:
    """uvicorn's configuration for the app. Messages up to max_message_mb reach the session,
    which refuses them with an error; the WebSocket library closes the connection (code 1009)
    only for messages over twice that, which it will not buffer. A request head that does not
    arrive within idle_timeout_s is answered 408, one over MAX_HEAD_BYTES or MAX_HEADERS 431
    (aetherscan.server.timeouts); the parser is h11, which holds to that size too, where
    httptools reads heads of any size. Behind a reverse proxy listed in forwarded_allow_ips,
    the client is the one its X-Forwarded-For names."""
    options = {
        "host": settings.host,
        "port": settings.port,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "ws_max_size": int(2 * settings.max_message_mb * MB),
        "http": guard_http_protocol(settings.idle_timeout_s),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "log_level": "info",
        **options,
    }
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


def serve(settings: Settings) -> None:
    _use_temp_folder(settings.data_dir / TEMP_FOLDER)
    uvicorn.Server(server_config(create_app(settings), settings)).run()


def _use_temp_folder(folder: Path) -> None:
    """Temporary files of this process and its children (the engine's working folders, uploads
    spooled to disk) go to the data folder's tmp/, which Storage empties at start-up: what a
    killed server was writing does not stay for ever. Only for ``serve``, which owns its
    process; an app made by create_app in another program leaves TMPDIR alone."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(folder.resolve())
    tempfile.tempdir = None  # tempfile reads TMPDIR again on its next use


def _mount_web(app: FastAPI, web_dir: Path) -> None:
    """The viewer at /, three.js (from web/node_modules) at /vendor/three/."""
    three = web_dir / "node_modules" / "three"
    if three.is_dir():
        app.mount("/vendor/three", StaticFiles(directory=three), name="three")
    if (web_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
        return
    log.warning("no viewer at %s (setting web_dir): / shows a note instead", web_dir)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def no_viewer() -> str:
        return (
            "<!doctype html><title>AetherScan</title><h1>AetherScan</h1>"
            f"<p>The viewer's files are not at {web_dir} (setting web_dir). "
            'The API works: see <a href="/docs">/docs</a>.</p>'
        )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 with one sentence in ``detail`` instead of a list of error objects."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(
            str(part) for part in error["loc"] if part not in ("body", "query", "path")
        )
        problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    if any(tuple(error["loc"][:2]) == ("body", "files") for error in exc.errors()):
        problems.append(UPLOAD_FORM)
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own answer, with a sentence for the multipart parser's terse one."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "Invalid multipart data.":
        exc = StarletteHTTPException(400, BAD_MULTIPART)
    return await http_exception_handler(request, exc)  # type: ignore[return-value]


class UploadSizeLimit:
    """Refuses request bodies over max_bytes (setting max_job_mb) before they are read, and
    bodies without a Content-Length, whose size cannot be known in advance."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None or not length.isdigit():
            detail, status = "send the request with a Content-Length header", 411
        elif int(length) > self.max_bytes:
            detail = (
                f"the request has {int(length) / MB:.1f} MB, more than the limit of "
                f"{self.max_bytes / MB:.0f} MB per job (setting max_job_mb)"
            )
            status = 413
        else:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})
