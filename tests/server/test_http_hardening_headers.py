"""Every answer carries security headers: the viewer page a Content-Security-Policy that allows
exactly what it uses (its own files, its inline import map by hash, blob: thumbnails, its own
WebSocket), the API and the downloads one under which nothing can run; all of them nosniff, no
framing, no referrer. (That the viewer works under its policy is for the browser tests, whose
pages fail on any console error, CSP violations included.)"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.server.app import DEFAULT_WEB_DIR

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
TWO = [
    ("files", ("a.jpg", photo_bytes((200, 30, 30)), "image/jpeg")),
    ("files", ("b.jpg", photo_bytes((30, 200, 30)), "image/jpeg")),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (DEFAULT_WEB_DIR / "index.html").is_file():
        pytest.skip("no viewer in web/")
    settings = make_settings(tmp_path_factory.mktemp("headers"), web_dir=DEFAULT_WEB_DIR)
    with RunningServer(settings, ScriptedEngine()) as s:
        yield s


def policy(answer) -> dict[str, str]:
    directives = [part.strip() for part in answer.headers["content-security-policy"].split(";")]
    return {name: value for name, _, value in (d.partition(" ") for d in directives)}


def assert_common(answer) -> None:
    assert {name: answer.headers.get(name) for name in COMMON} == COMMON, answer.url


def test_the_viewer_page_allows_what_it_uses_and_nothing_else(server):
    page = server.http.get("/")
    assert page.status_code == 200
    assert_common(page)
    inline = re.findall(r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1  # the import map
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy(page) == {
        "default-src": "'none'",
        "script-src": f"'self' 'sha256-{digest}'",
        "style-src": "'self'",
        "img-src": "'self' blob: data:",
        "media-src": "blob:",  # a video's frame, drawn from the file the person picked
        "connect-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    for path in ("/js/main.js", "/css/viewer.css", "/vendor/three/build/three.module.js"):
        answer = server.http.get(path)
        assert answer.status_code == 200, path
        assert_common(answer)


def test_the_api_and_the_downloads_are_data_that_cannot_run(server):
    made = server.http.post("/api/jobs", files=TWO).json()["job_id"]
    status = server.wait_for_state(made)
    assert status["state"] == "done"
    answers = [
        server.http.get("/api/info"),
        server.http.get(f"/api/jobs/{made}"),
        server.http.get("/api/jobs/no-such-job"),  # errors too
        server.http.get("/openapi.json"),
        *(server.http.get(url) for url in status["downloads"].values()),
    ]
    for answer in answers:
        assert_common(answer)
        assert answer.headers["content-security-policy"] == DATA_POLICY, answer.url


def test_refusals_before_the_app_carry_the_headers_too(server):
    refused = server.http.get("/api/info", headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    assert_common(refused)
    assert refused.headers["content-security-policy"] == DATA_POLICY


def test_the_api_docs_may_not_be_framed(server):
    docs = server.http.get("/docs")
    assert docs.status_code == 200
    assert_common(docs)
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_a_server_without_the_viewer_still_sends_them(tmp_path):
    with RunningServer(make_settings(tmp_path), ScriptedEngine()) as server:
        note = server.http.get("/")
        assert_common(note)
        assert "script-src 'self';" in note.headers["content-security-policy"]
