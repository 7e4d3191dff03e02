"""Photos are checked the moment they are added, before Start: the same file twice is kept once,
and files the server would refuse (not an image it takes, damaged) are flagged on their
thumbnail with a sentence and left out of the upload, with the count shown."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from browser_kit import HOOK, SHOTS, LiveServer, StagedEngine, _require_server_app, _require_three
from PIL import Image

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    _require_server_app()
    _require_three()
    server = LiveServer(tmp_path / "data", engine=StagedEngine()).start()
    yield server
    server.stop()


def noisy_jpeg(seed: int, size=(320, 240)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def server_answer(server, name: str, data: bytes) -> str:
    """What the server says, to a client of its own, about ``data`` sent as a photo."""
    from websockets.sync.client import connect

    url = f"data:image/jpeg;base64,{base64.b64encode(data).decode()}"
    with connect(server.url.replace("http", "ws") + "/ws") as socket:
        socket.send(json.dumps({"type": "image_data", "data": url, "filename": name}))
        return json.loads(socket.recv(timeout=30)).get("message", "")


def test_photos_are_checked_when_added(page, server, tmp_path):
    good = noisy_jpeg(1)
    files = {
        "a.jpg": good,
        "c.jpg": noisy_jpeg(2),
        "b.jpg": good,  # the same bytes as a.jpg under another name
        "notes.txt": b"shopping list: soil, a bigger pot\n",
        "anim.jpg": b"",  # replaced below by a GIF, named as a JPEG
        "cut.jpg": good[: len(good) // 2],  # cut short in a copy
        "broken.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "empty.jpg": b"",
    }
    gif = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(gif, "GIF")
    files["anim.jpg"] = gif.getvalue()
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))

    page.goto(server.url + "/")
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
    page.set_input_files("#file-input", paths)
    page.wait_for_function(
        "() => document.querySelectorAll('#thumbnails .photo').length === 7 && "
        "!document.querySelector('#thumbnails .photo[data-status=\"checking\"]')"
    )
    # The twin is caught and kept once, with a sentence.
    names = page.locator("#thumbnails .photo-name").all_text_contents()
    assert "b.jpg" not in names and names.count("a.jpg") == 1
    assert "b.jpg is the same photo as a.jpg: kept once." in page.text_content("#messages")

    def reason(name: str) -> str:
        item = page.locator("#thumbnails .photo").filter(
            has=page.locator(".photo-name", has_text=name)
        )
        assert item.get_attribute("data-status") == "excluded", name
        sentence = item.locator(".photo-reason")
        assert sentence.is_visible(), name  # said beside the thumbnail, not only in a tooltip
        return sentence.text_content()

    assert reason("notes.txt").startswith("not an image in a supported format (JPEG, PNG")
    assert reason("anim.jpg") == (
        "the file is an image in the GIF format; photos must be JPEG, PNG, WebP, TIFF, BMP or "
        "HEIC/HEIF"
    )
    assert "ends before the image does" in reason("cut.jpg")
    assert "cannot be read" in reason("broken.png")
    assert reason("empty.jpg") == "the file is empty"
    # The page says what the server would: the same sentence for the same file.
    for name in ("notes.txt", "anim.jpg", "empty.jpg"):
        assert reason(name) in server_answer(server, name, files[name]), name
    for name in ("a.jpg", "c.jpg"):
        item = page.locator("#thumbnails .photo").filter(
            has=page.locator(".photo-name", has_text=name)
        )
        assert item.get_attribute("data-status") == "ready"

    count = page.text_content("#photo-count")
    assert count.startswith("2 photos, 5 left out, "), count
    assert page.text_content("#stage-text") == "Ready: press Start to reconstruct 2 photos."
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "page-photos-checked.png"))

    # Only the two good photos go up; the others never reach the server.
    page.click("#start")
    page.wait_for_function(f"() => ['done', 'failed'].includes({HOOK}.state)")
    assert page.evaluate(f"() => {HOOK}.state") == "done", page.evaluate(f"() => {HOOK}.messages")
    job_id = page.evaluate(f"() => {HOOK}.app.jobId")
    job = json.loads(page.request.get(f"{server.url}/api/jobs/{job_id}").text())
    assert [photo["name"] for photo in job["photos"]] == ["a.jpg", "c.jpg"]
    assert page.locator('#thumbnails .photo[data-status="excluded"]').count() == 5


def test_a_photo_added_again_later_is_caught_and_a_removed_one_can_come_back(
    page, server, tmp_path
):
    path = tmp_path / "first.jpg"
    path.write_bytes(noisy_jpeg(3))
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(path.read_bytes())
    page.goto(server.url + "/")
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")
    page.set_input_files("#file-input", str(path))
    page.wait_for_selector('#thumbnails .photo[data-status="ready"]')
    page.set_input_files("#file-input", str(copy))  # a second pick, later
    page.wait_for_function("() => document.querySelector('#messages').textContent.includes('kept')")
    assert page.locator("#thumbnails .photo").count() == 1
    assert "copy.jpg is the same photo as first.jpg: kept once." in page.text_content("#messages")
    # Removed, the photo may be added again.
    page.click("#thumbnails .photo .remove")
    page.set_input_files("#file-input", str(copy))
    page.wait_for_selector('#thumbnails .photo[data-status="ready"]')
    assert page.locator("#thumbnails .photo-name").all_text_contents() == ["copy.jpg"]


def with_exif_thumbnail(jpeg: bytes) -> bytes:
    """``jpeg`` with a small JPEG inside an APP1 segment, as cameras write their EXIF
    thumbnail: an end marker (FF D9) long before the photo's own."""
    thumbnail = noisy_jpeg(9, size=(32, 24))
    body = b"Exif\x00\x00" + thumbnail
    segment = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    return jpeg[:2] + segment + jpeg[2:]


