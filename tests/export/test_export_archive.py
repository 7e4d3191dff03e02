import json
import zipfile

import numpy as np
import pycolmap
import pytest
import trimesh

from aetherscan.export import FORMATS, available_formats, export, export_file


def test_archive_holds_every_export(scene, photos, tmp_path):
    path = export_file(scene, tmp_path / "scene.zip", photos=photos)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unpacked")
    expected = {"README.txt", "scene.ply", "scene.glb", "cameras.json", "transforms.json"}
    expected |= {f"images/{view.name}" for view in scene.views}
    expected |= {
        f"sparse/0/{n}.{ext}" for n in ("cameras", "images", "points3D") for ext in ("bin", "txt")
    }
    expected |= {
        "depth/depth.json",
        "depth/front.npz",
        "depth/front.png",
        "depth/side.npz",
        "depth/side.png",
    }
    assert names == expected
    assert not list(tmp_path.glob(".export-*")) and not list(tmp_path.glob("*.part"))

    unpacked = tmp_path / "unpacked"
    # The unpacked folder is a COLMAP dataset and a nerfstudio dataset at once.
    rec = pycolmap.Reconstruction(unpacked / "sparse" / "0")
    assert rec.num_points3D() == scene.num_points
    for frame in json.loads((unpacked / "transforms.json").read_text())["frames"]:
        assert (unpacked / frame["file_path"]).is_file()
    loaded = trimesh.load(unpacked / "scene.glb")
    assert len(loaded.geometry["points"].vertices) == scene.num_points


@pytest.mark.parametrize("fmt", [key for key in FORMATS if FORMATS[key].filename.endswith(".zip")])
def test_folder_formats_zip_when_asked(scene, photos, tmp_path, fmt):
    path = export(scene, fmt, tmp_path / FORMATS[fmt].filename, photos=photos)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert names and all(not name.startswith("/") for name in names)
    if FORMATS[fmt].needs_photos:
        assert {f"images/{view.name}" for view in scene.views} <= set(names)


def test_every_format_writes_through_export(scene, photos, tmp_path):
    for fmt in available_formats(scene):
        path = export(scene, fmt, tmp_path / fmt / FORMATS[fmt].filename, photos=photos)
        assert path.is_file() and path.stat().st_size > 0


def test_export_file_picks_the_format_from_the_path(scene, photos, tmp_path):
    folder = export_file(scene, tmp_path / "colmap_model", photos=photos)
    assert pycolmap.Reconstruction(folder / "sparse" / "0").num_images() == len(scene.views)
    ply = export_file(scene, tmp_path / "points.ply")
    assert trimesh.load(ply).vertices.shape == (scene.num_points, 3)
    np.testing.assert_array_equal(trimesh.load(ply).colors[:, :3], scene.point_cloud().rgb)
    with pytest.raises(ValueError, match="cannot tell the export format"):
        export_file(scene, tmp_path / "scene.stl")
    with pytest.raises(ValueError, match="unknown export format"):
        export(scene, "obj", tmp_path / "scene.obj")


def test_everything_as_a_folder(scene, photos, tmp_path):
    folder = export(scene, "all", tmp_path / "scene", photos=photos)
    assert (folder / "transforms.json").is_file() and (
        folder / "sparse" / "0" / "points3D.txt"
    ).is_file()
    assert pycolmap.Reconstruction(folder / "sparse" / "0").num_images() == len(scene.views)
