"""Where a photo was taken, taken out of its file without touching its pixels.

Phones write the place of every photo into it: the EXIF GPS block, and often XMP and IPTC place
names too. ``strip_location`` returns the same file without them. Every edit keeps the length
of what it edits, so no offset, chunk size or pointer elsewhere in the file changes and the
compressed pixels stay byte for byte:

* EXIF (JPEG APP1, PNG eXIf, WebP EXIF, TIFF's own directories, and any ``Exif\\0\\0`` block
  further in, such as the second image of an iPhone JPEG or a HEIC's Exif item): the GPS
  directory's entry leaves its directory (the entries after it move up, the freed bytes become
  zeros) and the GPS directory and its values become zeros. Orientation, camera and lens
  fields, times and the thumbnail stay.
* XMP: each location property (``exif:GPS*``, ``photoshop:City``, ``State``, ``Country``,
  ``Iptc4xmpCore:Location``, ``Iptc4xmpExt:LocationCreated``/``LocationShown``, drones'
  ``Gps*`` and altitudes, ...) becomes spaces, which leaves the XML valid.
* IPTC (JPEG APP13, TIFF): city, sublocation, province or state, country and its code become
  spaces.

PNG text chunks are rebuilt with their checksums (a compressed XMP chunk changes length there,
which PNG allows). ``location_left`` checks a result; ``aetherscan.export.images`` re-encodes
the rare file whose location survives (metadata this module cannot parse).
"""

from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import Image

EXIF_GPS_IFD = 0x8825
_IPTC_TAG, _PHOTOSHOP_TAG = 33723, 34377
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_IFDS = 64  # a chain of directories longer than this is a loop or an attack
_MAX_XMP_BYTES = 16 << 20  # the most a compressed PNG XMP chunk may inflate to

