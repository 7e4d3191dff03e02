"""The file names that photos get inside exports: unique and safe on Linux, macOS and Windows.

A photo's name is its client's label (``IMG_1.jpg``, ``IMG_1 (2).jpg``), and any string can be
a label. Inside an export (the zips' ``images/`` and ``depth/`` folders, the COLMAP model's
image names, ``transforms.json``'s ``file_path``, ``cameras.json``'s ``file_name``) a photo is
known by ``export_names``, made from the labels alone, so every file that refers to a photo
agrees with every other, with or without the photos, in every export of the same result:

* Unicode NFC (macOS would otherwise store one name in two forms); characters that Windows
  forbids (``< > : " / \\ | ? *``), control and other unprintable characters become ``_``.
* No dots or spaces at the end (Windows drops them), no dot at the start (hidden on Linux and
  macOS, and ``.``, ``..`` are folders): ``..jpg`` becomes ``_.jpg``, ``...`` becomes ``photo``.
* Windows' device names (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0`` to ``COM9``, ``LPT0`` to
  ``LPT9``, ``COM¹`` ..., with any extension) get a ``_`` in front.
* At most ``MAX_NAME_BYTES`` bytes of UTF-8, the extension kept.
* Unique where Windows and macOS compare names, ignoring case and Unicode forms: of two names
  that clash, the first in view order keeps its name and the next gets ``_2`` before its
  extension (``_3``, ... while that is taken too).

A label that needs none of this is its own file name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# 100 bytes leave room below Windows' 260-character paths for the folder a zip is unpacked in.
MAX_NAME_BYTES = 100
_FORBIDDEN = set('<>:"/\\|?*')
_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{n}" for port in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")
}
_FALLBACK = "photo"
_MAX_EXTENSION = 10  # characters after the last dot that still count as an extension


def export_names(labels: Sequence[str]) -> list[str]:
    """The file name inside exports of each photo label, in the same order."""
    return unique_names([safe_name(label) for label in labels])


def safe_name(label: str) -> str:
    """One label as a file name that every file system accepts (not yet made unique)."""
    name = unicodedata.normalize("NFC", label)
    name = "".join("_" if ch in _FORBIDDEN or not ch.isprintable() else ch for ch in name)
    stem, extension = split_extension(name.rstrip(". "))
    if stem.startswith("."):
        stem = "_" + stem[1:].lstrip(".")
    if stem.split(".")[0].rstrip(" ").upper() in _DEVICES:
        stem = "_" + stem
    return _fit(stem, extension)


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with ``_2``, ``_3``, ... before the extension of each one that clashes with an
    earlier one on a file system that ignores case and Unicode forms."""
    keys = [clash_key(name) for name in names]
    taken = set(keys)  # a new name never takes another photo's own name
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    unique = []
    for index, name in enumerate(names):
        if first[keys[index]] != index:
            stem, extension = split_extension(name)
            number = 2
            while clash_key(candidate := _fit(stem, extension, f"_{number}")) in taken:
                number += 1
            taken.add(clash_key(candidate))
            name = candidate
        unique.append(name)
    return unique


def clash_key(name: str) -> str:
    """Equal for two names that Windows or macOS would take for the same file."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def split_extension(name: str) -> tuple[str, str]:
    """(stem, extension with its dot); the extension is a short run of letters and digits after
    the last dot, or empty."""
    stem, dot, extension = name.rpartition(".")
    if dot and 0 < len(extension) <= _MAX_EXTENSION and extension.isalnum():
        return stem, dot + extension
    return name, ""


def _fit(stem: str, extension: str, tag: str = "") -> str:
    """``stem + tag + extension`` within MAX_NAME_BYTES, the stem cut where needed."""
    room = MAX_NAME_BYTES - len((tag + extension).encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    if not extension and not tag:
        stem = stem.rstrip(". ")
    return (stem or _FALLBACK) + tag + extension
