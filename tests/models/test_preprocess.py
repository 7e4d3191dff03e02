"""Preprocessing against the upstream reference tensors and resize/crop table (SPEC §3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aetherscan.models.preprocess import plan_crop, preprocess


@pytest.fixture(scope="module")
def preprocess_reference(fast3r_reference):
    with np.load(fast3r_reference / "preprocess_reference.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def load_images_table(fast3r_reference):
    text = (fast3r_reference / "geometry_and_preprocess_reference.json").read_text()
    return json.loads(text.replace("Infinity", "1e999"))["load_images_table"]


@pytest.mark.parametrize(
    ("input_key", "output_key"),
    [("input_u8", "output_img"), ("small_input_u8", "small_output_img")],
    ids=["shrink-640x480", "enlarge-100x75"],
)
def test_preprocess_reproduces_upstream_tensor_exactly(preprocess_reference, input_key, output_key):
    photo = Image.fromarray(preprocess_reference[input_key])
    result = preprocess(photo, 512)
    expected = torch.from_numpy(preprocess_reference[output_key])
    assert result.image.dtype == torch.float32
    assert result.image.shape == expected.shape
    assert torch.equal(result.image, expected)
    assert list(result.image.shape[2:]) == preprocess_reference["true_shape"][0].tolist()


def test_preprocess_matches_every_row_of_the_load_images_table(load_images_table):
    assert len(load_images_table) == 16
    for row in load_images_table:
        photo_size = tuple(row["input_WxH"])
        for size in (512, 224):
            assert plan_crop(photo_size, size).size == tuple(row[f"size{size}_out_WxH"]), (
                row,
                size,
            )
            if photo_size[0] * photo_size[1] > 1_000_000:
                continue  # resampling 12 MP photos is slow on 2 cores; the plan is what is tested
            result = preprocess(Image.new("RGB", photo_size, (10, 20, 30)), size)
            assert list(result.image.shape[2:]) == row[f"size{size}_true_shape_HW"], (row, size)
            assert result.geometry == plan_crop(photo_size, size)


@pytest.mark.parametrize(
    ("photo_size", "expected"),
    [
        ((640, 480), (384, 288)),
        ((480, 640), (288, 384)),
        ((500, 500), (384, 288)),
        ((1920, 1080), (384, 208)),
        ((4032, 3024), (384, 288)),
    ],
)
def test_preprocess_384_is_the_512_rule_with_a_384_long_side(photo_size, expected):
    # 1920x1080 -> 384x216 -> crop 216 to 208 (multiple of 16).
    geometry = plan_crop(photo_size, 384)
    assert geometry.size == expected
    assert all(side % 16 == 0 for side in geometry.size)


def test_preprocess_output_is_in_minus_one_to_one_and_rgb_matches():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    result = preprocess(photo, 224)
    assert result.image.min() >= -1 and result.image.max() <= 1
    back = ((result.image[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(back, result.rgb)


@pytest.mark.parametrize("size", [512, 384, 224])
@pytest.mark.parametrize("photo_size", [(640, 480), (333, 777), (100, 75), (1000, 1000)])
def test_crop_geometry_maps_model_pixels_onto_the_same_photo_content(size, photo_size):
    """A bright square in the photo lands where model_to_photo says it does."""
    width, height = photo_size
    array = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = int(width * 0.4), int(height * 0.45), int(width * 0.6), int(height * 0.7)
    array[y0:y1, x0:x1] = 255
    result = preprocess(Image.fromarray(array), size)
    mask = result.rgb[..., 0] > 127
    rows, cols = np.nonzero(mask)
    # Edges of the bright box in model pixels (pixel-centre convention: pixel j covers [j, j+1)).
    corners = np.array([[cols.min(), rows.min()], [cols.max() + 1, rows.max() + 1]], np.float64)
    photo_corners = result.geometry.model_to_photo(corners)
    sx, sy = result.geometry.scale
    tolerance = np.array([1.5 / sx, 1.5 / sy])  # one and a half model pixels of resampling blur
    error = np.abs(photo_corners - [[x0, y0], [x1, y1]])
    assert (error < tolerance).all(), (error, tolerance)
    np.testing.assert_allclose(result.geometry.photo_to_model(photo_corners), corners, atol=1e-9)


def test_preprocess_refuses_extreme_aspect_ratio_and_bad_arguments():
    with pytest.raises(ValueError, match="elongated"):
        preprocess(Image.new("RGB", (4000, 16)), 512)
    with pytest.raises(ValueError, match="image_size"):
        preprocess(Image.new("RGB", (64, 48)), 256)
    with pytest.raises(ValueError, match="RGB"):
        preprocess(Image.new("L", (64, 48)), 512)
