"""Limits per client count by the peer's address, or, behind a reverse proxy listed in the
setting forwarded_allow_ips, by the address that the proxy's X-Forwarded-For names."""

from __future__ import annotations

import pytest
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes


def _open_one_job(server: RunningServer, forwarded_for: str):
    client = server.connect({"X-Forwarded-For": forwarded_for})
    client.send({"type": "hello", "features": ["job"]})
    client.receive()
    (reply,) = client.upload({"a.jpg": photo_bytes()})  # the job stays open for more photos
    return client, reply


@pytest.mark.parametrize(
    ("trusted_proxies", "counted_apart"),
    [("127.0.0.1", True), ("*", True), ("10.0.0.1", False), ("", False)],
    ids=["proxy-trusted", "all-trusted", "other-proxy-trusted", "none-trusted"],
)
def test_clients_behind_a_trusted_proxy_are_counted_apart(
    tmp_path, trusted_proxies: str, counted_apart: bool
):
    settings = make_settings(tmp_path, max_jobs_per_client=1, forwarded_allow_ips=trusted_proxies)
    with RunningServer(settings, ScriptedEngine()) as server:
        first, first_reply = _open_one_job(server, "203.0.113.7")
        second, second_reply = _open_one_job(server, "203.0.113.8")
        rest = server.http.post(
            "/api/jobs",
            files=[("files", ("a.jpg", photo_bytes(), "image/jpeg"))] * 2,
            headers={"X-Forwarded-For": "203.0.113.7"},  # the first client again
        )
        first.close()
        second.close()
    assert "max_jobs_per_client" not in str(first_reply)
    # From the server's view all three come from 127.0.0.1; only a trusted proxy's header splits.
    assert ("max_jobs_per_client" in str(second_reply)) is not counted_apart
    assert rest.status_code == 429 and "max_jobs_per_client" in rest.text
