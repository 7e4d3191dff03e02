"""Photo decoding: every common pixel mode works, EXIF rotation is applied, bad files are refused
with a message for people."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFilter

from aetherscan.photos import (
    PhotoError,
    open_photo,
    open_photo_array,
    open_photo_reduced,
    read_size,
)


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _gradient(width: int = 64, height: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float64)
    y = np.linspace(0, 255, height, dtype=np.float64)
    return np.stack(np.broadcast_arrays(x[None, :], y[:, None], (x[None, :] + y[:, None]) / 2), -1)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("RGB", "WEBP")],
)
def test_pixel_modes_become_rgb(mode, fmt):
    source = Image.fromarray(_gradient().astype(np.uint8)).convert(mode)
    image = open_photo(_encode(source, fmt))
    assert image.mode == "RGB"
    assert image.size == (64, 48)


def test_16_bit_grayscale_keeps_its_range():
    values = (_gradient()[..., 0] * 257).astype(np.uint16)
    array = open_photo_array(_encode(Image.fromarray(values)))
    assert array.dtype == np.uint8
    assert array[..., 0].max() >= 250 and array[..., 0].min() <= 5  # scaled, not clipped to white


def test_alpha_is_composited_on_white():
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    array = open_photo_array(_encode(Image.fromarray(rgba, "RGBA")))
    assert (array == 255).all()


@pytest.mark.parametrize(
    ("orientation", "expected_size"), [(1, (64, 48)), (6, (48, 64)), (8, (48, 64))]
)
def test_exif_orientation_is_applied(orientation, expected_size):
    source = Image.fromarray(_gradient().astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(source, "JPEG", exif=exif.tobytes())
    assert open_photo(data).size == expected_size
    assert read_size(data) == expected_size


def test_exif_rotation_puts_the_top_up():
    # A photo whose top row is red, stored rotated 90 degrees clockwise with orientation 6
    # ("rotate 90 CW to view"): after decoding, red must be on top again.
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:5] = (255, 0, 0)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    array = open_photo_array(_encode(stored, "PNG", exif=exif.tobytes()))
    assert array.shape == (40, 60, 3)
    assert array[:3, :, 0].mean() > 200 and array[-3:, :, 0].mean() < 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is not an image", "not an image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not an image"),
    ],
)
def test_non_images_are_refused(data, message):
    with pytest.raises(PhotoError, match=message):
        open_photo(data)


def test_truncated_image_is_refused():
    data = _encode(Image.fromarray(_gradient(256, 256).astype(np.uint8)), "PNG")
    with pytest.raises(PhotoError, match="damaged or truncated"):
        open_photo(data[: len(data) // 2])


def test_tiny_and_huge_images_are_refused_before_decoding():
    with pytest.raises(PhotoError, match="at least 16 pixels"):
        open_photo(_encode(Image.new("RGB", (1, 1))))
    # Sizes declared in the header are refused without decoding (or even having) the pixels.
    with pytest.raises(PhotoError, match="more pixels than the limit of 100 MP"):
        read_size(_png_header(20000, 20000), max_megapixels=100)
    with pytest.raises(
        PhotoError, match=r"6000x5000 pixels \(30 MP\), more pixels than the limit of 20 MP"
    ):
        open_photo(_png_header(6000, 5000), max_megapixels=20)


def _png_header(width: int, height: int) -> bytes:
    """An 8-bit grayscale PNG header that declares width x height, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")


def test_a_path_works_like_bytes(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(_encode(Image.fromarray(_gradient().astype(np.uint8))))
    assert open_photo(path).size == (64, 48)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(PhotoError, match="empty"):
        open_photo(tmp_path / "empty.jpg")


def test_a_big_jpeg_decodes_at_a_reduced_scale_for_a_small_copy():
    """open_photo_reduced: the smallest libjpeg scale that keeps the long side asked for, the
    full upright size, and pixels that match a full decode shrunk by the same factor."""
    y, x = np.mgrid[0:1000, 0:2000]
    pixels = np.stack([x % 256, y % 256, (x // 8 + y // 8) % 256], axis=-1).astype(np.uint8)
    smooth = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(4))
    for orientation, upright in ((1, (2000, 1000)), (6, (1000, 2000))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        smooth.save(buffer, "JPEG", quality=95, exif=exif)
        image, full, factor = open_photo_reduced(buffer.getvalue(), 400)
        assert full == upright and factor == 4  # 2000 / 4 = 500 >= 400; / 8 = 250 is too few
        assert image.size == (upright[0] // 4, upright[1] // 4) and image.mode == "RGB"
        reference = open_photo(buffer.getvalue()).reduce(4)
        difference = np.abs(np.asarray(image, float) - np.asarray(reference, float))
        assert difference.mean() < 3
    png = io.BytesIO()
    smooth.save(png, "PNG")
    image, full, factor = open_photo_reduced(png.getvalue(), 400)
    assert factor == 1 and image.size == full == (2000, 1000)  # only JPEG has reduced scales
