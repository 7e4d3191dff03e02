"""What aetherscan.photos refuses and why: formats outside its list (told by content, not by
name), damaged and truncated data, files that claim more pixels than their bytes can hold
(refused before decoding), and the pixel limit, which is the only one: Pillow's own guard
(89.5 MP) never refuses what max_megapixels allows."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, TiffImagePlugin

from aetherscan import photos
from aetherscan.photos import (
    FORMATS,
    HEIF_SUPPORTED,
    MAX_PIXELS_PER_BYTE,
    PhotoError,
    open_photo,
    pillow_pixel_limit,
    read_size,
    verify_photo,
)

SIX = "JPEG, PNG, WebP, TIFF, BMP or HEIC/HEIF"
TRUNCATED = "the file ends before the image does"
PILLOW_DEFAULT = 89_478_485  # Image.MAX_IMAGE_PIXELS as Pillow ships it


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8))


def png(width: int, height: int, raw: bytes = b"", depth: int = 1, color_type: int = 0) -> bytes:
    """A PNG written by hand, so that its header can claim any size (1-bit grey by default)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    idat = zlib.compress(raw, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def black_1bit_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG: 90 MP compress to about 11 kB."""
    return png(width, height, bytes((1 + (width + 7) // 8) * height))


def jpeg_claiming(width: int, height: int, keep: int | None = None) -> bytes:
    """A small real JPEG whose header is edited to claim width x height, cut to ``keep``
    bytes and closed with an end marker: what a damaged file can look like."""
    data = bytearray(encode(noise(), "JPEG"))
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data[:keep]) + b"\xff\xd9" if keep else bytes(data)


# -- formats ----------------------------------------------------------------------------------

SUPPORTED = {
    "JPEG": lambda: encode(noise(), "JPEG"),
    "JPEG with pictures (MPO)": lambda: encode(
        noise(), "MPO", save_all=True, append_images=[noise(32, 24)]
    ),
    "PNG": lambda: encode(noise(), "PNG"),
    "WebP": lambda: encode(noise(), "WEBP"),
    "TIFF": lambda: encode(noise(), "TIFF"),
    "BMP": lambda: encode(noise(), "BMP"),
}
if HEIF_SUPPORTED:
    SUPPORTED["HEIF"] = lambda: encode(noise(), "HEIF")


@pytest.mark.parametrize("kind", list(SUPPORTED))
def test_the_supported_formats_decode(kind):
    data = SUPPORTED[kind]()
    assert open_photo(data).size == (64, 48)
    assert verify_photo(data).format in FORMATS


def other_formats() -> dict[str, bytes]:
    """A small image in every other format that Pillow can write here (and read back)."""
    made = {}
    Image.init()  # every plugin, so that Image.SAVE lists them all
    for fmt in sorted(Image.SAVE):
        if fmt in FORMATS or fmt in ("PDF", "IM", "HEIF", "HEIC"):
            continue  # PDF: Pillow writes it, but cannot read it; IM: deprecated, it warns
        for mode in ("RGB", "L", "1", "P", "RGBA", "F"):
            try:
                data = encode(noise().convert(mode), fmt)
                with Image.open(io.BytesIO(data)) as check:
                    assert check.format
            except Exception:
                continue
            made[fmt] = data
            break
    return made


OTHERS = other_formats()


def test_fifteen_and_more_other_formats_are_refused_by_name():
    assert len(OTHERS) >= 15, sorted(OTHERS)
    for fmt, data in OTHERS.items():
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
        with pytest.raises(PhotoError) as refused:
            read_size(data)
        assert (
            str(refused.value) == f"the file is an image in the {kind} format; photos must be {SIX}"
        ), fmt


def test_the_format_is_told_by_content_not_by_name(tmp_path):
    gif = tmp_path / "holiday.jpg"
    gif.write_bytes(encode(noise().convert("P"), "GIF"))
    with pytest.raises(PhotoError, match="in the GIF format"):
        open_photo(gif)
    disguised_png = tmp_path / "photo.gif"
    disguised_png.write_bytes(encode(noise(), "PNG"))
    assert verify_photo(disguised_png).format == "PNG"


def test_a_dng_raw_file_is_refused_rather_than_read_as_its_preview():
    directory = TiffImagePlugin.ImageFileDirectory_v2()
    directory[50706] = b"\x01\x04\x00\x00"  # DNGVersion 1.4
    directory.tagtype[50706] = 1
    with pytest.raises(PhotoError, match="DNG raw photo"):
        read_size(encode(noise(), "TIFF", tiffinfo=directory))


def test_unknown_bytes_name_no_format():
    with pytest.raises(PhotoError) as refused:
        open_photo(b"just some text, not pixels")
    assert str(refused.value) == (
        "not an image in a supported format (JPEG, PNG, WebP, TIFF, BMP, HEIC/HEIF)"
    )


# -- damaged and truncated --------------------------------------------------------------------


@pytest.mark.parametrize("kind", [kind for kind in SUPPORTED if "MPO" not in kind])
@pytest.mark.parametrize("kept", [0.5, 0.9, 0.99])
def test_a_truncated_file_is_refused_with_a_sentence(kind, kept):
    data = SUPPORTED[kind]()
    data = data[: int(len(data) * kept)]
    with pytest.raises(PhotoError) as refused:
        open_photo(data)
    message = str(refused.value)
    assert TRUNCATED in message or "damaged or truncated" in message, message


def test_a_jpeg_whose_extra_pictures_are_cut_is_read_for_its_whole_first_picture():
    first = encode(noise(), "JPEG")
    data = SUPPORTED["JPEG with pictures (MPO)"]()
    assert verify_photo(data[: len(data) - 100]).format == "MPO"
    with pytest.raises(PhotoError, match=TRUNCATED):
        open_photo(data[: len(first) // 2])  # cut inside the first picture


def test_decoding_refuses_to_run_with_pillows_truncated_images_switch_on(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    cut = encode(noise(256, 256), "PNG")
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES is on"):
        open_photo(cut[: len(cut) // 2])


def test_nothing_in_aetherscan_turns_pillows_truncated_images_switch_on():
    modules = (
        "aetherscan, aetherscan.cli, aetherscan.pipeline, aetherscan.masks, aetherscan.engines, "
        "aetherscan.engines.colmap, aetherscan.export, aetherscan.server.app"
    )
    code = f"import {modules}; from PIL import ImageFile; print(ImageFile.LOAD_TRUNCATED_IMAGES)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False", result.stderr[-2000:]


# -- pixels per byte --------------------------------------------------------------------------


def test_a_jpeg_that_claims_81_mp_in_1500_bytes_is_refused_before_decoding():
    data = jpeg_claiming(9000, 9000, keep=1500)
    started = time.perf_counter()
    with pytest.raises(PhotoError) as refused:
        open_photo(data)
    assert time.perf_counter() - started < 0.2  # decoding it took about 0.5 s and 240 MB
    assert str(refused.value) == (
        "the file has 1,502 bytes for 9000x9000 pixels (81.0 MP), 53,928 pixels a byte, where "
        "a JPEG file holds at most 512: it is damaged or truncated"
    )
    with pytest.raises(PhotoError, match="pixels a byte, where a JPEG file holds at most 512"):
        read_size(jpeg_claiming(9000, 9000))  # not cut: only the header lies


@pytest.mark.parametrize(
    "data",
    [png(9000, 9000), png(4000, 3000, bytes(100), depth=8, color_type=2)],
    ids=["81 MP of 1-bit PNG in 65 bytes", "12 MP of RGB PNG in 100 bytes"],
)
def test_claims_beyond_what_the_bytes_hold_are_refused(data):
    with pytest.raises(PhotoError, match="where a PNG file holds at most 8,256: it is damaged"):
        read_size(data)


FLATTEST = {  # the least bytes a pixel that each encoder spends: one flat colour
    "JPEG": lambda: encode(Image.new("L", (4000, 3000)), "JPEG", optimize=True, progressive=True),
    "PNG": lambda: encode(Image.new("1", (4000, 3000)), "PNG", optimize=True),
    "WEBP": lambda: encode(Image.new("RGB", (4000, 3000)), "WEBP", lossless=True),
    "TIFF": lambda: encode(Image.new("1", (4000, 3000)), "TIFF", compression="tiff_deflate"),
}
if HEIF_SUPPORTED:
    FLATTEST["HEIF"] = lambda: encode(Image.new("L", (2000, 1500)), "HEIF")


@pytest.mark.parametrize("kind", list(FLATTEST))
def test_the_flattest_real_files_are_within_the_bound_of_their_format(kind):
    data = FLATTEST[kind]()
    info = verify_photo(data)
    density = info.width * info.height / len(data)
    assert info.format == kind
    assert density < MAX_PIXELS_PER_BYTE[kind]
    assert density > MAX_PIXELS_PER_BYTE[kind] / 50  # and the bound is no wild guess


# -- the pixel limit is max_megapixels, not Pillow's -----------------------------------------


def in_a_fresh_process(code: str) -> str:
    """Run ``code`` (with this module's helpers) where no server of this test session holds
    Pillow's guard raised: what it prints."""
    script = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
    script += "from test_photos_hardening import *\n" + code
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_photos_above_pillows_guard_and_within_the_limit_are_read():
    printed = in_a_fresh_process(
        "print(Image.MAX_IMAGE_PIXELS)\n"
        "for width, height in [(10000, 9000), (10000, 9999)]:  # 90 MP, 99.99 MP\n"
        "    data = black_1bit_png(width, height)\n"
        "    print(len(data) < 20_000, read_size(data, max_megapixels=100))\n"
        "print(Image.MAX_IMAGE_PIXELS)\n"
    )
    assert printed.splitlines() == [
        str(PILLOW_DEFAULT),  # Pillow's guard, which refused these before
        "True (10000, 9000)",
        "True (10000, 9999)",
        str(PILLOW_DEFAULT),  # and Pillow's own again after
    ]


def test_photos_over_the_limit_are_refused_with_their_numbers():
    data = black_1bit_png(10000, 10001)  # 100.01 MP
    with pytest.raises(PhotoError) as refused:
        read_size(data, max_megapixels=100)
    assert str(refused.value) == (
        "the image has 10000x10001 pixels (100 MP), more pixels than the limit of 100 MP "
        "(setting max_photo_megapixels)"
    )
    # Far over (more than twice Pillow's guard, which is then the limit): refused all the same.
    with pytest.raises(PhotoError, match="more pixels than the limit of 100 MP"):
        read_size(black_1bit_png(20000, 20000), max_megapixels=100)


def test_a_limit_above_twice_pillows_guard_holds_too():
    printed = in_a_fresh_process(
        "data = black_1bit_png(14000, 14000)  # 196 MP: Pillow alone refuses over 179 MP\n"
        "print(read_size(data, max_megapixels=200))\n"
        "try:\n"
        "    read_size(data, max_megapixels=150)\n"
        "except PhotoError as exc:\n"
        "    print(exc)\n"
    )
    assert printed.splitlines() == [
        "(14000, 14000)",
        "the image has 14000x14000 pixels (196 MP), more pixels than the limit of 150 MP "
        "(setting max_photo_megapixels)",
    ]


def test_overlapping_limits_raise_pillows_guard_to_the_largest_and_restore_it():
    # Servers of this test session may hold the guard at their limit: expect it as found.
    found, holders = Image.MAX_IMAGE_PIXELS, list(photos._pixel_limits)
    assert found >= PILLOW_DEFAULT
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pillow_pixel_limit(300):
            entered.set()
            release.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    entered.wait(10)
    try:
        assert Image.MAX_IMAGE_PIXELS == 300_000_000
        with pillow_pixel_limit(120):
            assert Image.MAX_IMAGE_PIXELS == 300_000_000
        with pillow_pixel_limit(20):  # never lowered
            assert Image.MAX_IMAGE_PIXELS == 300_000_000
    finally:
        release.set()
        other.join(10)
    assert found == Image.MAX_IMAGE_PIXELS  # as it was
    with pillow_pixel_limit(20):
        assert found == Image.MAX_IMAGE_PIXELS
    assert photos._pixel_limits == holders
