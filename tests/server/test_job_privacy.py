"""Job ids are unguessable, and knowing one is the only way to a job: no route lists jobs, no
message to one client names another's job, and ids that are almost right find nothing."""

from __future__ import annotations

import re
import string

from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.server.jobs import JobManager
from aetherscan.server.storage import Storage

URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def test_job_ids_are_128_random_bits(tmp_path):
    storage = Storage(tmp_path)
    settings = make_settings(tmp_path, max_jobs_per_client=10_000)
    jobs = JobManager(settings, storage, ScriptedEngine())
    ids = [jobs.open_job("client", "rest").id for _ in range(1000)]
    storage.close()
    assert len(set(ids)) == len(ids)
    assert all(len(job_id) == 22 and set(job_id) <= URL_SAFE for job_id in ids)  # 22 x 6 bits
    # Every position takes many values (a counter or a clock would not): 1000 draws from 64.
    for position in range(21):  # the last character carries only 2 of the 128 bits
        assert len({job_id[position] for job_id in ids}) > 55, position


def run_job(server, color) -> tuple[str, list[str]]:
    """A whole WebSocket job; its id and every message the client received, as text."""
    photos = {"a.jpg": photo_bytes(color), "b.jpg": photo_bytes(color)}
    with server.connect() as client:
        client.send({"type": "hello", "features": ["job", "progress", "cameras"]})
        client.receive()
        client.upload(photos)
        client.send({"type": "upload_complete", "count": 2})
        job_id = client.receive_until("reconstruction_complete")[-1]["job_id"]
        client.send({"type": "ping"})
        client.receive()
    return job_id, [m for m in client.raw if isinstance(m, str)]


def test_no_message_or_route_reveals_another_clients_job(tmp_path):
    with RunningServer(make_settings(tmp_path), ScriptedEngine(points_per_view=50)) as server:
        first, first_messages = run_job(server, (200, 0, 0))
        second, second_messages = run_job(server, (0, 200, 0))
        assert not any(first in text for text in second_messages)
        assert not any(second in text for text in first_messages)

        # No route lists jobs: the routes without a job id answer without any id.
        schema = server.http.get("/openapi.json").json()
        open_routes = [path for path in schema["paths"] if "{" not in path]
        assert sorted(open_routes) == ["/api/health", "/api/info", "/api/jobs"]
        assert "get" not in schema["paths"]["/api/jobs"]
        for path in ["/api/health", "/api/info", "/openapi.json", "/", "/docs", "/api/jobs"]:
            body = server.http.get(path).text
            assert first not in body and second not in body, path

        # An id that is almost right finds nothing, and does no harm.
        near_misses = {
            first.swapcase(),
            first[:-1] + ("A" if first[-1] != "A" else "B"),
            first[:21],
            first + "A",
            first.upper(),
            " " + first,
        } - {first}
        for job_id in near_misses:
            for method, path in [("GET", ""), ("GET", "/files/scene.ply"), ("DELETE", "")]:
                reply = server.http.request(method, f"/api/jobs/{job_id}{path}")
                assert reply.status_code == 404, (job_id, method, path)
                assert first not in reply.text
        assert server.http.get(f"/api/jobs/{first}").json()["state"] == "done"


def test_refusals_never_name_other_jobs(tmp_path):
    settings = make_settings(tmp_path, max_jobs_per_client=1)
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as holder:
        holder.send({"type": "hello", "features": ["job"]})
        holder.receive()
        holder.upload({"a.jpg": photo_bytes()})
        (held,) = [p.name for p in (settings.data_dir / "jobs").iterdir()]
        with server.connect() as other:
            refusal = other.upload({"a.jpg": photo_bytes()})[0]
        rest = server.http.post(
            "/api/jobs", files=[("files", ("a.jpg", photo_bytes(), "image/jpeg"))] * 2
        )
        assert rest.status_code == 429
        for text in (refusal["message"], rest.text):
            assert "max_jobs_per_client" in text and held not in text
            assert not re.search(r"[A-Za-z0-9_-]{22}", text)
