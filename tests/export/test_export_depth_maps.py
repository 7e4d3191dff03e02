import json

import numpy as np
import pytest
from PIL import Image

from aetherscan.export import available_formats, export
from aetherscan.export.depth_maps import depth_step


def test_depth_maps_read_back_from_npz_and_png(scene, tmp_path):
    folder = export(scene, "depth", tmp_path / "depth")
    index = json.loads((folder / "depth.json").read_text())
    step = index["depth_step"]
    with_depth = [view for view in scene.views if view.depth is not None]
    assert [entry["name"] for entry in index["views"]] == [view.name for view in with_depth]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["depth.json", "front.npz", "front.png", "side.npz", "side.png"]
    )
    for entry, view in zip(index["views"], with_depth, strict=True):
        with np.load(folder / entry["npz"]) as npz:
            np.testing.assert_array_equal(npz["depth"], view.depth)
            np.testing.assert_array_equal(npz["confidence"], view.depth_confidence)
            np.testing.assert_array_equal(npz["K"], view.depth_K)
            np.testing.assert_array_equal(npz["cam_from_world"], view.cam_from_world)
            np.testing.assert_array_equal(npz["photo_size"], [view.width, view.height])
        with Image.open(folder / entry["png"]) as png:
            assert png.mode.startswith("I;16") and float(png.text["depth_step"]) == step
            values = np.asarray(png)
        assert values.dtype == np.uint16
        known = view.depth > 0
        np.testing.assert_array_equal(values > 0, known)
        assert np.abs(values[known] * step - view.depth[known]).max() <= step / 2 + 1e-7
        assert (entry["width"], entry["height"]) == (view.depth.shape[1], view.depth.shape[0])


@pytest.mark.parametrize(
    ("max_depth", "step"), [(4.2, 1e-4), (6.6, 2e-4), (20.0, 5e-4), (65535.0, 1.0), (70000.0, 2.0)]
)
def test_depth_step_is_the_finest_that_fits(max_depth, step):
    assert depth_step(max_depth) == pytest.approx(step)
    assert max_depth / depth_step(max_depth) <= 65535


def test_depth_format_needs_depth_maps(scene, tmp_path):
    assert "depth" in available_formats(scene)
    for view in scene.views:
        view.depth = None
    assert "depth" not in available_formats(scene)
    with pytest.raises(ValueError, match="no depth maps"):
        export(scene, "depth", tmp_path / "depth")
