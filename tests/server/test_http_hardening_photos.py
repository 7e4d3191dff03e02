"""Photos through the real server: a file that claims more pixels than its bytes hold is refused
at once with its numbers, formats outside the list are refused by what they are (whatever
their name), and max_photo_megapixels is the one pixel limit over the WebSocket and REST, on
both sides of it, above Pillow's own guard (89.5 MP). Refused photos lose nothing received."""

from __future__ import annotations

import io
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from server_kit import RunningServer, ScriptedEngine, data_url, make_settings, photo_bytes

from aetherscan.photos import HEIF_SUPPORTED

GOOD = photo_bytes()
SIX = "JPEG, PNG, WebP, TIFF, BMP or HEIC/HEIF"
PILLOW_DEFAULT = 89_478_485


def black_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG; 90 MP of it compress to about 11 kB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(bytes((1 + (width + 7) // 8) * height), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def lying_jpeg() -> bytes:
    """A real JPEG whose header claims 9000x9000 pixels, cut to 1.5 kB and closed again."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 48), 60).convert("RGB").save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", 9000, 9000)
    return bytes(data[:1500]) + b"\xff\xd9"


def encoded(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (64, 48), (40, 90, 200))
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def image_message(data: bytes, filename: str) -> dict:
    return {"type": "image_data", "data": data_url(data, "image/jpeg"), "filename": filename}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("photos"), max_jobs_per_client=50)
    with RunningServer(settings, ScriptedEngine(points_per_view=50)) as running:
        yield running


def refused_over_the_websocket(server, data: bytes, filename: str) -> str:
    """Send a good photo, the bad one, another good one: the error, and both good ones kept."""
    with server.connect() as client:
        assert client.upload({"before.jpg": GOOD})[0]["status"] == "saved"
        client.send(image_message(data, filename))
        reply = client.receive()
        assert reply["type"] == "error", reply
        assert client.upload({"after.jpg": GOOD})[0]["status"] == "saved"
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0
    return reply["message"]


def refused_over_rest(server, data: bytes, filename: str) -> tuple[int, str]:
    jobs = server.settings.data_dir / "jobs"
    before = set(jobs.iterdir()) if jobs.is_dir() else set()
    files = [("files", ("good.jpg", GOOD, "image/jpeg")), ("files", (filename, data, "image/jpeg"))]
    answer = server.http.post("/api/jobs", files=files)
    assert (set(jobs.iterdir()) if jobs.is_dir() else set()) == before
    return answer.status_code, answer.json()["detail"]


def test_a_jpeg_that_claims_81_mp_in_1500_bytes_is_refused_at_once(server):
    expected = (
        "scan.jpg: the file has 1,502 bytes for 9000x9000 pixels (81.0 MP), 53,928 pixels a "
        "byte, where a JPEG file holds at most 512: it is damaged or truncated"
    )
    started = time.monotonic()
    assert refused_over_the_websocket(server, lying_jpeg(), "scan.jpg") == expected
    assert refused_over_rest(server, lying_jpeg(), "scan.jpg") == (400, expected)
    assert time.monotonic() - started < 10  # two jobs of two photos; no 81 MP decode


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "TGA", "JPEG2000", "AVIF", "PPM"])
def test_formats_outside_the_list_are_refused_by_what_they_are(server, fmt):
    try:
        data = encoded(fmt)
    except (KeyError, OSError) as exc:
        pytest.skip(f"this Pillow cannot write {fmt}: {exc}")
    kind = Image.open(io.BytesIO(data)).format
    expected = f"holiday.jpg: the file is an image in the {kind} format; photos must be {SIX}"
    assert refused_over_the_websocket(server, data, "holiday.jpg") == expected
    assert refused_over_rest(server, data, "holiday.jpg") == (400, expected)


def test_a_supported_photo_under_another_name_is_kept_as_what_it_is(server):
    formats = {"a.gif": encoded("PNG"), "b.txt": encoded("WEBP"), "c.png": encoded("JPEG")}
    formats["d.jpg"] = encoded("MPO", save_all=True, append_images=[Image.new("RGB", (32, 24))])
    if HEIF_SUPPORTED:
        formats["e.jpg"] = encoded("HEIF")
    answer = server.http.post(
        "/api/jobs", files=[("files", (n, d, "image/jpeg")) for n, d in formats.items()]
    )
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["job_id"]
    stored = sorted(
        p.name for p in (server.settings.data_dir / "jobs" / job_id / "photos").iterdir()
    )
    expected = ["0000.png", "0001.webp", "0002.jpg", "0003.jpg"]
    assert stored[:4] == expected  # named by content; a JPEG with pictures (MPO) is a .jpg
    if HEIF_SUPPORTED:
        assert stored[4] == "0004.heic"
    assert server.wait_for_state(job_id)["state"] == "done"


def test_the_pixel_limit_is_the_setting_on_both_sides_above_pillows_guard(server):
    # 90 MP: over Pillow's own guard (89.5 MP), which refused it, blaming the setting (100 MP).
    within = black_png(10000, 9000)
    over = black_png(10000, 10001)  # 100.01 MP
    assert len(within) < 20_000 and len(over) < 20_000
    with server.connect() as client:
        assert client.upload({"within.png": within}) == [
            {"type": "image_received", "status": "saved", "filename": "within.png"}
        ]
        client.send(image_message(over, "over.png"))
        assert client.receive()["message"] == (
            "over.png: the image has 10000x10001 pixels (100 MP), more pixels than the limit of "
            "100 MP (setting max_photo_megapixels)"
        )
        client.send({"type": "cancel"})  # no 90 MP reconstruction: the upload was the test
        assert client.receive()["type"] == "cancelled"
    status, detail = refused_over_rest(server, over, "over.png")
    assert (status, detail) == (
        400,
        "over.png: the image has 10000x10001 pixels (100 MP), more pixels than the limit of "
        "100 MP (setting max_photo_megapixels)",
    )


def test_pillows_guard_follows_the_setting_while_the_server_runs(tmp_path):
    # The engines and exports open accepted photos with Pillow directly.
    pillow_guard = Image.MAX_IMAGE_PIXELS  # Pillow's own, or the module server's 100 MP
    assert pillow_guard in (PILLOW_DEFAULT, 100_000_000)
    settings = make_settings(tmp_path, max_photo_megapixels=200)
    with RunningServer(settings, ScriptedEngine()) as server:
        assert server.http.get("/api/health").status_code == 200
        assert Image.MAX_IMAGE_PIXELS == 200_000_000
    assert pillow_guard == Image.MAX_IMAGE_PIXELS  # as it was


def test_no_refusal_names_a_server_path(server, tmp_path):
    cases = [lying_jpeg(), encoded("GIF"), b"GIF89a" + b"\x00" * 20, encoded("PNG")[:40]]
    for data in cases:
        _, detail = refused_over_rest(server, data, "x.jpg")
        for folder in {str(server.settings.data_dir.resolve()), str(Path(sys.prefix)), "/tmp/"}:
            assert folder not in detail, detail
