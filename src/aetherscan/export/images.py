"""Photos beside a model, under their own names, upright as the cameras see them.

Exports that come "with the photos" (COLMAP model, transforms.json, the archive) copy each
view's original file. A photo whose EXIF orientation rotates it is written again upright, since
COLMAP and nerfstudio read the stored pixels and ignore the tag, while the cameras (width,
height, K) describe the upright photo.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from PIL import Image

from aetherscan.photos import open_photo, read_size
from aetherscan.reconstruction import View

log = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112


def file_in(folder: Path, name: str) -> Path:
    """``folder / name`` for a view name, refusing names that would leave the folder."""
    relative = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\0" in name
        or relative.is_absolute()
        or any(part in ("", ".", "..") for part in relative.parts)
    ):
        raise ValueError(f"the photo name {name!r} cannot be used as a file name in an export")
    return folder.joinpath(*relative.parts)


def copy_photos(views: Sequence[View], photos: Mapping[str, Path] | None, folder: Path) -> None:
    """Copy every view's photo to ``folder/<view name>``; no photos given, nothing copied."""
    if photos is None:
        log.info("no photos given: the export refers to photos it does not contain")
        return
    missing = [view.name for view in views if view.name not in photos]
    if missing:
        raise ValueError(f"no photo file given for the views {', '.join(missing)}")
    for view in views:
        copy_upright(Path(photos[view.name]), file_in(folder, view.name), view)


def copy_upright(source: Path, destination: Path, view: View) -> None:
    size = read_size(source)
    if size != (view.width, view.height):
        raise ValueError(
            f"the photo {source} is {size[0]}x{size[1]} pixels upright, but the view "
            f"{view.name!r} is {view.width}x{view.height}: not the photo it was made from"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        image_format = image.format
    if orientation in (None, 1):
        shutil.copyfile(source, destination)
        return
    upright = open_photo(source)
    options = {"quality": 95} if image_format == "JPEG" else {}
    upright.save(destination, format=image_format, **options)
