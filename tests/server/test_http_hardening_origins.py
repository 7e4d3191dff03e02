"""Only the server's own web pages, and the origins listed in cors_origins, may use it from a
browser: a request or WebSocket handshake whose Origin names another site is refused with a
sentence, before anything is read or made. Programs that send no Origin are served as before."""

from __future__ import annotations

import json

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes
from websockets.exceptions import InvalidStatus

from aetherscan.server.browsers import SameOrigin

EVIL = "http://evil.example"
FRIEND = "https://viewer.example"
TWO = [
    ("files", ("a.jpg", photo_bytes((200, 30, 30)), "image/jpeg")),
    ("files", ("b.jpg", photo_bytes((30, 200, 30)), "image/jpeg")),
]


def refusal(origin: str) -> str:
    return (
        "this server serves web pages of its own origin only, and the page that sent this "
        f"request is from {origin}; to allow it, add that origin to the setting cors_origins"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RunningServer(make_settings(tmp_path_factory.mktemp("origins")), ScriptedEngine()) as s:
        yield s


@pytest.fixture(scope="module")
def friendly(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("cors"), cors_origins=[FRIEND])
    with RunningServer(settings, ScriptedEngine()) as s:
        yield s


def own_origin(server) -> str:
    return f"http://127.0.0.1:{server.port}"


def jobs_on_disk(server) -> list:
    folder = server.settings.data_dir / "jobs"
    return list(folder.iterdir()) if folder.is_dir() else []


def test_another_sites_page_cannot_upload_or_read(server):
    before = jobs_on_disk(server)
    answer = server.http.post("/api/jobs", files=TWO, headers={"Origin": EVIL})
    assert (answer.status_code, answer.json()["detail"]) == (403, refusal(EVIL))
    assert jobs_on_disk(server) == before  # refused before the upload was read
    made = server.http.post("/api/jobs", files=TWO).json()["job_id"]  # a program, no Origin
    for method, path in [("GET", f"/api/jobs/{made}"), ("DELETE", f"/api/jobs/{made}")]:
        answer = server.http.request(method, path, headers={"Origin": EVIL})
        assert (answer.status_code, answer.json()["detail"]) == (403, refusal(EVIL))
        assert "access-control-allow-origin" not in answer.headers
    assert server.wait_for_state(made)["state"] == "done"  # the DELETE did nothing


def test_another_sites_page_cannot_open_the_websocket(server):
    with pytest.raises(InvalidStatus) as refused:
        server.connect({"Origin": EVIL})
    response = refused.value.response
    assert response.status_code == 403
    assert json.loads(response.body)["detail"] == refusal(EVIL)


@pytest.mark.parametrize("origin", ["null", "file://", "http://127.0.0.1:1", "http://127.0.0.1"])
def test_pages_of_no_origin_or_of_another_port_are_refused(server, origin):
    answer = server.http.get("/api/info", headers={"Origin": origin})
    assert (answer.status_code, answer.json()["detail"]) == (403, refusal(origin))


def test_the_scheme_alone_does_not_make_a_page_foreign(server):
    # A TLS proxy in front of the server forwards https pages' requests over http: the host
    # and port are the server's own, which no other site's page can be.
    origin = f"https://127.0.0.1:{server.port}"
    assert server.http.get("/api/info", headers={"Origin": origin}).status_code == 200


def test_the_servers_own_page_and_programs_are_served(server):
    for headers in ({"Origin": own_origin(server)}, {}):
        made = server.http.post("/api/jobs", files=TWO, headers=headers)
        assert made.status_code == 201, made.text
        assert server.wait_for_state(made.json()["job_id"])["state"] == "done"
        with server.connect(headers) as client:
            client.send({"type": "ping"})
            assert client.receive() == {"type": "pong"}


def test_origins_in_cors_origins_may_use_the_api_and_the_websocket(friendly):
    answer = friendly.http.post("/api/jobs", files=TWO, headers={"Origin": FRIEND})
    assert answer.status_code == 201
    assert answer.headers["access-control-allow-origin"] == FRIEND
    preflight = friendly.http.options(
        "/api/jobs/x",
        headers={"Origin": FRIEND, "Access-Control-Request-Method": "DELETE"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == FRIEND
    with friendly.connect({"Origin": FRIEND}) as client:
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}
    answer = friendly.http.get("/api/info", headers={"Origin": EVIL})  # others still not
    assert (answer.status_code, answer.json()["detail"]) == (403, refusal(EVIL))
    with pytest.raises(InvalidStatus):
        friendly.connect({"Origin": EVIL})


def test_any_origin_when_cors_origins_has_a_star(tmp_path):
    settings = make_settings(tmp_path, cors_origins=["*"])
    with RunningServer(settings, ScriptedEngine()) as server:
        assert server.http.get("/api/info", headers={"Origin": EVIL}).status_code == 200
        with server.connect({"Origin": EVIL}) as client:
            client.send({"type": "ping"})
            assert client.receive() == {"type": "pong"}


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://localhost", "localhost", True),  # default ports on both sides
        ("http://localhost:80", "localhost", True),
        ("http://localhost", "localhost:80", True),
        ("https://scan.example", "scan.example", True),
        ("https://scan.example", "scan.example:443", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("HTTP://LocalHost:8000", "localhost:8000", True),
        ("http://localhost:8001", "localhost:8000", False),
        ("http://localhost.evil.example", "localhost", False),
        ("http://localhost", "", False),
        ("http://a:b:c", "a", False),
        ("ftp://localhost", "localhost", False),
    ],
)
def test_what_counts_as_the_servers_own_origin(origin, host, allowed):
    guard = SameOrigin(app=None, allowed_origins=[])  # type: ignore[arg-type]
    assert guard._allows(origin, host.encode() or None) is allowed
