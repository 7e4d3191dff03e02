"""Photos and their masks arriving from clients: limits, decoding checks and the labels they are
known by.

Client filenames are labels for people only. A label is the last path component of what the
client sent, without control characters, at most ``MAX_LABEL_CHARS`` long and unique within its
job (a repeated name gets `` (2)``, `` (3)``, ... before its extension). Files on disk get names
that storage makes (``0000.jpg``).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass

from PIL import Image

from aetherscan import masks
from aetherscan.photos import PhotoError, verify_photo
from aetherscan.settings import Settings

MAX_LABEL_CHARS = 120
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}
_EXTENSIONS |= {"BMP": ".bmp", "HEIF": ".heic"}
MB = 1024 * 1024


class Refused(Exception):
    """A request that the server will not do, with a message for people that names the limit
    or the problem. ``code`` is the protocol's ErrorCode, ``status`` the HTTP status."""

    def __init__(self, message: str, *, code: str = "limit", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True)
class CheckedPhoto:
    extension: str
    width: int
    height: int


def make_label(filename: str, taken: set[str], index: int) -> str:
    """A unique, printable label for the photo that the client called ``filename``."""
    name = re.split(r"[/\\]", filename)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        name = f"photo-{index + 1}.jpg"
    stem, extension = os.path.splitext(name)
    if len(extension) > 12:
        stem, extension = name, ""
    stem = stem[: MAX_LABEL_CHARS - len(extension)]
    label, copy = stem + extension, 2
    while label in taken:
        label, copy = f"{stem} ({copy}){extension}", copy + 1
    return label


def check_size(
    filename: str, size: int, job_bytes: int, settings: Settings, kind: str = "photo"
) -> None:
    """Refuse a photo (or the ``kind`` "mask" of the photo ``filename``) of ``size`` bytes that
    breaks the per-photo or per-job byte limit."""
    if size == 0:
        empty = "the file is empty" if kind == "photo" else f"its {kind} is an empty file"
        raise Refused(f"{filename}: {empty}", code=f"bad_{kind}")
    if size > settings.max_photo_mb * MB:
        raise Refused(
            f"{filename}: the {kind} has {size / MB:.1f} MB, more than the limit of "
            f"{settings.max_photo_mb:g} MB per photo (setting max_photo_mb)",
            status=413,
        )
    if job_bytes + size > settings.max_job_mb * MB:
        raise Refused(
            f"{filename}: with this {kind} the job would have {(job_bytes + size) / MB:.1f} MB, "
            f"more than the limit of {settings.max_job_mb:g} MB per job (setting max_job_mb)",
            status=413,
        )


def check_video_size(label: str, size: int, max_mb: float) -> None:
    """Refuse a video of ``size`` bytes over ``max_mb`` (setting max_video_mb)."""
    if size > max_mb * MB:
        raise Refused(
            f"{label}: the video has {size / MB:.1f} MB, more than the limit of {max_mb:g} MB "
            "per video (setting max_video_mb)",
            status=413,
        )


def check_photo(filename: str, data: bytes, settings: Settings) -> CheckedPhoto:
    """Decode the photo fully to be sure that the engine can read it. Blocking: run in a thread."""
    try:
        photo = verify_photo(data, max_megapixels=settings.max_photo_megapixels)
    except PhotoError as exc:
        raise Refused(f"{filename}: {exc}", code="bad_photo") from None
    return CheckedPhoto(_extension(photo.format), photo.width, photo.height)


def check_mask(label: str, data: bytes, photo_size: tuple[int, int], settings: Settings) -> str:
    """Decode the mask of the photo ``label`` and check it against the photo's upright size;
    its file extension. Blocking: run in a thread."""
    try:
        masks.check_mask(data, label, photo_size, max_megapixels=settings.max_photo_megapixels)
    except masks.MaskError as exc:
        raise Refused(str(exc), code="bad_mask") from None
    with Image.open(io.BytesIO(data)) as image:
        return _extension(image.format or "")


def _extension(kind: str) -> str:
    return _EXTENSIONS.get(kind, ".img")


def name_within(text: str, limit: int) -> str:
    """A client's file name cut to ``limit`` characters before it is looked at: its last path
    component, and of a long one the start and the extension (a label keeps 120 characters)."""
    text = text[max(text.rfind("/"), text.rfind("\\")) + 1 :]
    return text if len(text) <= limit else text[: limit - 16] + text[-16:]


def decode_data_url(data: str, label: str, code: str = "bad_photo") -> bytes:
    """The bytes of a ``data:<type>;base64,<payload>`` URL, or Refused saying what is wrong."""
    header, comma, payload = data.partition(",")
    if not data.startswith("data:") or not comma or not header.endswith(";base64"):
        shown = data[:30] + ("..." if len(data) > 30 else "")
        raise Refused(
            f'{label}: "data" is not a base64 data URL (expected "data:image/jpeg;base64,...", '
            f"got {shown!r})",
            code=code,
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(
            f'{label}: the base64 in "data" is damaged or truncated ({exc})', code=code
        ) from None
