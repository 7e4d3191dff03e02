"""GET /api/jobs/{id}/photos/{index}/thumbnail: a small upright JPEG without metadata, made once
and kept beside the photo; its URL in the status's photos, null once the photos are gone."""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image, ImageCms
from server_kit import RunningServer, ScriptedEngine, make_settings, photo_bytes

from aetherscan.export.metadata import EXIF_GPS_IFD

DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def phone_photo() -> bytes:
    """A 600x400 JPEG stored sideways (EXIF orientation 6: shown 400x600), left half red, with
    GPS, a camera model, XMP and a colour profile: what a phone writes."""
    pixels = np.zeros((400, 600, 3), np.uint8)
    pixels[:, :300] = (220, 20, 20)
    pixels[:, 300:] = (20, 20, 220)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "PhonePhone 9"
    exif[EXIF_GPS_IFD] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    buffer = io.BytesIO()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><photoshop:City>Paris</photoshop:City></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes(), xmp=xmp, icc_profile=icc)
    return buffer.getvalue()


def upload(server: RunningServer, photos: dict[str, bytes]) -> str:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    created = server.http.post("/api/jobs", files=files)
    assert created.status_code == 201, created.text
    return created.json()["job_id"]


def test_a_thumbnail_is_small_upright_and_tells_nothing_of_where(server):
    photo = Image.open(io.BytesIO(phone_photo()))
    assert photo.getexif().get_ifd(EXIF_GPS_IFD) and {"icc_profile", "xmp"} <= photo.info.keys()
    job_id = upload(server, {"phone.jpg": phone_photo(), "plain.jpg": photo_bytes(size=(64, 48))})
    status = server.wait_for_state(job_id)
    urls = [photo["thumbnail"] for photo in status["photos"]]
    assert urls == [f"/api/jobs/{job_id}/photos/{i}/thumbnail" for i in range(2)]

    answer = server.http.get(urls[0])
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["content-security-policy"] == DATA_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(answer.content))
    assert image.format == "JPEG" and image.size == (171, 256)  # 400x600 upright, long side 256
    # Turned upright: the photo's left half (red) is now its top.
    pixels = np.asarray(image.convert("RGB"), float)
    assert pixels[:100, :, 0].mean() > 150 > pixels[:100, :, 2].mean()
    assert pixels[-100:, :, 2].mean() > 150 > pixels[-100:, :, 0].mean()
    assert not image.getexif() and "exif" not in image.info
    assert not {"icc_profile", "xmp", "XML:com.adobe.xmp"} & image.info.keys()
    assert b"Paris" not in answer.content and b"Phone" not in answer.content

    small = Image.open(io.BytesIO(server.http.get(urls[1]).content))
    assert small.size == (64, 48)  # never made larger


def test_a_thumbnail_is_made_once_then_served_from_disk(server):
    job_id = upload(server, {"a.jpg": photo_bytes(), "b.jpg": photo_bytes((30, 200, 30))})
    status = server.wait_for_state(job_id)
    url = status["photos"][1]["thumbnail"]
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(server.http.get(url))) for _ in "abcd"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    stored = server.settings.data_dir / "jobs" / job_id / "photos" / "0001-thumbnail.jpg"
    assert stored.read_bytes() == answers[0].content
    assert not list(stored.parent.glob("*.part"))
    stored.write_bytes(answers[0].content + b"kept")  # served as it is on disk
    assert server.http.get(url).content.endswith(b"kept")


def test_bad_indexes_and_gone_photos_are_404_with_a_sentence(tmp_path):
    with RunningServer(make_settings(tmp_path / "data"), ScriptedEngine()) as server:
        job_id = upload(server, {"a.jpg": photo_bytes(), "b.jpg": photo_bytes((30, 200, 30))})
        server.wait_for_state(job_id)
        for index in ("2", "-1", "x", "1.0", "١"):
            answer = server.http.get(f"/api/jobs/{job_id}/photos/{index}/thumbnail")
            assert answer.status_code == 404, index
            assert "the job has no photo" in answer.json()["detail"]
            assert "its 2 photos are numbered from 0" in answer.json()["detail"]
        unknown = server.http.get("/api/jobs/no-such-job-000000000/photos/0/thumbnail")
        assert unknown.status_code == 404 and "no job with this id" in unknown.json()["detail"]

        # A failed job's photos are removed when it ends: no thumbnails, and the status says so.
        failed = upload(server, {"fail.jpg": photo_bytes(), "b.jpg": photo_bytes((30, 200, 30))})
        status = server.wait_for_state(failed)
        assert status["state"] == "failed"
        assert [photo["thumbnail"] for photo in status["photos"]] == [None, None]
        gone = server.http.get(f"/api/jobs/{failed}/photos/0/thumbnail")
        assert gone.status_code == 404 and "photos of this job are gone" in gone.json()["detail"]


def test_the_thumbnail_goes_with_its_job(server):
    job_id = upload(server, {"a.jpg": photo_bytes(), "b.jpg": photo_bytes((30, 200, 30))})
    status = server.wait_for_state(job_id)
    assert server.http.get(status["photos"][0]["thumbnail"]).status_code == 200
    assert server.http.delete(f"/api/jobs/{job_id}").status_code == 204
    assert server.http.get(status["photos"][0]["thumbnail"]).status_code == 404
