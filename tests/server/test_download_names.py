"""Downloads are saved under a name made from the job (``flowerpot-16-photos-2026-12-01.ply``),
with only safe characters, an ASCII ``filename`` and a UTF-8 ``filename*`` where needed; the
URLs stay ``.../files/scene.ply``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest
from server_kit import photo_bytes

from aetherscan.server.download_names import content_disposition, download_name

DAY = datetime(2026, 12, 1, 10, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("labels", "name"),
    [
        ([f"flowerpot_{i:02d}.jpg" for i in range(1, 17)], "flowerpot-16-photos-2026-12-01.ply"),
        (["P81019-151014.jpg", "P81019-151034.jpg"], "P81019-2-photos-2026-12-01.ply"),
        (["IMG_1234.JPG", "IMG_1240.JPG", "IMG_1301.JPG"], "IMG-3-photos-2026-12-01.ply"),
        (["flower_1.jpg", "flower_10.jpg"], "flower-2-photos-2026-12-01.ply"),
        (["chair front.jpg", "chair back.jpg"], "chair-2-photos-2026-12-01.ply"),
        # Nothing in common: the first photo's stem.
        (["apple.jpg", "apricot.jpg"], "apple-2-photos-2026-12-01.ply"),
        (["a.jpg", "b.jpg"], "a-2-photos-2026-12-01.ply"),
        # Characters no file system (or header) likes become one "-".
        (['my "vase"/<1>.jpg', 'my "vase"/<2>.jpg'], "my-vase-2-photos-2026-12-01.ply"),
        (["...", ".."], "scan-2-photos-2026-12-01.ply"),
    ],
)
def test_the_name_is_the_photos_stem_count_and_day(labels, name):
    assert download_name(labels, DAY, "scene.ply") == name


def test_formats_of_one_extension_get_different_names_and_metres_say_so():
    labels = ["vase_1.jpg", "vase_2.jpg"]
    names = {
        file: download_name(labels, DAY, file)
        for file in ("scene.ply", "scene_ascii.ply", "scene.glb", "colmap.zip",
                     "colmap_text.zip", "nerfstudio.zip", "depth.zip", "scene.zip", "cameras.json")
    }  # fmt: skip
    assert names["scene.zip"] == "vase-2-photos-2026-12-01.zip"
    assert names["colmap_text.zip"] == "vase-2-photos-2026-12-01-colmap-text.zip"
    assert names["scene_ascii.ply"] == "vase-2-photos-2026-12-01-ascii.ply"
    assert names["cameras.json"] == "vase-2-photos-2026-12-01-cameras.json"
    assert len(set(names.values())) == len(names)
    metric = download_name(labels, DAY, "scene.ply", metric=True)
    assert metric == "vase-2-photos-2026-12-01-metres.ply"


def test_a_long_stem_is_cut():
    name = download_name(["x" * 300 + "1.jpg", "x" * 300 + "2.jpg"], DAY, "scene.ply")
    assert name == "x" * 60 + "-2-photos-2026-12-01.ply"


def test_non_ascii_names_get_an_ascii_fallback_and_filename_star():
    name = download_name(["Blumentöpfe 1.jpg", "Blumentöpfe 2.jpg"], DAY, "scene.glb")
    assert name == "Blumentöpfe-2-photos-2026-12-01.glb"
    header = content_disposition(name)
    assert header.startswith('attachment; filename="Blumentopfe-2-photos-2026-12-01.glb"; ')
    assert unquote(header.split("filename*=UTF-8''")[1]) == name
    plain = content_disposition("vase-2-photos-2026-12-01.ply")
    assert plain == 'attachment; filename="vase-2-photos-2026-12-01.ply"'
    only_foreign = content_disposition("花瓶-2-photos-2026-12-01.ply")
    assert re.match(r'attachment; filename="[\w.-]+\.ply"; filename\*=', only_foreign)


def test_every_download_of_a_job_is_named_after_it(server):
    photos = {f"flowerpot_{i:02d}.jpg": photo_bytes((40 * i, 30, 30)) for i in range(1, 4)}
    files = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    job_id = server.http.post("/api/jobs", files=files).json()["job_id"]
    status = server.wait_for_state(job_id)
    day = status["created_at"][:10]
    seen = set()
    for fmt, url in status["downloads"].items():
        assert re.search(r"/files/[a-z_]+\.(ply|glb|zip|json|obj)$", url), url  # URLs unchanged
        answer = server.http.get(url)
        assert answer.status_code == 200, fmt
        header = answer.headers["content-disposition"]
        match = re.fullmatch(r'attachment; filename="([\w.-]+)"', header)
        assert match, header
        assert match[1].startswith(f"flowerpot-3-photos-{day}"), header
        assert match[1].endswith(url.rsplit(".", 1)[1])
        seen.add(match[1])
    assert len(seen) == len(status["downloads"])

    server.http.put(f"/api/jobs/{job_id}/scale", json={"metres_per_unit": 0.01})
    scaled = server.http.get(status["downloads"]["ply"]).headers["content-disposition"]
    assert scaled == f'attachment; filename="flowerpot-3-photos-{day}-metres.ply"'


def test_a_non_ascii_job_name_reaches_the_browser_in_utf8(server):
    files = [
        ("files", ("Vase für Oma 1.jpg", photo_bytes((200, 30, 30)), "image/jpeg")),
        ("files", ("Vase für Oma 2.jpg", photo_bytes((30, 200, 30)), "image/jpeg")),
    ]
    job_id = server.http.post("/api/jobs", files=files).json()["job_id"]
    status = server.wait_for_state(job_id)
    header = server.http.get(status["downloads"]["glb"]).headers["content-disposition"]
    day = status["created_at"][:10]
    assert header.startswith(f'attachment; filename="Vase-fur-Oma-2-photos-{day}.glb"; ')
    assert unquote(header.split("filename*=UTF-8''")[1]) == f"Vase-für-Oma-2-photos-{day}.glb"
