"""Masks sent with photos, over the WebSocket (extension 'masks': mask_data after the photo) and
REST (multipart field ``masks``, each named after its photo): stored beside the photos, handed to
the engine with them, and refused with a sentence naming the photo when they do not fit it,
without losing what was received."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from server_kit import (
    RunningServer,
    ScriptedEngine,
    data_url,
    make_settings,
    mask_bytes,
    photo_bytes,
)

MASKS = {"type": "hello", "features": ["masks", "job", "quality"]}
PHOTOS = {"a.jpg": photo_bytes((200, 30, 30)), "b.jpg": photo_bytes((30, 200, 30))}


def hello(client, message=MASKS) -> dict:
    client.send(message)
    return client.receive()


def files(photos: dict[str, bytes], masks: dict[str, bytes] | None = None) -> list:
    fields = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    fields += [("masks", (name, data, "image/png")) for name, data in (masks or {}).items()]
    return fields


def job_files(server, job_id: str) -> list[str]:
    return sorted(p.name for p in (server.settings.data_dir / "jobs" / job_id / "photos").iterdir())


def rotated_photo() -> bytes:
    """A 64x48 photo stored with EXIF orientation 6: shown upright it is 48x64."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 90, 200)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


# WebSocket ----------------------------------------------------------------------------------


def test_a_mask_after_its_photo_goes_to_the_engine_with_it(server, engine):
    mask = mask_bytes()
    with server.connect() as client:
        assert "masks" in hello(client)["features"]
        client.upload({"a.jpg": PHOTOS["a.jpg"]})
        assert client.send_mask("a.jpg", mask) == {
            "type": "mask_received",
            "status": "saved",
            "photo": "a.jpg",
        }
        client.upload({"b.jpg": PHOTOS["b.jpg"]})  # no mask: the whole photo
        client.send({"type": "upload_complete", "count": 2})
        complete = client.receive_until("reconstruction_complete")[-1]
    assert engine.masks[-1] == {"a.jpg": mask, "b.jpg": None}
    assert complete["masks"] == "given"
    status = server.http.get(f"/api/jobs/{complete['job_id']}").json()
    assert [(p["name"], p["mask"]) for p in status["photos"]] == [("a.jpg", True), ("b.jpg", False)]
    assert job_files(server, complete["job_id"]) == ["0000-mask.png", "0000.jpg", "0001.jpg"]


def test_a_second_mask_of_a_photo_replaces_the_first(server, engine):
    first, second = mask_bytes(subject=(0, 0, 8, 8)), mask_bytes(fmt="BMP")
    with server.connect() as client:
        hello(client)
        client.upload(PHOTOS)
        assert client.send_mask("b.jpg", first)["type"] == "mask_received"
        assert client.send_mask("b.jpg", second)["type"] == "mask_received"
        client.send({"type": "upload_complete", "count": 2})
        job_id = client.receive_until("reconstruction_complete")[-1]["job_id"]
    assert engine.masks[-1] == {"a.jpg": None, "b.jpg": second}
    assert job_files(server, job_id) == ["0000.jpg", "0001-mask.bmp", "0001.jpg"]


def test_mask_data_is_an_extension_that_needs_hello(server, engine):
    with server.connect() as client:
        client.upload(PHOTOS)
        client.send({"type": "mask_data", "photo": "a.jpg", "data": data_url(mask_bytes())})
        error = client.receive()
        assert list(error) == ["type", "message"]  # a client without hello gets the contract
        assert "mask_data is an extension" in error["message"] and '"masks"' in error["message"]
        client.send({"type": "upload_complete", "count": 2})  # the photos are still there
        assert client.receive_until("reconstruction_complete")[-1]["total_points"] > 0
    assert engine.masks[-1] == {"a.jpg": None, "b.jpg": None}


@pytest.mark.parametrize(
    ("photo", "data", "expected"),
    [
        ("a.jpg", data_url(mask_bytes((48, 64), subject=(0, 0, 9, 9))), "a.jpg: its mask is 48x64 pixels but the photo is 64x48"),
        ("a.jpg", data_url(b"GIF87a not really"), "a.jpg: its mask cannot be used: not an image"),
        ("a.jpg", data_url(mask_bytes()[:70]), "a.jpg: its mask cannot be used: the image data is damaged"),
        ("a.jpg", data_url(mask_bytes(subject=(0, 0, 0, 0))), "a.jpg: its mask is black everywhere"),
        ("a.jpg", "iVBORw0KGgo=", 'a.jpg (its mask): "data" is not a base64 data URL'),
        ("c.jpg", data_url(mask_bytes()), "c.jpg: no photo of this upload has that name"),
    ],
    ids=["wrong-size", "not-an-image", "truncated", "all-black", "not-a-data-url", "no-such-photo"],
)  # fmt: skip
def test_a_bad_mask_is_refused_naming_the_photo_and_nothing_is_lost(
    server, engine, photo, data, expected
):
    with server.connect() as client:
        hello(client)
        client.upload(PHOTOS)
        client.send({"type": "mask_data", "photo": photo, "data": data})
        error = client.receive()
        assert error["type"] == "error" and error["code"] == "bad_mask", error
        assert error["message"].startswith(expected), error["message"]
        # The photos stay, and a good mask can still follow.
        assert client.send_mask("a.jpg", mask_bytes())["type"] == "mask_received"
        client.send({"type": "upload_complete", "count": 2})
        assert client.receive_until("reconstruction_complete")[-1]["masks"] == "given"
    assert engine.masks[-1] == {"a.jpg": mask_bytes(), "b.jpg": None}


