"""Photo names inside exports: every export opens on Linux, macOS and Windows, whatever the
photos were called, and every file that refers to a photo names the same file."""

import json
import unicodedata
import zipfile

import numpy as np
import pycolmap
import pytest

from aetherscan.export import export
from aetherscan.export.names import MAX_NAME_BYTES, clash_key, export_names, safe_name

_WINDOWS_FORBIDDEN = set('<>:"/\\|?*') | {chr(c) for c in range(32)}
_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(10)}

# Names that broke exports or clash on one of the three systems, each with the name it gets.
HOSTILE = {
    "..jpg": "_.jpg",
    "...": "photo",
    ".": "photo",
    "": "photo",
    ".jpg": "photo.jpg",
    ".hidden.jpg": "_hidden.jpg",
    "a.jpg.": "a.jpg",
    "b.jpg . ": "b.jpg",
    "CON": "_CON",
    "con.jpg": "_con.jpg",
    "Nul.tar.gz": "_Nul.tar.gz",
    "COM1 .jpg": "_COM1 .jpg",
    "LPT9.JPG": "_LPT9.JPG",
    "CONSOLE.jpg": "CONSOLE.jpg",
    'a<b>c:d"e|f?g*h.jpg': "a_b_c_d_e_f_g_h.jpg",
    "back\\slash.jpg": "back_slash.jpg",
    "../evil.jpg": "__evil.jpg",
    "/etc/passwd": "_etc_passwd",
    "tab\there\n.jpg": "tab_here_.jpg",
    "rtl\u202egpj.exe": "rtl_gpj.exe",
    "IMG_1 (2).jpg": "IMG_1 (2).jpg",
    "e\u0301te\u0301.jpg": "\u00e9t\u00e9.jpg",
}


def _assert_safe_everywhere(names):
    for name in names:
        assert name and name == unicodedata.normalize("NFC", name)
        assert not _WINDOWS_FORBIDDEN & set(name), name
        assert name[-1] not in ". " and not name.startswith("."), name
        assert name.split(".")[0].rstrip(" ").upper() not in _DEVICES, name
        assert len(name.encode("utf-8")) <= MAX_NAME_BYTES, name
    keys = [clash_key(name) for name in names]
    assert len(set(keys)) == len(keys), names


@pytest.mark.parametrize(("label", "expected"), HOSTILE.items())
def test_each_hostile_name_gets_a_safe_one(label, expected):
    assert safe_name(label) == expected
    _assert_safe_everywhere([safe_name(label)])


def test_names_are_unique_ignoring_case_and_unicode_forms_and_deterministic():
    nfc, nfd = "caf\u00e9.jpg", "cafe\u0301.jpg"
    labels = ["a.jpg", "A.jpg", "a_2.jpg", nfc, nfd, "CAFÉ.JPG", "x.jpg", "x.jpg.", "x.jpg "]
    names = export_names(labels)
    # The first of each clash keeps its name; a later one never takes another photo's own name.
    assert names == [
        "a.jpg",
        "A_3.jpg",
        "a_2.jpg",
        nfc,
        "caf\u00e9_2.jpg",
        "CAFÉ_3.JPG",
        "x.jpg",
        "x_2.jpg",
        "x_3.jpg",
    ]
    _assert_safe_everywhere(names)
    assert export_names(labels) == names
    assert export_names(["plain.jpg", "IMG 2.png"]) == ["plain.jpg", "IMG 2.png"]


def test_long_names_are_cut_keeping_the_extension_and_stay_unique():
    labels = ["é" * 200 + ".jpeg", "é" * 200 + ".jpeg", "x" * 300]
    names = export_names(labels)
    _assert_safe_everywhere(names)
    assert names[0].endswith(".jpeg") and names[1].endswith("_2.jpeg")
    assert names[2] == "x" * MAX_NAME_BYTES


def _rename(scene, photos, labels):
    renamed = {}
    for view, label in zip(scene.views, labels, strict=True):
        renamed[label] = photos[view.name]
        view.name = label
    return renamed


@pytest.mark.parametrize(
    "labels",
    [
        ["..jpg", "...", "....", "...jpg"],  # issue #15, item 6: depth.zip and scene.zip failed
        ["a.jpg", "A.jpg", "caf\u00e9.jpg", "cafe\u0301.jpg"],
        ["CON.jpg", "aux", "w<h>a:t?.jpg", "é" * 120 + ".jpg"],
    ],
)
def test_every_export_of_hostile_names_agrees_on_each_photos_file(scene, photos, tmp_path, labels):
    photos = _rename(scene, photos, labels)
    depth = export(scene, "depth", tmp_path / "depth.zip")
    path = export(scene, "all", tmp_path / "scene.zip", photos=photos)
    with zipfile.ZipFile(path) as archive:
        entries = archive.namelist()
        archive.extractall(tmp_path / "unpacked")
    with zipfile.ZipFile(depth) as archive:
        depth_entries = archive.namelist()
    folder = tmp_path / "unpacked"

    for entries_of in (entries, depth_entries):
        _assert_safe_everywhere([entry.rsplit("/", 1)[-1] for entry in entries_of])
        assert len({clash_key(entry) for entry in entries_of}) == len(entries_of)
    photo_files = sorted(
        entry[len("images/") :] for entry in entries if entry.startswith("images/")
    )
    assert len(photo_files) == len(labels)

    # The COLMAP model (binary and text), transforms.json and cameras.json name those files.
    for model in ("bin", "txt"):
        rec = pycolmap.Reconstruction()
        getattr(rec, f"read_{'binary' if model == 'bin' else 'text'}")(str(folder / "sparse/0"))
        assert sorted(image.name for image in rec.images.values()) == photo_files
    transforms = json.loads((folder / "transforms.json").read_text())
    assert sorted(f["file_path"] for f in transforms["frames"]) == [
        f"images/{name}" for name in photo_files
    ]
    cameras = json.loads((folder / "cameras.json").read_text())["cameras"]
    assert [camera["name"] for camera in cameras] == labels  # the labels themselves stay
    assert sorted(camera["file_name"] for camera in cameras) == photo_files
    index = json.loads((folder / "depth" / "depth.json").read_text())
    for entry in index["views"]:
        assert entry["file_name"] in photo_files
        with np.load(folder / "depth" / entry["npz"]) as npz:
            assert npz["depth"].shape == (entry["height"], entry["width"])
        assert (folder / "depth" / entry["png"]).is_file()
        assert f"depth/{entry['npz']}" in entries and entry["png"] in depth_entries
