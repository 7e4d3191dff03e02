import json

import numpy as np

from aetherscan.export import FORMATS, export_file


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
