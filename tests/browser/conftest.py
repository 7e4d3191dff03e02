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
    LiveServer,
    _require_server_app,
    _require_three,
    page_failing_on_errors,
    refused_socket,
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
    with page_failing_on_errors(chromium, refused_socket, count_gl_uploads=True) as page:
        yield page


@pytest.fixture
def page_asking_for_gone_jobs(chromium):
    """As ``page``, for tests of jobs that are gone on purpose: Chromium's own console line for
    a 404 answer to ``/api/jobs/...`` (the page asking whether a job is still there) is not a
    page error; every other error still fails the test."""

    def excused(message) -> bool:
        gone_job = "status of 404" in message.text and "/api/jobs/" in message.location["url"]
        return gone_job or refused_socket(message)

    with page_failing_on_errors(chromium, excused) as page:
        yield page
