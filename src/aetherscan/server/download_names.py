"""The names that downloads are saved under: made from the job, not ``scene.*`` for all.

``flowerpot-16-photos-2026-12-01.ply``: the stem the photos' labels share (``flowerpot_01.jpg``,
``flowerpot_02.jpg``, ... give ``flowerpot``) or else the first photo's stem, the number of
photos, the day the job was made (UTC), then what tells one format from another of the same
extension (``-colmap.zip``, ``-nerfstudio.zip``; ``scene.*`` adds nothing) and ``-metres``
for a job scaled to metres. Only letters, digits and ``- _ .``: the name is a good file name on
every system (``aetherscan.export.names.safe_name`` on top), and ``content_disposition`` sends
it with an ASCII fallback for browsers that read only ``filename=``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from aetherscan.export.names import safe_name, split_extension

MAX_STEM_CHARS = 60
_FALLBACK = "scan"
_SEPARATORS = " _-.("
_UNSAFE = re.compile(r"[^\w.-]+")  # \w: Unicode letters and digits, and _


def download_name(
    labels: Sequence[str], created_at: float, file_name: str, *, metric: bool = False
) -> str:
    """The name to save the download ``file_name`` (``scene.ply``, ``colmap.zip``, ...) of a
    job with photos ``labels``, made at ``created_at`` (epoch seconds), under."""
    day = datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%d")
    kind, extension = split_extension(file_name)
    # scene.ply: nothing; scene_ascii.ply: ascii; colmap_text.zip: colmap-text
    kind = kind.removeprefix("scene").lstrip("_").replace("_", "-")
    parts = [_job_stem(labels), f"{len(labels)}-photos", day, kind, "metres" if metric else ""]
    return safe_name("-".join(_clean(part) for part in parts if part) + extension)


def content_disposition(name: str) -> str:
    """``attachment; filename="..."`` with an ASCII ``name``, plus ``filename*`` (RFC 6266,
    UTF-8) where the name has other characters."""
    ascii_name = _clean(
        unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    )
    if not split_extension(ascii_name)[0].strip("-_."):
        ascii_name = _FALLBACK + split_extension(name)[1]
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def _job_stem(labels: Sequence[str]) -> str:
    stems = [split_extension(label)[0] for label in labels]
    if not stems:
        return _FALLBACK
    common = _common_prefix(stems)
    n = len(common)
    if common and any(len(stem) > n and _same_kind(common[-1], stem[n]) for stem in stems):
        common = _without_last_word(common)  # cut inside a word or number: drop its start
    common = common.rstrip(_SEPARATORS)
    stem = common if len(_clean(common)) >= 2 else stems[0]
    return _clean(stem)[:MAX_STEM_CHARS].strip("-_.") or _FALLBACK


def _common_prefix(texts: Sequence[str]) -> str:
    """The characters at the start of every text."""
    first, last = min(texts), max(texts)  # the two that differ soonest
    end = 0
    while end < min(len(first), len(last)) and first[end] == last[end]:
        end += 1
    return first[:end]


def _same_kind(a: str, b: str) -> bool:
    return (a.isdigit() and b.isdigit()) or (a.isalpha() and b.isalpha())


def _without_last_word(text: str) -> str:
    kind = str.isdigit if text[-1].isdigit() else str.isalpha
    end = len(text)
    while end and kind(text[end - 1]):
        end -= 1
    return text[:end]


def _clean(text: str) -> str:
    """Letters, digits and ``- _ .`` only; any run of other characters becomes one ``-``."""
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"-{2,}", "-", _UNSAFE.sub("-", text)).strip("-")
