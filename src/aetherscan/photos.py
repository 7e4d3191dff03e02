"""Decoding photos: any common format and pixel mode in, an upright 8-bit RGB image out.

Every engine and the server decode through ``open_photo``, so a photo that one accepts, all
accept, and every refusal is a ``PhotoError`` whose message tells a person what was wrong.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF from phones, where the optional plugin is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIF_SUPPORTED = False

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP") + (("HEIF",) if HEIF_SUPPORTED else ())
MIN_SIDE_PX = 16


class PhotoError(ValueError):
    """A file that cannot be used as a photo; the message is meant for people."""


def read_size(source: Path | bytes, *, max_megapixels: float = 100.0) -> tuple[int, int]:
    """(width, height) of the upright photo, after checking it, without decoding its pixels."""
    with _open(source, max_megapixels) as image:
        width, height = image.size
        if _exif_orientation(image) in (5, 6, 7, 8):
            width, height = height, width
        return width, height


def open_photo(source: Path | bytes, *, max_megapixels: float = 100.0) -> Image.Image:
    """Decode a photo to an upright RGB image (EXIF orientation applied).

    Grayscale, CMYK, 16-bit, palette and alpha images are converted; alpha is composited on
    white. Raises PhotoError for anything that is not a usable photo.
    """
    with _open(source, max_megapixels) as image:
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
        except Exception as exc:  # OSError, SyntaxError, struct.error, ... from Pillow's plugins
            raise PhotoError(f"the image data is damaged or truncated ({exc})") from exc
        return _to_rgb(upright)


def open_photo_array(source: Path | bytes, *, max_megapixels: float = 100.0) -> np.ndarray:
    """Like open_photo, as an (H, W, 3) uint8 array."""
    return np.asarray(open_photo(source, max_megapixels=max_megapixels))


def _open(source: Path | bytes, max_megapixels: float) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        if not source:
            raise PhotoError("the file is empty")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        if Path(source).stat().st_size == 0:
            raise PhotoError("the file is empty")
        stream = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except UnidentifiedImageError as exc:
        raise PhotoError(
            f"not an image in a supported format ({', '.join(SUPPORTED_FORMATS)})"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(
            f"the image has more pixels than the limit of {max_megapixels:g} MP "
            f"(setting max_photo_megapixels) or than can be decoded safely ({exc})"
        ) from exc
    except Exception as exc:  # Pillow's plugins raise many types on hostile input
        raise PhotoError(f"the image cannot be read ({exc})") from exc
    width, height = image.size
    if width * height > max_megapixels * 1e6:
        image.close()
        raise PhotoError(
            f"the image has {width}x{height} pixels ({width * height / 1e6:.0f} MP), more pixels than "
            f"the limit of {max_megapixels:g} MP (setting max_photo_megapixels)"
        )
    if min(width, height) < MIN_SIDE_PX:
        image.close()
        raise PhotoError(
            f"the image is {width}x{height} pixels; photos need at least {MIN_SIDE_PX} pixels a side"
        )
    return image


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
