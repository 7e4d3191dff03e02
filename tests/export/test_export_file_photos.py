"""The exports that come with the photos get them: from ``aetherscan.reconstruct`` (which
remembers each photo's file) or from ``photos=``; made without them, their README.txt says so
and where each photo goes. The README's Python example runs as written, on the flowerpot
photos, and its zip holds the images its COLMAP model and transforms.json name."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pycolmap
import pytest

import aetherscan.pipeline as pipeline
from aetherscan.engines.base import Observer, Photo
from aetherscan.export import export, export_file
from aetherscan.photos import read_size
from aetherscan.reconstruction import Reconstruction, View, load_reconstruction, save_reconstruction

ROOT = Path(__file__).resolve().parents[2]
FLOWERPOT = ROOT / "tests" / "fixtures" / "flowerpot"


class RingEngine:
    """TEST DOUBLE for the Engine protocol: every photo on a ring of cameras looking at a small
    cloud of points at the origin, with the photo's own size, so that every point is in view."""

    name = "ring"

    def reconstruct(self, photos: list[Photo], observer: Observer | None = None) -> Reconstruction:
        rng = np.random.default_rng(0)
        views = []
        for index, photo in enumerate(photos):
            width, height = read_size(photo.path)
            angle = 2 * np.pi * index / len(photos)
            center = 4 * np.array([np.sin(angle), 0.0, -np.cos(angle)])
            forward = -center / np.linalg.norm(center)
            right = np.cross([0.0, 1.0, 0.0], forward)
            R = np.stack([right, np.cross(forward, right), forward])  # rows: camera axes
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = R, -R @ center
            K = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1.0]])
            points = rng.uniform(-0.3, 0.3, (50, 3)).astype(np.float32)
            colors = rng.integers(0, 256, (50, 3), dtype=np.uint8)
            confidence = np.full(50, 2.0, np.float32)
            views.append(View(photo.name, width, height, K, pose, points, colors, confidence))
        return Reconstruction(self.name, views)


def python_example() -> str:
    """The README's Python example, as it is written there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    examples = [block for block in blocks if "aetherscan.reconstruct(" in block]
    assert len(examples) == 1, "the README has one Python example"
    return examples[0]


def test_the_readme_python_example_runs_and_its_zip_holds_the_photos(tmp_path, monkeypatch, capsys):
    shutil.copytree(FLOWERPOT, tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    built = []
    monkeypatch.setattr(
        pipeline, "create_engine", lambda name, **options: built.append(name) or RingEngine()
    )
    exec(compile(python_example(), "README.md", "exec"), {})
    assert built == ["auto"]
    names = sorted(p.name for p in (tmp_path / "photos").glob("*.jpg"))
    printed = capsys.readouterr().out
    assert len(names) == 8 and all(name in printed for name in names)

    with zipfile.ZipFile(tmp_path / "scene.zip") as archive:
        files = set(archive.namelist())
        images = sorted(
            name.removeprefix("images/") for name in files if name.startswith("images/")
        )
        assert images == names
        for name in images:  # the photos themselves, not stand-ins
            data = archive.read(f"images/{name}")
            assert read_size(data) == read_size(tmp_path / "photos" / name)
        archive.extractall(tmp_path / "unpacked")
        transforms = json.loads(archive.read("transforms.json"))
        readme = archive.read("README.txt").decode()
    model = pycolmap.Reconstruction(tmp_path / "unpacked" / "sparse" / "0")
    assert sorted(image.name for image in model.images.values()) == images
    assert sorted(frame["file_path"] for frame in transforms["frames"]) == [
        f"images/{name}" for name in images
    ]
    assert "images/ holds the photos" in readme and "NOT INCLUDED" not in readme
    assert (tmp_path / "scene.glb").stat().st_size > 0
    assert (tmp_path / "scene-metres.ply").stat().st_size > 0


def test_reconstruct_remembers_the_photo_files(tmp_path):
    shutil.copytree(FLOWERPOT, tmp_path / "photos")
    scene = pipeline.reconstruct([tmp_path / "photos"], RingEngine())
    assert scene.photo_paths == {
        path.name: path for path in sorted((tmp_path / "photos").glob("*.jpg"))
    }
    assert scene.scaled(2.0).photo_paths == scene.photo_paths  # a scaled scene keeps them


@pytest.fixture
def saved_scene(tmp_path) -> tuple[Reconstruction, dict[str, Path]]:
    """A reconstruction loaded from its file (which does not keep the photos' paths), and the
    photo files of its views."""
    scene = pipeline.reconstruct([FLOWERPOT / "P81019-151014.jpg", FLOWERPOT / "P81019-151034.jpg"],
                                 RingEngine())  # fmt: skip
    save_reconstruction(scene, tmp_path / "scene.npz")
    loaded = load_reconstruction(tmp_path / "scene.npz")
    assert loaded.photo_paths == {}
    return loaded, scene.photo_paths


def test_without_photos_the_archive_says_they_are_missing_and_where_they_go(saved_scene, tmp_path):
    scene, photos = saved_scene
    with zipfile.ZipFile(export_file(scene, tmp_path / "scene.zip")) as archive:
        assert not [name for name in archive.namelist() if name.startswith("images/")]
        readme = archive.read("README.txt").decode()
    assert "Photos: NOT INCLUDED" in readme and "images/ holds" not in readme
    for name in photos:
        assert f"images/{name}    <- {name}" in readme

    with zipfile.ZipFile(export_file(scene, tmp_path / "given.zip", photos)) as archive:
        assert sorted(n for n in archive.namelist() if n.startswith("images/")) == sorted(
            f"images/{name}" for name in photos
        )
        assert "NOT INCLUDED" not in archive.read("README.txt").decode()


@pytest.mark.parametrize("fmt", ["colmap", "colmap_text", "nerfstudio"])
def test_the_other_formats_with_photos_say_so_too(saved_scene, tmp_path, fmt):
    scene, photos = saved_scene
    folder = export(scene, fmt, tmp_path / "bare")
    assert not (folder / "images").exists()
    readme = (folder / "README.txt").read_text(encoding="utf-8")
    assert "NOT INCLUDED" in readme and all(f"images/{name}" in readme for name in photos)

    zipped = export(scene, fmt, tmp_path / "with.zip", photos=photos)
    with zipfile.ZipFile(zipped) as archive:
        names = archive.namelist()
    assert sorted(n for n in names if n.startswith("images/")) == sorted(
        f"images/{name}" for name in photos
    )
    assert "README.txt" not in names  # nothing to warn about


def test_photos_given_take_the_place_of_the_remembered_ones(tmp_path):
    scene = pipeline.reconstruct([FLOWERPOT / "P81019-151014.jpg", FLOWERPOT / "P81019-151034.jpg"],
                                 RingEngine())  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    given = {}
    for name, path in scene.photo_paths.items():
        given[name] = shutil.copy(path, elsewhere / name)
    scene.photo_paths = {name: tmp_path / "moved-away" / name for name in given}
    with pytest.raises(FileNotFoundError):  # the remembered files are gone: said, not skipped
        export_file(scene, tmp_path / "remembered.zip")
    with zipfile.ZipFile(export_file(scene, tmp_path / "given.zip", given)) as archive:
        data = archive.read("images/P81019-151014.jpg")
    assert read_size(io.BytesIO(data).getvalue()) == read_size(given["P81019-151014.jpg"])
