"""Masks given with photos: which file is the mask of which photo, and whether it fits.

A mask is an image of its photo's size as the photo is shown (after the photo's EXIF
orientation): black (0) marks pixels to ignore, anything else the subject. The server, the CLI
and the Python API all name masks the same way: the mask of ``IMG_1.jpg`` is ``IMG_1.jpg``
itself (in another folder or upload field), ``IMG_1.jpg.png`` (the name COLMAP uses), or
``IMG_1`` with any image suffix (``IMG_1.png``). The engine reads the masks
(``aetherscan.engines.base.Photo.mask_path``); this module only pairs and checks them, so that
a bad mask is refused when it arrives, with a sentence naming its photo.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path, PurePath

from PIL import Image, ImageOps

from aetherscan.photos import PhotoError, read_size

log = logging.getLogger(__name__)

MASK_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"})
NAMING = (
    "the mask of IMG_1.jpg is named IMG_1.jpg, IMG_1.jpg.png as COLMAP names them, or IMG_1 "
    "with any image suffix, such as IMG_1.png"
)


class MaskError(ValueError):
    """A mask that cannot be used, or masks that cannot be paired; the message is for people."""


def pair_masks(
    photo_names: Sequence[str], mask_names: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Which mask is whose: ({photo name: mask name}, the mask names that fit no photo).

    A mask named exactly as a photo, or as a photo plus an image suffix, is that photo's; one
    named by a photo's stem is that photo's when only one photo has the stem. Raises MaskError
    for a mask that could be the mask of two photos, or for a photo with two masks.
    """
    photos = set(photo_names)
    by_stem: dict[str, list[str]] = {}
    for name in photo_names:
        by_stem.setdefault(PurePath(name).stem, []).append(name)
    pairs: dict[str, str] = {}
    unmatched: list[str] = []
    for mask in mask_names:
        path = PurePath(mask)
        has_image_suffix = path.suffix.lower() in MASK_SUFFIXES
        if mask in photos:
            owner = mask
        elif has_image_suffix and path.stem in photos:
            owner = path.stem  # IMG_1.jpg.png
        elif has_image_suffix and len(by_stem.get(path.stem, [])) == 1:
            owner = by_stem[path.stem][0]  # IMG_1.png
        elif has_image_suffix and path.stem in by_stem:
            candidates = " or ".join(sorted(by_stem[path.stem]))
            raise MaskError(
                f"the mask {mask} could be the mask of {candidates}; name it after one photo "
                f"in full, such as {sorted(by_stem[path.stem])[0]}.png"
            )
        else:
            unmatched.append(mask)
            continue
        if owner in pairs:
            raise MaskError(f"{owner} has two masks, {pairs[owner]} and {mask}; keep one")
        pairs[owner] = mask
    return pairs, unmatched


def find_masks(photos: Sequence[Path], folder: Path) -> dict[Path, Path]:
    """The mask file in ``folder`` of each photo file that has one (named as NAMING says);
    a photo without one has no mask. Raises MaskError when ``folder`` is no folder, or when
    its files cannot be told apart (two photos of one name, a mask that fits two photos)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskError(f"the masks folder {folder} does not exist")
    files = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in MASK_SUFFIXES
    )
    names: dict[str, set[Path]] = {}
    for photo in photos:
        names.setdefault(photo.name, set()).add(photo)
    pairs, unmatched = pair_masks(list(names), files)
    clash = sorted(name for name in pairs if len(names[name]) > 1)
    if clash:
        raise MaskError(
            f"two photos are called {clash[0]}; the masks in {folder} cannot tell them apart"
        )
    if unmatched:
        log.warning(
            "%d files in %s are the mask of no photo (%s): %s",
            len(unmatched),
            folder,
            NAMING,
            ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else ""),
        )
    return {photo: folder / pairs[photo.name] for photo in photos if photo.name in pairs}


def check_mask(
    source: Path | bytes,
    photo_name: str,
    photo_size: tuple[int, int],
    *,
    what: str = "its mask",
    max_megapixels: float = 100.0,
) -> None:
    """Refuse (MaskError, naming the photo) a mask that does not decode, whose size is not the
    photo's upright ``photo_size`` (width, height), or that is black everywhere. ``what``
    names the mask in the sentence. Blocking."""
    try:
        size = read_size(source, max_megapixels=max_megapixels)
        data = source if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            brightest = ImageOps.exif_transpose(image).convert("L").getextrema()[1]
    except PhotoError as exc:
        raise MaskError(f"{photo_name}: {what} cannot be used: {exc}") from None
    except Exception as exc:  # OSError, SyntaxError, ... from Pillow's plugins
        raise MaskError(
            f"{photo_name}: {what} cannot be used: the image data is damaged or truncated ({exc})"
        ) from None
    if size != tuple(photo_size):
        raise MaskError(
            f"{photo_name}: {what} is {size[0]}x{size[1]} pixels but the photo is "
            f"{photo_size[0]}x{photo_size[1]} (as shown, after its EXIF orientation); a mask "
            "must have its photo's size"
        )
    if brightest == 0:
        raise MaskError(
            f"{photo_name}: {what} is black everywhere, which would hide the whole photo "
            "(black marks what to ignore, anything else the subject)"
        )
