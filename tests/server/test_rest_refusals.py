"""Bad input over REST: each is answered with an HTTP status and a sentence in ``detail`` that
tells a person what was wrong, leaves nothing behind, and the server goes on serving others
(a health check and a WebSocket ping after each). Odd but valid photos work over REST too."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image
from server_kit import (
    RunningServer,
    ScriptedEngine,
    make_settings,
    noise_png,
    odd_but_valid_photos,
    photo_bytes,
    png,
)

GOOD = photo_bytes()
MAX_PHOTOS = 4


def files(*photos: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in photos]


def with_good(*photos: tuple[str, bytes]) -> list:
    return files(("good.jpg", GOOD), *photos)


@pytest.fixture(scope="module")
def gate() -> threading.Event:
    return threading.Event()


@pytest.fixture(scope="module")
def server(tmp_path_factory, gate):
    settings = make_settings(
        tmp_path_factory.mktemp("rest-refusals"),
        max_photo_mb=0.2,
        max_job_mb=0.5,
        max_photos_per_job=MAX_PHOTOS,
        max_jobs_per_client=50,
    )
    engine = ScriptedEngine(points_per_view=50)
    with RunningServer(settings, engine) as running:
        yield running
        gate.set()


def job_folders(server) -> set[str]:
    return {p.name for p in (server.settings.data_dir / "jobs").iterdir()}


def assert_serving(server) -> None:
    assert server.http.get("/api/health").json() == {"status": "ok"}
    with server.connect() as client:
        client.send({"type": "ping"})
        assert client.receive() == {"type": "pong"}


def truncated_jpeg() -> bytes:
    big = photo_bytes(size=(200, 150))
    return big[: len(big) // 2]


FORM = 'files: Field required; send the photos as multipart/form-data, each in a part named "files"'
FORM_TYPE = "multipart/form-data; boundary=b"

# (request keyword arguments for POST /api/jobs, status, words the detail must contain)
BAD_CREATES = {
    "multipart with no files": ({"data": {"x": "1"}}, 422, FORM),
    "json instead of multipart": ({"json": {"files": []}}, 422, FORM),
    "files under another field name": (
        {"files": [("photos", ("a.jpg", GOOD, "image/jpeg"))]},
        422,
        FORM,
    ),
    "files as a text field": ({"data": {"files": "a.jpg"}}, 422, "Expected UploadFile"),
    "damaged multipart": (
        {"content": b"--b\r\nno headers end", "headers": {"content-type": FORM_TYPE}},
        400,
        "the upload is not valid multipart/form-data",
    ),
    "multipart without a boundary": (
        {"content": b"abc", "headers": {"content-type": "multipart/form-data"}},
        400,
        "Missing boundary",
    ),
    "one photo": ({"files": files(("a.jpg", GOOD))}, 400, "at least 2 photos; 1 received"),
    "a text file": ({"files": with_good(("notes.txt", b"hello"))}, 400, "notes.txt: not an image"),
    "an html file": (
        {"files": with_good(("page.jpg", b"<html><body>hi</body></html>"))},
        400,
        "page.jpg: not an image",
    ),
    "an empty file": ({"files": with_good(("empty.jpg", b""))}, 400, "the file is empty"),
    "a truncated jpeg": (
        {"files": with_good(("cut.jpg", truncated_jpeg()))},
        400,
        "cut.jpg: the image cannot be read (Truncated File Read)",
    ),
    "a zero-pixel image": ({"files": with_good(("zero.png", png(0, 0)))}, 400, "zero.png: "),
    "a 1x1 image": ({"files": with_good(("dot.jpg", photo_bytes(size=(1, 1))))}, 400, "1x1"),
    "a huge declared image": (
        {"files": with_good(("huge.png", png(20000, 20000)))},
        400,
        "huge.png: the image has more pixels than the limit of 100 MP "
        "(setting max_photo_megapixels)",
    ),
    "a decompression bomb": (
        {"files": with_good(("bomb.png", png(12000, 9000, 1, 0, bytes(1501 * 9000))))},
        400,
        "(setting max_photo_megapixels)",
    ),
    "too many files": (
        {"files": files(*[(f"{i}.jpg", GOOD) for i in range(MAX_PHOTOS + 1)])},
        413,
        f"the job already has {MAX_PHOTOS} photos, the limit (setting max_photos_per_job)",
    ),
    "more files than a form may hold": (
        {"files": files(*[(f"{i}.jpg", b"x") for i in range(1001)])},
        400,
        "Too many files",
    ),
    "a photo over max_photo_mb": (
        {"files": with_good(("noise.png", noise_png(300)))},
        413,
        "noise.png: the photo has 0.3 MB, more than the limit of 0.2 MB per photo "
        "(setting max_photo_mb)",
    ),
    "photos over max_job_mb together": (
        {"files": files(*[(f"n{i}.png", noise_png(220)) for i in range(MAX_PHOTOS)])},
        413,
        "more than the limit of 0.5 MB per job (setting max_job_mb)",
    ),
    "a request over max_job_mb": (
        {"content": b"x" * 2_000_000, "headers": {"content-type": "multipart/form-data"}},
        413,
        "the request has 1.9 MB, more than the limit of 2 MB per job (setting max_job_mb)",
    ),
    "no content-length": ({"content": iter([b"--x\r\n"])}, 411, "Content-Length"),
}


@pytest.mark.parametrize("case", list(BAD_CREATES))
def test_a_bad_upload_is_refused_with_a_sentence(server, case):
    request, status, words = BAD_CREATES[case]
    before = job_folders(server)
    reply = server.http.post("/api/jobs", **request)
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail
    assert job_folders(server) == before, "a refused upload leaves nothing behind"
    assert_serving(server)


def create(server, *photos: tuple[str, bytes]) -> dict:
    reply = server.http.post("/api/jobs", files=files(*photos))
    assert reply.status_code == 201, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def done_job(server) -> str:
    job_id = create(server, ("a.jpg", GOOD), ("b.jpg", GOOD))["job_id"]
    assert server.wait_for_state(job_id)["state"] == "done"
    return job_id


NOT_FOUND = "there is no job with this id (it may have expired or been deleted)"
MALFORMED_IDS = {
    "unknown id of the right form": "A" * 22,
    "too short": "nope",
    "nul byte": "abc%00defghijklmnopqrs",
    "dots": "." * 22,
    "10 kB": "a" * 10_000,
    "unicode": "%C3%A9" * 20,
}


@pytest.mark.parametrize("case", list(MALFORMED_IDS))
def test_unknown_and_malformed_job_ids_are_404_for_every_route(server, case):
    job_id = MALFORMED_IDS[case]
    for method, path in [
        ("GET", ""),
        ("GET", "/files/scene.ply"),
        ("GET", "/points"),
        ("DELETE", ""),
    ]:
        reply = server.http.request(method, f"/api/jobs/{job_id}{path}")
        assert reply.status_code == 404 and reply.json()["detail"] == NOT_FOUND, (method, path)
    assert_serving(server)


@pytest.mark.parametrize("path", ["..%2F..%2Findex.sqlite3", "..%2F..%2Fjobs", "%2E%2E"])
def test_a_job_id_that_is_a_path_reaches_no_file(server, done_job, path):
    for suffix in ("", "/files/scene.ply"):
        reply = server.http.get(f"/api/jobs/{path}{suffix}")
        assert reply.status_code == 404 and reply.json()["detail"] in (NOT_FOUND, "Not Found")
        assert b"SQLite" not in reply.content
    assert_serving(server)


def test_deleting_twice(server):
    job_id = create(server, ("a.jpg", GOOD), ("b.jpg", GOOD))["job_id"]
    server.wait_for_state(job_id)
    assert server.http.delete(f"/api/jobs/{job_id}").status_code == 204
    again = server.http.delete(f"/api/jobs/{job_id}")
    assert again.status_code == 404 and again.json()["detail"] == NOT_FOUND
    assert job_id not in job_folders(server)
    assert_serving(server)


@pytest.mark.parametrize(
    "file_name", ["nothing.txt", "reconstruction.npz", "formats.txt", "x" * 5000]
)
def test_downloading_a_file_that_is_not_a_download(server, done_job, file_name):
    reply = server.http.get(f"/api/jobs/{done_job}/files/{file_name}")
    assert reply.status_code == 404
    detail = reply.json()["detail"]
    assert detail.startswith("no file ") and "the files are: " in detail and "scene.ply" in detail
    assert len(detail) < 400
    assert_serving(server)


def test_downloading_through_a_path_reaches_no_file(server, done_job):
    for name in ("..%2F..%2Findex.sqlite3", "..%2Fphotos%2F0000.jpg", "%2Fetc%2Fpasswd"):
        reply = server.http.get(f"/api/jobs/{done_job}/files/{name}")
        assert reply.status_code == 404, name
        assert b"SQLite" not in reply.content and b"root:" not in reply.content
    assert_serving(server)


def test_downloading_before_the_job_is_done(tmp_path):
    gate = threading.Event()
    with RunningServer(make_settings(tmp_path), ScriptedEngine(gate=gate)) as server:
        running = create(server, ("a.jpg", GOOD), ("b.jpg", GOOD))["job_id"]
        queued = create(server, ("a.jpg", GOOD), ("b.jpg", GOOD))["job_id"]
        while server.http.get(f"/api/jobs/{running}").json()["state"] != "running":
            time.sleep(0.01)
        for job_id, state in ((running, "running"), (queued, "queued")):
            for path in ("/files/scene.ply", "/files/cameras.json", "/points"):
                reply = server.http.get(f"/api/jobs/{job_id}{path}")
                assert reply.status_code == 409
                assert reply.json()["detail"] == f"the job has no results: it is {state}"
        assert_serving(server)
        gate.set()
        assert server.wait_for_state(queued)["state"] == "done"


def test_downloading_from_a_failed_job_says_why(server):
    job_id = create(server, ("a.jpg", GOOD), ("fail.jpg", GOOD))["job_id"]
    assert server.wait_for_state(job_id)["state"] == "failed"
    reply = server.http.get(f"/api/jobs/{job_id}/files/scene.ply")
    assert reply.status_code == 409
    assert reply.json()["detail"] == (
        "the job has no results: it is failed (fail.jpg was scripted to fail)"
    )
    assert_serving(server)


@pytest.mark.parametrize(
    "method, path, status, words",
    [
        ("GET", "/api/jobs", 405, "Method Not Allowed"),  # no route lists jobs
        ("PUT", "/api/jobs/{id}", 405, "Method Not Allowed"),
        ("POST", "/api/jobs/{id}", 405, "Method Not Allowed"),
        ("GET", "/api/jobs/{id}/points?format=json", 422, "format: Input should be 'binary'"),
        ("GET", "/api/nothing", 404, "Not Found"),
    ],
)
def test_wrong_routes_and_parameters(server, done_job, method, path, status, words):
    reply = server.http.request(method, path.replace("{id}", done_job), content=b"")
    assert reply.status_code == status and words in reply.json()["detail"]
    assert_serving(server)


FILENAMES = {
    "../../etc/passwd": "passwd",
    "/etc/shadow": "shadow",
    "C:\\Windows\\win.ini": "win.ini",
    "nul\x00byte.jpg": "nulbyte.jpg",
    "bell\x07tab\t.jpg": "belltab.jpg",
    "x" * 4000 + ".jpg": "x" * 116 + ".jpg",
}


def multipart(photos: list[tuple[str, bytes]]) -> tuple[bytes, dict]:
    """A multipart body written by hand: httpx would percent-encode control characters."""
    boundary = b"b0undary"
    body = b""
    for name, data in photos:
        body += (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; '
            b'filename="' + name.encode() + b'"\r\nContent-Type: image/jpeg\r\n\r\n'
        )
        body += data + b"\r\n"
    body += b"--" + boundary + b"--\r\n"
    return body, {"content-type": "multipart/form-data; boundary=b0undary"}


def test_filenames_over_rest_are_labels_and_never_paths(server):
    for names in (list(FILENAMES)[:3], list(FILENAMES)[3:]):
        photos = [(name, photo_bytes((50 * i, 0, 0))) for i, name in enumerate(names)]
        body, headers = multipart(photos)
        reply = server.http.post("/api/jobs", content=body, headers=headers)
        assert reply.status_code == 201, reply.text
        job = reply.json()
        expected = [FILENAMES.get(name, name) for name in names]
        assert [p["name"] for p in job["photos"]] == expected
        server.wait_for_state(job["job_id"])
        folder = server.settings.data_dir / "jobs" / job["job_id"] / "photos"
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{i:04d}.jpg" for i in range(len(names))
        ]
    assert not (server.settings.data_dir.parent / "etc").exists()
    assert_serving(server)


def test_a_10kb_filename_over_rest_is_refused_with_a_sentence(server):
    """The multipart parser takes part headers up to 4 kB; the WebSocket takes any name."""
    before = job_folders(server)
    body, headers = multipart([("x" * 10_000 + ".jpg", GOOD), ("b.jpg", GOOD)])
    reply = server.http.post("/api/jobs", content=body, headers=headers)
    assert reply.status_code == 400
    assert "longer than 4 kB" in reply.json()["detail"]
    assert job_folders(server) == before
    assert_serving(server)


def test_odd_but_valid_photos_work_over_rest(tmp_path):
    photos = odd_but_valid_photos()
    settings = make_settings(tmp_path, max_photos_per_job=len(photos))
    with RunningServer(settings, ScriptedEngine(points_per_view=50)) as server:
        job = create(server, *photos.items())
        status = server.wait_for_state(job["job_id"])
    assert status["state"] == "done", status["error"]
    assert [v["name"] for v in status["views"]] == list(photos)


def test_an_exif_rotated_photo_is_upright_over_rest(server):
    photo = Image.new("RGB", (64, 48), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    job = create(server, ("rotated.jpg", buffer.getvalue()), ("plain.jpg", GOOD))
    thumbnail = job["photos"][0].pop("thumbnail")
    assert job["photos"][0] == {"name": "rotated.jpg", "width": 48, "height": 64, "mask": False}
    with Image.open(io.BytesIO(server.http.get(thumbnail).content)) as small:
        assert small.size == (48, 64)  # upright too
    status = server.wait_for_state(job["job_id"])
    assert status["views"][0] == {"name": "rotated.jpg", "width": 48, "height": 64}
    cameras = server.http.get(status["downloads"]["cameras"]).json()["cameras"]
    assert (cameras[0]["width"], cameras[0]["height"]) == (48, 64)