_PROPERTY = (
    rb"(?!xmlns[:=])(?:[A-Za-z_][\w.\-]*:)?"
    rb"(?:(?i:gps)\w*|Location(?:Created|Shown)?|City|State|ProvinceState|Sublocation"
    rb"|Country(?:Code|Name)?|(?:Absolute|Relative)?Altitude|Latitude|Longitude)"
)
_XMP_ATTRIBUTE = re.compile(rb"(?<=\s)" + _PROPERTY + rb"\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_XMP_EMPTY_ELEMENT = re.compile(rb"<" + _PROPERTY + rb"(?:\s[^>]*)?/>")
_XMP_ELEMENT = re.compile(rb"<(" + _PROPERTY + rb")(?:\s[^>]*)?>.*?</\1\s*>", re.DOTALL)
_XMP_PACKET = re.compile(rb"<(x:x[am]pmeta|rdf:RDF)[\s>].*?</\1\s*>", re.DOTALL)
_EXIF_BLOCK = re.compile(rb"Exif\0\0(?=II\x2a\0|MM\0\x2a)")
_PHOTOSHOP_SEGMENT = re.compile(rb"\xff\xed(..)Photoshop 3\.0\0", re.DOTALL)  # JPEG APP13
_IPTC_PLACES = {90, 92, 95, 100, 101}  # city, sublocation, province/state, country code, country
_RAW_PROFILES = (b"exif", b"xmp", b"iptc", b"app1", b"8bim")


class MetadataError(ValueError):
    """Metadata too damaged to edit in place."""


def strip_location(data: bytes) -> bytes:
    """The photo file ``data`` without the place it was taken (see the module docstring).
    Raises MetadataError where its metadata is too damaged to edit."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _strip_png(data)
        buf = bytearray(data)
        if data.startswith(b"\xff\xd8"):
            _strip_jpeg(buf)
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            _strip_webp(buf)
        elif data[:4] in (b"II\x2a\0", b"MM\0\x2a"):
            _strip_tiff(buf, 0, len(buf), whole_file=True)
        # Blocks that the containers above do not name (a second image, a HEIC's items).
        for match in list(_EXIF_BLOCK.finditer(buf)):
            _strip_tiff(buf, match.end(), len(buf))
        for match in list(_PHOTOSHOP_SEGMENT.finditer(buf)):
            _blank_photoshop(buf, match.end(), match.start() + 2 + int.from_bytes(match[1]))
        _blank_xmp(buf, 0, len(buf))
        return bytes(buf)
    except (IndexError, struct.error, zlib.error) as exc:
        raise MetadataError(f"damaged metadata ({exc})") from exc


def location_left(data: bytes) -> bool:
    """Whether the photo file ``data`` still says where it was taken, as Pillow reads it."""
    with Image.open(io.BytesIO(data)) as image:
        if image.getexif().get_ifd(EXIF_GPS_IFD):
            return True
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    xmp = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    return bool(_XMP_ATTRIBUTE.search(xmp) or _XMP_ELEMENT.search(xmp))


# -- EXIF and TIFF ---------------------------------------------------------------------------
def _strip_tiff(buf: bytearray, base: int, end: int, *, whole_file: bool = False) -> None:
    """Drop the GPS directory of the TIFF structure at ``buf[base:end]``; in a TIFF file also
    blank the place names of its IPTC tags (its XMP tag is one more XMP packet)."""
    order = bytes(buf[base : base + 2])
    if order not in (b"II", b"MM") or end - base < 8:
        raise MetadataError("not a TIFF header")
    e = "<" if order == b"II" else ">"
    if _read(buf, e + "H", base + 2, end) != 42:
        raise MetadataError("not a classic TIFF (BigTIFF is not edited)")
    offset = _read(buf, e + "I", base + 4, end)
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) < _MAX_IFDS:
        seen.add(offset)
        offset = _strip_ifd(buf, base, end, e, offset, whole_file)


def _strip_ifd(buf: bytearray, base: int, end: int, e: str, offset: int, whole: bool) -> int:
    """Edit one directory; returns the offset of the next one (0 at the end of the chain)."""
    start = base + offset
    count = _read(buf, e + "H", start, end)
    table = start + 2
    if table + 12 * count + 4 > end:
        raise MetadataError("a TIFF directory runs past its block")
    entries = [bytes(buf[table + 12 * i : table + 12 * i + 12]) for i in range(count)]
    following = _read(buf, e + "I", table + 12 * count, end)
    kept = []
    for index, entry in enumerate(entries):
        tag, kind, n, value = struct.unpack(e + "HHII", entry)
        if tag == EXIF_GPS_IFD:
            _zero_ifd(buf, base, end, e, value)
            continue
        kept.append(entry)
        if whole and tag in (_IPTC_TAG, _PHOTOSHOP_TAG):
            size = _TYPE_SIZES.get(kind, 0) * n
            first = base + value if size > 4 else table + 12 * index + 8
            blank = _blank_iptc if tag == _IPTC_TAG else _blank_photoshop
            blank(buf, first, min(first + size, end))
    if len(kept) < count:
        # The directory shrinks in place: same entries in the same order, then zeros.
        packed = struct.pack(e + "H", len(kept)) + b"".join(kept) + struct.pack(e + "I", following)
        buf[start : table + 12 * count + 4] = packed.ljust(2 + 12 * count + 4, b"\0")
    return following


def _zero_ifd(buf: bytearray, base: int, end: int, e: str, offset: int) -> None:
    """Zeros over a directory and every value it keeps outside its table."""
    start = base + offset
    if not base < start < end - 2:
        return
    count = _read(buf, e + "H", start, end)
    table = start + 2
    stop = min(table + 12 * count + 4, end)
    for i in range(count):
        entry = table + 12 * i
        if entry + 12 > end:
            break
        _, kind, n, value = struct.unpack_from(e + "HHII", buf, entry)
        size = _TYPE_SIZES.get(kind, 0) * n
        if size > 4 and base + value < end:
            buf[base + value : min(base + value + size, end)] = bytes(min(size, end - base - value))
    buf[start:stop] = bytes(stop - start)


def _read(buf: bytearray, fmt: str, at: int, end: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > end:
        raise MetadataError("a TIFF offset points outside its block")
    return struct.unpack_from(fmt, buf, at)[0]


# -- XMP and IPTC ----------------------------------------------------------------------------
def _blank_xmp(buf: bytearray, start: int, stop: int) -> None:
    """Spaces over every location property of the XMP packets in ``buf[start:stop]``."""
    for packet in list(_XMP_PACKET.finditer(buf, start, stop)):
        for pattern in (_XMP_EMPTY_ELEMENT, _XMP_ELEMENT, _XMP_ATTRIBUTE):
            for match in list(pattern.finditer(buf, packet.start(), packet.end())):
                buf[match.start() : match.end()] = b" " * (match.end() - match.start())


def _blank_iptc(buf: bytearray, start: int, stop: int) -> None:
    """Spaces over the place names of IPTC-IIM records in ``buf[start:stop]``."""
    at = start
    while at + 5 <= stop and buf[at] == 0x1C:
        record, dataset, size = buf[at + 1], buf[at + 2], int.from_bytes(buf[at + 3 : at + 5])
        at += 5
        if size & 0x8000:  # an extended size: its own length in bytes comes first
            width = size & 0x7FFF
            size = int.from_bytes(buf[at : at + width])
            at += width
        if record == 2 and dataset in _IPTC_PLACES:
            buf[at : min(at + size, stop)] = b" " * (min(at + size, stop) - at)
        at += size


def _blank_photoshop(buf: bytearray, start: int, stop: int) -> None:
    """The IPTC inside Photoshop image resources (``8BIM`` blocks), id 0x0404."""
    at = start
    while at + 12 <= stop and buf[at : at + 4] == b"8BIM":
        resource = int.from_bytes(buf[at + 4 : at + 6])
        name_length = buf[at + 6]
        at += 6 + (name_length + 2) // 2 * 2  # a Pascal string padded to even length
        if at + 4 > stop:
            return
        size = int.from_bytes(buf[at : at + 4])
        at += 4
        if resource == 0x0404:
            _blank_iptc(buf, at, min(at + size, stop))
        at += size + size % 2


# -- containers ------------------------------------------------------------------------------
def _strip_jpeg(buf: bytearray) -> None:
    at = 2
    while at + 4 <= len(buf):
        if buf[at] != 0xFF:
            raise MetadataError("a JPEG segment does not start with a marker")
        marker = buf[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan or end of image: no metadata past here
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        end = at + 2 + int.from_bytes(buf[at + 2 : at + 4])
        payload = at + 4
        if marker == 0xE1 and buf.startswith(b"Exif\0\0", payload):
            _strip_tiff(buf, payload + 6, end)
        elif marker == 0xE1:
            _blank_xmp(buf, payload, end)
        elif marker == 0xED and buf.startswith(b"Photoshop 3.0\0", payload):
            _blank_photoshop(buf, payload + 14, end)
        at = end


def _strip_webp(buf: bytearray) -> None:
    at = 12
    while at + 8 <= len(buf):
        fourcc = bytes(buf[at : at + 4])
        size = int.from_bytes(buf[at + 4 : at + 8], "little")
        payload, end = at + 8, min(at + 8 + size, len(buf))
        if fourcc == b"EXIF":
            skip = 6 if buf.startswith(b"Exif\0\0", payload) else 0
            _strip_tiff(buf, payload + skip, end)
        elif fourcc == b"XMP ":
            _blank_xmp(buf, payload, end)
        at = payload + size + size % 2


def _strip_png(data: bytes) -> bytes:
    out = [data[:8]]
    at = 8
    while at + 12 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        body = data[at + 8 : at + 8 + size]
        chunk_end = at + 12 + size
        changed = _png_chunk(kind, body)
        if changed is None:
            out.append(data[at:chunk_end])
        elif changed:
            crc = zlib.crc32(kind + changed)
            out.append(struct.pack(">I4s", len(changed), kind) + changed + struct.pack(">I", crc))
        at = chunk_end
        if kind == b"IEND":
            break
    out.append(data[at:])
    return b"".join(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes | None:
    """The chunk's new body, b"" to leave it out, or None to keep it as it is."""
    if kind == b"eXIf":
        edited = bytearray(body)
        _strip_tiff(edited, 0, len(edited))
        return bytes(edited) if edited != body else None
    if kind not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    keyword, _, rest = body.partition(b"\0")
    if keyword.startswith(b"Raw profile type ") and keyword[17:].lower() in _RAW_PROFILES:
        return b""  # hex-encoded metadata (ImageMagick); its location cannot be edited
    if keyword != b"XML:com.adobe.xmp":
        return None
    if kind == b"iTXt":
        compressed, method, rest = rest[0], rest[1], rest[2:]
        language, _, rest = rest.partition(b"\0")
        translated, _, text = rest.partition(b"\0")
        head = keyword + b"\0" + bytes([compressed, method]) + language + b"\0" + translated + b"\0"
    elif kind == b"zTXt":
        compressed, head, text = 1, keyword + b"\0\0", rest[1:]
    else:
        compressed, head, text = 0, keyword + b"\0", rest
    if compressed:
        inflate = zlib.decompressobj()
        text = inflate.decompress(text, _MAX_XMP_BYTES)
        if inflate.unconsumed_tail:
            return b""  # too large to check: left out
    edited = bytearray(text)
    _blank_xmp(edited, 0, len(edited))
    if edited == text:
        return None
    return head + (zlib.compress(bytes(edited)) if compressed else bytes(edited))
