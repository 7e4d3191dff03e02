"""Photos beside a model, under their export names, upright as the cameras see them, and by
default without the place where they were taken.

Exports that come "with the photos" (COLMAP model, transforms.json, the archive) copy each
view's original file under its name from ``aetherscan.export.names``. Its location (EXIF GPS,
XMP and IPTC place names) is taken out in place (``aetherscan.export.metadata``): the pixels
and every other field stay byte for byte. A photo whose EXIF orientation rotates it is written
again upright, with its EXIF (location left out, orientation 1), since COLMAP and nerfstudio
read the stored pixels and ignore the tag, while the cameras (width, height, K) describe the
upright photo. So is a photo whose metadata is too damaged to edit in place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

from aetherscan.export.metadata import EXIF_GPS_IFD, location_left, strip_location
from aetherscan.export.names import export_names
from aetherscan.photos import open_photo, read_size
from aetherscan.reconstruction import View

log = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112


MISSING_README = """AetherScan export ({what}) without its photos

Photos: {note}
"""


def copy_photos(
    views: Sequence[View],
    photos: Mapping[str, Path] | None,
    folder: Path,
    *,
    keep_location: bool = False,
) -> bool:
    """Copy every view's photo to ``folder/<export name>``: True. No photos given: nothing
    copied, False (the caller says so in its README.txt, ``missing_photos_note``)."""
    if photos is None:
        log.warning("no photos given: the export refers to photos it does not contain")
        return False
    missing = [view.name for view in views if view.name not in photos]
    if missing:
        raise ValueError(f"no photo file given for the views {', '.join(missing)}")
    names = export_names([view.name for view in views])
    for view, name in zip(views, names, strict=True):
        copy_photo(Path(photos[view.name]), folder / name, view, keep_location=keep_location)
    return True


def missing_photos_note(views: Sequence[View], folder: str = "images") -> str:
    """For a README.txt: the photos are not included, and the file each one goes to."""
    names = export_names([view.name for view in views])
    lines = [
        f"  {folder}/{name}    <- {view.name}" for view, name in zip(views, names, strict=True)
    ]
    return (
        f"NOT INCLUDED. This export was made without the photos, so {folder}/ is\n"
        "missing, and the model refers to photos that are not here. Before using it, put each\n"
        "photo under the name the model gives it (upright as it is shown, its EXIF\n"
        "orientation applied; the cameras describe the upright photo):\n\n" + "\n".join(lines)
    )


def write_missing_photos_readme(root: Path, views: Sequence[View], what: str) -> None:
    text = MISSING_README.format(what=what, note=missing_photos_note(views))
    (root / "README.txt").write_text(text, encoding="utf-8")


def copy_photo(source: Path, destination: Path, view: View, *, keep_location: bool) -> None:
    size = read_size(source)
    if size != (view.width, view.height):
        raise ValueError(
            f"the photo of {view.name!r} is {size[0]}x{size[1]} pixels upright, but its view "
            f"is {view.width}x{view.height}: not the photo it was made from"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (None, 1):
        data = source.read_bytes()
        if keep_location:
            destination.write_bytes(data)
            return
        stripped = _without_location(data)
        if stripped is not None:
            destination.write_bytes(stripped)
            return
        log.warning("%s: its location could not be taken out in place; encoded again", view.name)
    write_upright(source, destination, keep_location=keep_location)


def write_upright(source: Path, destination: Path, *, keep_location: bool) -> None:
    """The photo decoded, turned upright and encoded again in its own format, with its EXIF
    (orientation 1, and without GPS unless ``keep_location``) but without XMP or IPTC."""
    upright = open_photo(source)
    with Image.open(source) as image:
        image_format = image.format
        try:
            exif = image.getexif()
            exif[_EXIF_ORIENTATION] = 1
            if not keep_location:
                exif.pop(EXIF_GPS_IFD, None)
            exif_bytes = exif.tobytes()
        except Exception:  # any of Pillow's EXIF parse errors: write no EXIF
            exif_bytes = b""
    options = {"quality": 95} if image_format in ("JPEG", "WEBP", "HEIF") else {}
    upright.save(destination, format=image_format, exif=exif_bytes, **options)


def _without_location(data: bytes) -> bytes | None:
    """The photo without its location, edited in place; None where that did not work."""
    try:
        stripped = strip_location(data)
        return None if location_left(stripped) else stripped
    # MetadataError, or what Pillow's plugins raise on reading the result back (OSError,
    # SyntaxError, struct.error, ...): encoded again instead.
    except Exception:
        return None
