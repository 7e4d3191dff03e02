"""Exports as the server hands them out: a finished job's zips, downloaded over REST from a real
server, hold its photos without their location and under names every system can unpack."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))  # the server tests' kit
from server_kit import RunningServer, ScriptedEngine, make_settings

from aetherscan.export.metadata import location_left
from aetherscan.export.names import clash_key

GPS_IFD = 0x8825
SECRET = b"WHERE-I-LIVE"


def _photo_with_place(color) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Acme"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 26.0), 27: b"ASCII\0\0\0" + SECRET})
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def test_downloaded_zips_hold_the_photos_without_their_place(tmp_path):
    photos = {"a.jpg": _photo_with_place((200, 30, 30)), "A.jpg": _photo_with_place((30, 200, 30))}
    upload = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    with RunningServer(make_settings(tmp_path / "data"), ScriptedEngine()) as server:
        job_id = server.http.post("/api/jobs", files=upload).json()["job_id"]
        status = server.wait_for_state(job_id)
        assert status["state"] == "done", status
        for fmt in ("all", "colmap", "nerfstudio"):
            reply = server.http.get(status["downloads"][fmt])
            assert reply.status_code == 200, reply.text
            with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
                names = archive.namelist()
                images = [name for name in names if name.startswith("images/")]
                assert len(images) == 2 and len({clash_key(name) for name in names}) == len(names)
                for name in images:
                    data = archive.read(name)
                    assert SECRET not in data and not location_left(data)
                    with Image.open(io.BytesIO(data)) as image:
                        assert image.getexif()[0x010F] == "Acme"
        # The job's own copies are untouched: only what leaves the server loses the place.
        stored = sorted((server.settings.data_dir / "jobs" / job_id).rglob("*.jpg"))
        assert stored and all(SECRET in path.read_bytes() for path in stored)


def test_a_server_set_to_keep_locations_keeps_them_in_the_zips(tmp_path):
    upload = [("files", ("a.jpg", _photo_with_place((200, 30, 30)), "image/jpeg"))]
    upload.append(("files", ("b.jpg", _photo_with_place((30, 30, 200)), "image/jpeg")))
    settings = make_settings(tmp_path / "data", keep_photo_location=True)
    with RunningServer(settings, ScriptedEngine()) as server:
        job_id = server.http.post("/api/jobs", files=upload).json()["job_id"]
        status = server.wait_for_state(job_id)
        reply = server.http.get(status["downloads"]["all"])
        assert reply.status_code == 200, reply.text
        with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
            images = [name for name in archive.namelist() if name.startswith("images/")]
            assert images and all(SECRET in archive.read(name) for name in images)


def test_the_cli_strips_locations_unless_told_to_keep_them(tmp_path, monkeypatch):
    from aetherscan.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for k, color in enumerate([(200, 30, 30), (30, 200, 30)]):
        (folder / f"p{k}.jpg").write_bytes(_photo_with_place(color))
    monkeypatch.setattr("aetherscan.pipeline.create_engine", lambda *a, **k: ScriptedEngine())
    for keep, expected in (("0", False), ("1", True)):
        monkeypatch.setenv("AETHERSCAN_KEEP_PHOTO_LOCATION", keep)
        out = tmp_path / f"scene-{keep}.zip"
        assert main(["reconstruct", str(folder), "-o", str(out)]) == 0
        with zipfile.ZipFile(out) as archive:
            images = [name for name in archive.namelist() if name.startswith("images/")]
            assert images and all((SECRET in archive.read(name)) is expected for name in images)
