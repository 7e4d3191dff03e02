import dataclasses
import json

import numpy as np

from aetherscan.export import FORMATS, export_file
from aetherscan.reconstruction import Quality


def test_cameras_json_holds_every_photo_with_its_convention(scene, tmp_path):
    path = export_file(scene, tmp_path / "cameras.json")
    document = json.loads(path.read_text())
    assert document["format"] == "aetherscan-cameras/1"
    assert (
        "OpenCV" in document["convention"] and "(width / 2, height / 2)" in document["convention"]
    )
    assert [c["name"] for c in document["cameras"]] == [v.name for v in scene.views]
    for camera, view in zip(document["cameras"], scene.views, strict=True):
        assert (camera["width"], camera["height"]) == (view.width, view.height)
        np.testing.assert_array_equal(camera["K"], view.K)
        np.testing.assert_array_equal(camera["cam_from_world"], view.cam_from_world)
    assert document["dropped"] == [{"name": "blurry.jpg", "reason": "too few matches"}]
    assert FORMATS["cameras"].filename == path.name


def test_cameras_json_carries_the_verdict_and_the_masks(scene, tmp_path):
    checked = dataclasses.replace(
        scene,
        quality=Quality("uncertain", ["only 2 of 5 photos were placed"]),
        masks="given",
    )
    document = json.loads(export_file(checked, tmp_path / "cameras.json").read_text())
    assert document["quality"] == {
        "verdict": "uncertain",
        "reasons": ["only 2 of 5 photos were placed"],
    }
    assert document["masks"] == "given"
    # A reconstruction nobody checked says so.
    unchecked = json.loads(export_file(scene, tmp_path / "unchecked.json").read_text())
    assert unchecked["quality"] == Quality.unchecked().to_json()
    assert unchecked["quality"]["verdict"] == "uncertain" and unchecked["masks"] == "none"


def test_cameras_json_carries_the_distortion_and_the_file_names(scene, tmp_path):
    scene.views[0].radial_k1 = -0.12
    scene.views[1].name = "CON.jpg"
    document = json.loads(export_file(scene, tmp_path / "cameras.json").read_text())
    cameras = document["cameras"]
    assert [c["radial_k1"] for c in cameras] == [-0.12, 0.0, 0.0, 0.0]
    assert [c["file_name"] for c in cameras] == [
        "front.jpg",
        "_CON.jpg",
        "back.png",
        "sideways.jpg",
    ]
    assert "radial_k1" in document["convention"] and "file_name" in document["convention"]
