"""Decoding photos: the formats that cameras, phones and scanners write, in any pixel mode, in;
an upright 8-bit RGB image out.

Every engine and the server decode through ``open_photo``, so a photo that one accepts, all
accept, and every refusal is a ``PhotoError`` whose message tells a person what was wrong.

What is refused, before any pixel is decoded where the header tells:

- a format outside ``FORMATS``, told by the file's content, never by its name: JPEG (what
  almost every camera and phone writes), HEIC/HEIF (iPhones and many Android phones; with the
  optional pillow-heif plugin), PNG and TIFF (screenshots, renders, scanners, 16-bit exports),
  WebP (some Android phones and apps) and BMP (a few tools; trivial to decode). GIF, ICO, TGA,
  JPEG 2000, AVIF, PPM and the rest of what Pillow reads are not photos that a camera makes,
  and the tools that read the exports (COLMAP, nerfstudio) do not all read them. A DNG raw
  file is refused too: Pillow would read only its small preview;
- more pixels than ``max_megapixels`` or fewer than ``MIN_SIDE_PX`` a side. Pillow's own
  decompression-bomb guard (89.5 MP) is raised to the limit while a photo is decoded
  (``pillow_pixel_limit``), so that the limit is the one that holds;
- more pixels than the file's bytes can describe (``MAX_PIXELS_PER_BYTE``): a decoder fills in
  what is missing, so 1.5 kB that claim 9000x9000 pixels would cost an 81 MP decode;
- data that ends early or is damaged: Pillow's decoders raise, as long as
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is off, which each decode checks. One damage they cannot
  see: a JPEG cut inside its compressed data and closed with an end marker decodes with grey
  in place of the missing part (libjpeg warns, Pillow drops the warning); the bound on pixels
  per byte keeps what such a file can cost to what its bytes claim.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF from phones, where the optional plugin is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIF_SUPPORTED = False

# Pillow's name of each format taken -> the name people know it by. MPO is how Pillow reads a
# JPEG that carries more pictures (cameras' depth maps and previews): a JPEG.
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "TIFF": "TIFF"}
FORMATS |= {"BMP": "BMP"} | ({"HEIF": "HEIC/HEIF"} if HEIF_SUPPORTED else {})
SUPPORTED_FORMATS = tuple(name for name in FORMATS if name != "MPO")  # the readers to try
_NAMES = list(dict.fromkeys(FORMATS.values()))
FORMAT_LIST = ", ".join(_NAMES)  # "JPEG, PNG, WebP, ..."
FORMAT_CHOICE = ", ".join(_NAMES[:-1]) + " or " + _NAMES[-1]  # "JPEG, ..., BMP or HEIC/HEIF"
MIN_SIDE_PX = 16

# The most pixels that one byte of a file can describe, by format. Physical limits where the
# format has one; above, the file claims pixels that its bytes do not hold.
MAX_PIXELS_PER_BYTE = {
    "JPEG": 512,  # Huffman coding spends at least 1 bit on each 8x8 block of the sharpest channel
    "MPO": 512,
    "PNG": 8_256,  # deflate compresses at most 1032:1, and a 1-bit image has 8 pixels a byte
    "TIFF": 11_000,  # LZW at most about 1365:1 at 1 bit a pixel; deflate and PackBits less
    "BMP": 128,  # run-length coding holds at most 255 pixels in 2 bytes
    # No physical limit: lossless WebP and HEVC code one flat colour in almost nothing. A flat
    # 12 MP image takes 23 000 (WebP) and 3 700 (HEIF) pixels a byte; photos of real scenes
    # take under 100. Both decoders refuse data that ends early before they allocate.
    "WEBP": 50_000,
    "HEIF": 50_000,
}
DNG_VERSION_TAG = 50706
TRUNCATED = "the file ends before the image does (cut short in a download or a copy?)"


class PhotoError(ValueError):
    """A file that cannot be used as a photo; the message is meant for people."""


@dataclass(frozen=True)
class PhotoInfo:
    """What a photo is: its format (Pillow's name: JPEG, PNG, ...) and its upright size."""

    format: str
    width: int
    height: int


def read_size(source: Path | bytes, *, max_megapixels: float = 100.0) -> tuple[int, int]:
    """(width, height) of the upright photo, after the checks that need no decoding."""
    with _opened(source, max_megapixels) as image:
        return _upright_size(image)


def open_photo(source: Path | bytes, *, max_megapixels: float = 100.0) -> Image.Image:
    """Decode a photo to an upright RGB image (EXIF orientation applied).

    Grayscale, CMYK, 16-bit, palette and alpha images are converted; alpha is composited on
    white. Raises PhotoError for anything that is not a usable photo.
    """
    with _opened(source, max_megapixels) as image:
        return _decode(image)


def open_photo_reduced(
    source: Path | bytes, long_side_px: int, *, max_megapixels: float = 100.0
) -> tuple[Image.Image, tuple[int, int], int]:
    """Like open_photo, for a copy whose long side will be ``long_side_px``: a JPEG is decoded
    at the smallest of libjpeg's scales (1/2, 1/4, 1/8) that keeps at least that many pixels,
    which costs a fraction of a full decode and of the resize after it. Returns the upright
    image, the photo's full upright size, and the factor k of the scale used (1: full size):
    pixel i of the image covers pixels k*i to k*(i+1) of the photo."""
    with _opened(source, max_megapixels) as image:
        full = _upright_size(image)
        factor = 1
        if image.format in ("JPEG", "MPO"):
            width, height = image.size
            factor = next((k for k in (8, 4, 2) if max(width, height) / k >= long_side_px), 1)
            if factor > 1:
                image.draft(None, (math.ceil(width / factor), math.ceil(height / factor)))
        return _decode(image), full, factor


def open_photo_array(source: Path | bytes, *, max_megapixels: float = 100.0) -> np.ndarray:
    """Like open_photo, as an (H, W, 3) uint8 array."""
    return np.asarray(open_photo(source, max_megapixels=max_megapixels))


def verify_photo(source: Path | bytes, *, max_megapixels: float = 100.0) -> PhotoInfo:
    """Decode the photo as the engines will (so that a photo accepted now cannot fail them
    later) and say what it is. Raises PhotoError like open_photo."""
    with _opened(source, max_megapixels) as image:
        kind, size = image.format or "", _upright_size(image)
        _decode(image).close()
    return PhotoInfo(kind, *size)


_pixel_limit_lock = threading.Lock()
_pixel_limits: list[int] = []  # of the blocks in pillow_pixel_limit now, in any thread
_pillow_own_limit: int | None = None  # Image.MAX_IMAGE_PIXELS before the first of them


@contextmanager
def pillow_pixel_limit(max_megapixels: float) -> Iterator[None]:
    """Pillow's own decompression-bomb guard raised to at least ``max_megapixels`` while the
    block runs, so that it never refuses a photo that the limit allows.

    That guard is a module global (``Image.MAX_IMAGE_PIXELS``) that Pillow's readers consult
    as they open and decode; it cannot be set for one call. Blocks may overlap, in threads or
    around a whole server's life (its engines and exports open accepted photos with Pillow
    directly): the guard is the largest of their limits and of Pillow's own value, and that
    value again once the last block ends. It is never lowered: the checks of this module,
    before any decoding, are the limit.
    """
    global _pillow_own_limit
    pixels = int(max_megapixels * 1e6)
    with _pixel_limit_lock:
        if not _pixel_limits:
            _pillow_own_limit = Image.MAX_IMAGE_PIXELS
        _pixel_limits.append(pixels)
        _set_pillow_limit()
    try:
        yield
    finally:
        with _pixel_limit_lock:
            _pixel_limits.remove(pixels)
            _set_pillow_limit()


def _set_pillow_limit() -> None:
    if _pillow_own_limit is None:
        return  # someone turned Pillow's guard off; leave it
    Image.MAX_IMAGE_PIXELS = max([_pillow_own_limit, *_pixel_limits])


@contextmanager
def _opened(source: Path | bytes, max_megapixels: float) -> Iterator[ImageFile.ImageFile]:
    """The photo opened (its header read), after every check that needs no decoding."""
    if isinstance(source, bytes | bytearray):
        stream: io.BytesIO | Path = io.BytesIO(source)
        size_bytes = len(source)
    else:
        stream, size_bytes = source, Path(source).stat().st_size
    if size_bytes == 0:
        raise PhotoError("the file is empty")
    with pillow_pixel_limit(max_megapixels):
        image = _identify(stream, max_megapixels)
        try:
            _check_claims(image, size_bytes, max_megapixels)
            yield image
        finally:
            image.close()


_quiet_lock = threading.Lock()  # warnings.catch_warnings changes process-wide state


def _identify(stream: io.BytesIO | Path, max_megapixels: float) -> ImageFile.ImageFile:
    try:
        with _quiet_lock, warnings.catch_warnings():
            # Pillow warns of sizes over its guard, which _check_claims refuses with numbers.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream, formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        raise PhotoError(_unsupported(stream)) from None
    except Image.DecompressionBombError:  # over twice the guard, which is at least the limit
        raise PhotoError(_over_limit(max_megapixels)) from None
    except Exception as exc:  # Pillow's readers raise many types on hostile input
        why = TRUNCATED if _is_truncation(exc) else "the file is damaged or truncated"
        raise PhotoError(f"the image cannot be read ({exc}): {why}") from exc


def _unsupported(stream: io.BytesIO | Path) -> str:
    """Why a file that none of the supported readers takes is refused, naming its format
    where Pillow knows it (reading its header only)."""
    try:
        with _quiet_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(stream) as other:
                kind = other.format
    except Exception:
        kind = None
    if kind:
        return f"the file is an image in the {kind} format; photos must be {FORMAT_CHOICE}"
    return f"not an image in a supported format ({FORMAT_LIST})"


def _over_limit(max_megapixels: float) -> str:
    return (
        f"the image has more pixels than the limit of {max_megapixels:g} MP "
        "(setting max_photo_megapixels)"
    )


def _check_claims(image: ImageFile.ImageFile, size_bytes: int, max_megapixels: float) -> None:
    kind = image.format or ""
    if kind not in FORMATS:  # pragma: no cover - Image.open tried only the supported readers
        raise PhotoError(f"the file is a {kind} image, not one of {FORMAT_LIST}")
    if kind == "TIFF" and DNG_VERSION_TAG in getattr(image, "tag_v2", {}):
        raise PhotoError(
            "the file is a DNG raw photo, which would be read as its small preview only: send "
            "the JPEG or HEIC that the camera made, or develop the raw file to TIFF or JPEG"
        )
    width, height = image.size
    pixels = width * height
    if pixels > max_megapixels * 1e6:
        raise PhotoError(
            f"the image has {width}x{height} pixels ({pixels / 1e6:.0f} MP), more pixels than "
            f"the limit of {max_megapixels:g} MP (setting max_photo_megapixels)"
        )
    if min(width, height) < MIN_SIDE_PX:
        raise PhotoError(
            f"the image is {width}x{height} pixels; photos need at least {MIN_SIDE_PX} pixels a side"
        )
    most = MAX_PIXELS_PER_BYTE[kind]
    if pixels > most * size_bytes:
        raise PhotoError(
            f"the file has {size_bytes:,} bytes for {width}x{height} pixels "
            f"({pixels / 1e6:.1f} MP), {pixels / size_bytes:,.0f} pixels a byte, where a "
            f"{FORMATS[kind]} file holds at most {most:,}: it is damaged or truncated"
        )


def _decode(image: ImageFile.ImageFile) -> Image.Image:
    """The opened photo's pixels, upright and RGB."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on in this process (some code turned it "
            "on), so Pillow would decode cut-off photos with grey in place of what is missing; "
            "AetherScan needs it off"
        )
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except Exception as exc:  # OSError, SyntaxError, struct.error, ... from Pillow's plugins
        if _is_truncation(exc):
            raise PhotoError(f"the image data is damaged or truncated: {TRUNCATED}") from exc
        raise PhotoError(f"the image data is damaged or truncated ({exc})") from exc
    try:
        return _to_rgb(upright)
    except (ValueError, OSError) as exc:
        raise PhotoError(f"the image's pixels ({upright.mode}) cannot be made RGB ({exc})") from exc


def _is_truncation(exc: Exception) -> bool:
    text = str(exc).lower()
    return "truncat" in text or "end of file" in text


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if _exif_orientation(image) in (5, 6, 7, 8) else (width, height)


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not refuse the photo
        return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the used range to 8 bits instead of clipping to white.
        array = np.asarray(image, dtype=np.float64)
        top = array.max() if array.size else 0.0
        scale = 255.0 / (65535.0 if top > 255 else max(top, 1.0))
        gray = np.clip(array * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