def test_the_checks_know_the_formats_and_where_a_jpeg_ends(page, server):
    page.goto(server.url + "/")
    page.wait_for_function(f"() => {HOOK} && {HOOK}.state === 'idle'")

    def sniff(data: bytes):
        return page.evaluate(
            "async bytes => (await import('/js/checks.js')).sniffFormat(new Uint8Array(bytes))",
            list(data[:64]),
        )

    def damage(data: bytes):
        return page.evaluate(
            "async bytes => (await import('/js/checks.js')).jpegDamage(new Uint8Array(bytes))",
            list(data),
        )

    def ftyp(brand: bytes, compatible: bytes = b"mif1heic") -> bytes:
        size = 16 + len(compatible)
        return size.to_bytes(4, "big") + b"ftyp" + brand + bytes(4) + compatible + bytes(16)

    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, "WEBP")
    webp = out.getvalue()
    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, "TIFF")
    tiff = out.getvalue()
    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, "BMP")
    bmp = out.getvalue()
    assert sniff(webp) == {"name": "WebP", "taken": True}
    assert sniff(tiff) == {"name": "TIFF", "taken": True}
    assert sniff(b"MM\x00\x2a" + bytes(60)) == {"name": "TIFF", "taken": True}
    assert sniff(bmp) == {"name": "BMP", "taken": True}
    assert sniff(ftyp(b"heic")) == {"name": "HEIC/HEIF", "taken": True}
    assert sniff(ftyp(b"mif1")) == {"name": "HEIC/HEIF", "taken": True}
    assert sniff(ftyp(b"avif")) == {"name": "AVIF", "taken": False}
    assert sniff(ftyp(b"mif1", b"avifmiaf")) == {"name": "AVIF", "taken": False}
    assert sniff(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(40)) == {
        "name": "JPEG2000",
        "taken": False,
    }
    assert sniff(b"P6\n32 32\n255\n" + bytes(40)) == {"name": "PPM", "taken": False}
    assert sniff(b"<html><body>not a photo</body></html>") is None

    photo = with_exif_thumbnail(noisy_jpeg(4))
    assert damage(photo) is None
    # Cut in its data: the thumbnail's end marker does not count.
    assert "ends before the image does" in damage(photo[: len(photo) * 2 // 3])
    # Cut inside its headers.
    assert "ends before the image does" in damage(photo[:40])
    # Data after the end marker (a phone's motion photo: a video after the picture) is fine.
    assert damage(photo + b"\x00\x00\x00\x18ftypmp42" + bytes(2000)) is None
    # A broken structure before the picture.
    assert "damaged" in damage(photo[:2] + b"\x00\x00" + photo[2:])