def test_the_mask_has_the_photos_size_as_shown_after_its_exif_orientation(server, engine):
    with server.connect() as client:
        hello(client)
        client.upload({"sideways.jpg": rotated_photo(), "b.jpg": PHOTOS["b.jpg"]})
        stored = client.send_mask("sideways.jpg", mask_bytes((64, 48)))
        assert "its mask is 64x48 pixels but the photo is 48x64" in stored["message"]
        upright = mask_bytes((48, 64), subject=(8, 8, 40, 56))
        assert client.send_mask("sideways.jpg", upright)["type"] == "mask_received"
        client.send({"type": "upload_complete", "count": 2})
        client.receive_until("reconstruction_complete")
    assert engine.masks[-1]["sideways.jpg"] == upright


def test_masks_count_against_the_size_limits(tmp_path):
    settings = make_settings(tmp_path, max_photo_mb=0.01)  # about 10 kB
    noisy = Image.effect_noise((64, 48), 120).point(lambda v: 255 if v > 60 else 0)
    buffer = io.BytesIO()
    noisy.convert("RGB").save(buffer, "BMP")  # 9 kB of header and pixels, uncompressed
    big = buffer.getvalue() * 2
    with RunningServer(settings, ScriptedEngine()) as server, server.connect() as client:
        hello(client)
        client.upload(PHOTOS)
        error = client.send_mask("a.jpg", big)
        assert error["code"] == "limit"
        assert error["message"].startswith("a.jpg: the mask has 0.0 MB, more than the limit")
        assert "(setting max_photo_mb)" in error["message"]


def test_a_mask_while_the_job_runs_is_refused(server):
    with server.connect() as client:
        hello(client)
        client.upload(PHOTOS)
        client.send({"type": "upload_complete", "count": 2})
        client.send({"type": "mask_data", "photo": "a.jpg", "data": data_url(mask_bytes())})
        messages = client.receive_until("reconstruction_complete")
    errors = [m for m in messages if isinstance(m, dict) and m["type"] == "error"]
    assert len(errors) == 1 and "already queued or running" in errors[0]["message"]


def test_a_cancelled_upload_leaves_no_mask(server):
    with server.connect() as client:
        hello(client)
        client.upload(PHOTOS)
        client.send_mask("a.jpg", mask_bytes())
        client.send({"type": "cancel"})
        assert client.receive()["type"] == "cancelled"
    assert not any((server.settings.data_dir / "jobs").glob("*/photos/*"))


# REST ---------------------------------------------------------------------------------------


def test_rest_masks_are_named_after_their_photos(server, engine):
    photos = {**PHOTOS, "c.jpg": photo_bytes((30, 30, 200))}
    masks = {"a.png": mask_bytes(), "b.jpg.png": mask_bytes(fmt="BMP")}  # stem, COLMAP's name
    created = server.http.post("/api/jobs", files=files(photos, masks))
    assert created.status_code == 201, created.text
    assert [p["mask"] for p in created.json()["photos"]] == [True, True, False]
    status = server.wait_for_state(created.json()["job_id"])
    assert status["state"] == "done" and status["masks"] == "given"
    assert engine.masks[-1] == {"a.jpg": masks["a.png"], "b.jpg": masks["b.jpg.png"], "c.jpg": None}


@pytest.mark.parametrize(
    ("masks", "expected"),
    [
        ({"b.png": mask_bytes((65, 48))}, "b.jpg: its mask is 65x48 pixels but the photo is 64x48"),
        ({"a.png": b"\x89PNG\r\n\x1a\n broken"}, "a.jpg: its mask cannot be used"),
        ({"other.png": mask_bytes()}, "masks: 'other.png' is named after none of the photos"),
        ({"a.png": mask_bytes(), "a.jpg.png": mask_bytes()}, "masks: a.jpg has two masks"),
    ],
    ids=["wrong-size", "not-an-image", "no-such-photo", "two-masks"],
)
def test_rest_a_bad_mask_refuses_the_request_naming_the_photo(server, engine, masks, expected):
    refused = server.http.post("/api/jobs", files=files(PHOTOS, masks))
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(expected), refused.json()
    assert engine.calls == [] and not any((server.settings.data_dir / "jobs").iterdir())
    # Nothing else is needed to send it again with the mask fixed, or without it.
    assert server.http.post("/api/jobs", files=files(PHOTOS)).status_code == 201


def test_rest_a_mask_that_fits_two_photos_says_how_to_name_it(server):
    photos = {"a.jpg": PHOTOS["a.jpg"], "a.webp": photo_bytes(fmt="WEBP")}
    refused = server.http.post("/api/jobs", files=files(photos, {"a.png": mask_bytes()}))
    assert refused.status_code == 400
    assert "a.png could be the mask of a.jpg or a.webp" in refused.json()["detail"]
