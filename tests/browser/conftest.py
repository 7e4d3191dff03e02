"""Fixtures for the browser tests: the real server in a thread, and headless Chromium.

Chromium is Debian's (``/usr/bin/chromium``, or AETHERSCAN_CHROMIUM), driven by Playwright;
WebGL runs on SwiftShader, so no GPU is needed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from browser_kit import (
    CHROMIUM_ARGS,
    COUNT_GL_UPLOADS,
    LiveServer,
    _require_server_app,
    _require_three,
)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path_factory.mktemp("server-data")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    executable = os.environ.get("AETHERSCAN_CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.skip("no Chromium: install Debian's chromium package or set AETHERSCAN_CHROMIUM")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page that fails the test on any uncaught script error."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(COUNT_GL_UPLOADS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message) -> None:
        # A refused WebSocket is logged by Chromium itself; the page's handling of it is tested.
        if message.type == "error" and "WebSocket connection to" not in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"the page reported errors: {errors}"


@pytest.fixture
def page_asking_for_gone_jobs(chromium):
    """As ``page``, for tests of jobs that are gone on purpose: Chromium's own console line for
    a 404 answer to ``/api/jobs/...`` (the page asking whether a job is still there) is not a
    page error; every other error still fails the test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message) -> None:
        gone_job = "status of 404" in message.text and "/api/jobs/" in message.location["url"]
        refused_socket = "WebSocket connection to" in message.text
        if message.type == "error" and not gone_job and not refused_socket:
            errors.append(f"{message.text} ({message.location['url']})")

    page.on("console", on_console)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"the page reported errors: {errors}"
