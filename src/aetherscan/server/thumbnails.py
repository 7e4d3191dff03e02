"""Small pictures of a job's photos, for a viewer that reopens the job.

``photos/0000-thumbnail.jpg`` beside ``photos/0000.jpg``: the photo upright (its EXIF
orientation applied), at most ``THUMBNAIL_SIDE_PX`` on its long side, as a JPEG without any
metadata (no EXIF, so no GPS, no XMP, no colour profile). Made on the first request, then
served from disk; it goes with the photos (a failed or cancelled job's at once, a finished
job's when it is deleted or expires).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from aetherscan.photos import open_photo
from aetherscan.server.results import making
from aetherscan.server.storage import PhotoRecord, writing

log = logging.getLogger(__name__)

THUMBNAIL_SIDE_PX = 256
JPEG_QUALITY = 85


def thumbnail_path(photo: PhotoRecord) -> Path:
    return photo.path.with_name(f"{photo.index:04d}-thumbnail.jpg")


def thumbnail(photo: PhotoRecord, max_megapixels: float) -> Path | None:
    """The thumbnail of ``photo``, made now if it is not yet; None when the photo is gone.
    Blocking: run in a thread."""
    path = thumbnail_path(photo)
    with making(path):
        if path.is_file():
            return path
        try:
            image = open_photo(photo.path, max_megapixels=max_megapixels)
        except FileNotFoundError:
            return None
        image.thumbnail((THUMBNAIL_SIDE_PX, THUMBNAIL_SIDE_PX), Image.Resampling.LANCZOS)
        # A new image: nothing of the photo's metadata (image.info: EXIF, ICC, XMP) comes along.
        bare = Image.frombytes("RGB", image.size, image.tobytes())
        partial = path.with_name(path.name + ".part")
        try:
            with writing("a thumbnail"):
                bare.save(partial, "JPEG", quality=JPEG_QUALITY, optimize=True)
                partial.replace(path)
        except FileNotFoundError:  # the photos were removed meanwhile
            return None
        finally:
            partial.unlink(missing_ok=True)
        if not photo.path.exists():  # removed while the thumbnail was being written
            path.unlink(missing_ok=True)
            return None
    log.info("made the thumbnail of photo %d of %s", photo.index, photo.path.parent.parent.name)
    return path
