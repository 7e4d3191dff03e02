"""Photos in exports lose where they were taken (EXIF GPS, XMP and IPTC places) and keep their
pixels byte for byte, their orientation and their camera fields; a setting keeps the place."""

import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin
from PIL.PngImagePlugin import PngInfo

from aetherscan.export import export, export_file
from aetherscan.export.metadata import location_left, strip_location
from aetherscan.photos import HEIF_SUPPORTED, open_photo_array, read_size
from aetherscan.reconstruction import Reconstruction, View
from aetherscan.settings import Settings

MAKE, MODEL, FOCAL_MM, TAKEN = 0x010F, 0x0110, 0x920A, 0x9003
ORIENTATION, EXIF_IFD, GPS_IFD = 0x0112, 0x8769, 0x8825
SECRET = b"WHERE-I-LIVE"  # in the GPS directory (GPSProcessingMethod): must never come out
GPS = {1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0), 27: b"ASCII\0\0\0" + SECRET}
PLACES = [b"51,30.444N", b"0,7.665W", b"Lower Slaughter", b"Gloucestershire", b"51.5074", b"35/1"]
XMP = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/"
    exif:GPSLatitude="51,30.444N" exif:GPSLongitude='0,7.665W' xmp:Rating="4"
    drone-dji:GpsLatitude="51.5074">
   <exif:GPSAltitude>35/1</exif:GPSAltitude>
   <photoshop:City>Lower Slaughter</photoshop:City>
   <photoshop:State/>
   <Iptc4xmpExt:LocationShown><rdf:Bag><rdf:li rdf:parseType="Resource">
    <Iptc4xmpExt:ProvinceState>Gloucestershire</Iptc4xmpExt:ProvinceState>
   </rdf:li></rdf:Bag></Iptc4xmpExt:LocationShown>
   <xmp:CreatorTool>AetherScan test</xmp:CreatorTool>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def _exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[MAKE], exif[MODEL], exif[ORIENTATION] = "Acme", "Phone 9", orientation
    exif.get_ifd(EXIF_IFD).update({FOCAL_MM: 4.25, TAKEN: "2024:05:01 10:00:00"})
    exif.get_ifd(GPS_IFD).update(GPS)
    return exif.tobytes()


def _iptc_segment() -> bytes:
    """A JPEG APP13 segment: Photoshop resources with IPTC city, country and a title."""
    records = b"".join(
        b"\x1c\x02" + bytes([dataset]) + struct.pack(">H", len(text)) + text
        for dataset, text in ((5, b"Flowerpot"), (90, b"Lower Slaughter"), (101, b"England"))
    )
    resource = b"8BIM\x04\x04\0\0" + struct.pack(">I", len(records)) + records
    resource += b"\0" * (len(records) % 2)
    body = b"Photoshop 3.0\0" + resource
    return b"\xff\xed" + struct.pack(">H", len(body) + 2) + body


def _pixels(size=(64, 48), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _jpeg(orientation: int = 1) -> bytes:
    buffer = io.BytesIO()
    _pixels().save(buffer, "JPEG", exif=_exif(orientation), xmp=XMP, quality=90)
    data = buffer.getvalue()
    return data[:2] + _iptc_segment() + data[2:]


def _scan(data: bytes) -> bytes:
    """A JPEG's compressed pixels: everything from its first start-of-scan on."""
    return data[data.index(b"\xff\xda") :]


def _one_photo_scene(size, name) -> Reconstruction:
    width, height = size
    K = np.array([[60.0, 0, width / 2], [0, 60, height / 2], [0, 0, 1]])
    empty = np.zeros((0, 3), np.float32)
    view = View(name, width, height, K, np.eye(4), empty, empty.astype(np.uint8), empty[:, 0])
    return Reconstruction("synthetic", [view])


def _exported(tmp_path, data: bytes, *, name="IMG_1.jpg", keep=False) -> bytes:
    source = tmp_path / "upload"
    source.write_bytes(data)
    scene = _one_photo_scene(read_size(data), name)
    path = export(
        scene, "colmap", tmp_path / "colmap.zip", photos={name: source}, keep_photo_location=keep
    )
    with zipfile.ZipFile(path) as archive:
        return archive.read(f"images/{name}")


def _assert_no_place(data: bytes) -> None:
    assert SECRET not in data
    for place in PLACES:
        assert place not in data, place
    for match in re.finditer(rb"Exif\0\0(?=II\*\0|MM\0\*)", data):  # a second image's too
        exif = Image.Exif()
        exif.load(data[match.start() :])
        assert not exif.get_ifd(GPS_IFD)
    assert not location_left(data)


def _assert_camera_fields_kept(exif: Image.Exif) -> None:
    assert (exif[MAKE], exif[MODEL]) == ("Acme", "Phone 9")
    assert exif.get_ifd(EXIF_IFD)[FOCAL_MM] == 4.25
    assert exif.get_ifd(EXIF_IFD)[TAKEN] == "2024:05:01 10:00:00"


def test_jpeg_loses_its_place_and_keeps_pixels_orientation_and_camera(tmp_path):
    original = _jpeg()
    assert location_left(original) and SECRET in original and b"Lower Slaughter" in original
    exported = _exported(tmp_path, original)

    _assert_no_place(exported)
    assert len(exported) == len(original) and _scan(exported) == _scan(original)  # not re-encoded
    with Image.open(io.BytesIO(exported)) as image:
        exif = image.getexif()
        _assert_camera_fields_kept(exif)
        assert exif[ORIENTATION] == 1
        xmp = image.info["xmp"]
    # The XMP is still XML, with what is not a place in it.
    packet = xmp[xmp.index(b"<x:xmpmeta") : xmp.index(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")]
    description = ET.fromstring(packet).find(
        ".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"
    )
    assert description.get("{http://ns.adobe.com/xap/1.0/}Rating") == "4"
    assert description.find("{http://ns.adobe.com/xap/1.0/}CreatorTool").text == "AetherScan test"
    assert not [key for key in description.attrib if "GPS" in key.upper()]
    assert b"Flowerpot" in exported and b"England" not in exported  # IPTC: the title stays


def test_a_second_image_in_the_file_loses_its_place_too(tmp_path):
    """Phones append more images (MPF: depth, HDR gain maps), each with its own EXIF."""
    original = _jpeg() + _jpeg()
    exported = _exported(tmp_path, original)
    _assert_no_place(exported)
    assert len(exported) == len(original)


def test_keep_photo_location_copies_the_photo_byte_for_byte(tmp_path):
    original = _jpeg()
    assert _exported(tmp_path, original, keep=True) == original
    assert Settings().keep_photo_location is False


def test_a_turned_photo_is_written_upright_with_its_camera_fields_and_no_place(tmp_path):
    original = _jpeg(orientation=6)
    exported = _exported(tmp_path, original)
    _assert_no_place(exported)
    with Image.open(io.BytesIO(exported)) as image:
        assert image.size == (48, 64)
        exif = image.getexif()
        _assert_camera_fields_kept(exif)
        assert exif[ORIENTATION] == 1
    upright = open_photo_array(original).astype(float)
    assert np.abs(open_photo_array(exported).astype(float) - upright).mean() < 8
    kept = _exported(tmp_path, original, keep=True)
    with Image.open(io.BytesIO(kept)) as image:
        assert image.getexif().get_ifd(GPS_IFD)[27] == GPS[27]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_damaged_metadata_is_dropped_by_encoding_the_photo_again(tmp_path):
    original = bytearray(_jpeg())
    tiff = original.index(b"Exif\0\0") + 6
    ifd0 = tiff + struct.unpack_from(">I", original, tiff + 4)[0]
    struct.pack_into(">H", original, ifd0, 0xFFFF)  # IFD0 claims more entries than there are
    exported = _exported(tmp_path, bytes(original))
    _assert_no_place(exported)
    upright = open_photo_array(bytes(original)).astype(float)
    assert np.abs(open_photo_array(exported).astype(float) - upright).mean() < 8


def _png() -> bytes:
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode("utf-8"), zip=True)
    info.add_text("Comment", "kept")
    buffer = io.BytesIO()
    _pixels().save(buffer, "PNG", exif=_exif(), pnginfo=info)
    return buffer.getvalue()


def _webp() -> bytes:
    buffer = io.BytesIO()
    _pixels().save(buffer, "WEBP", exif=_exif(), xmp=XMP, lossless=True)
    return buffer.getvalue()


def _tiff() -> bytes:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[MAKE], tags[MODEL], tags[ORIENTATION], tags[700] = "Acme", "Phone 9", 1, XMP
    tags[EXIF_IFD] = {FOCAL_MM: 4.25, TAKEN: "2024:05:01 10:00:00"}
    tags[GPS_IFD] = GPS
    buffer = io.BytesIO()
    _pixels().save(buffer, "TIFF", tiffinfo=tags)
    return buffer.getvalue()


def _heic() -> bytes:
    buffer = io.BytesIO()
    _pixels().save(buffer, "HEIF", exif=_exif(), xmp=XMP, quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        _png,
        _webp,
        _tiff,
        pytest.param(_heic, marks=pytest.mark.skipif(not HEIF_SUPPORTED, reason="no pillow-heif")),
    ],
)
def test_other_formats_lose_their_place_in_place(tmp_path, make):
    original = make()
    assert location_left(original) and SECRET in original
    exported = _exported(tmp_path, original)
    _assert_no_place(exported)
    with Image.open(io.BytesIO(exported)) as image:
        image.load()  # the PNG's checksums hold
        _assert_camera_fields_kept(image.getexif())
    np.testing.assert_array_equal(open_photo_array(exported), open_photo_array(original))
    if make is not _png:  # a compressed PNG text chunk may change length; nothing else does
        assert len(exported) == len(original)
    else:
        assert b"kept" in exported


def test_every_export_with_photos_strips_them(scene, photos, tmp_path):
    photos["front.jpg"].write_bytes(_jpeg())  # 64 x 48, as the view
    export_file(scene, tmp_path / "scene.zip", photos=photos)
    for fmt in ("colmap", "colmap_text", "nerfstudio"):
        export(scene, fmt, tmp_path / f"{fmt}.zip", photos=photos)
    for path in tmp_path.glob("*.zip"):
        with zipfile.ZipFile(path) as archive:
            _assert_no_place(archive.read("images/front.jpg"))
            if path.name == "scene.zip":
                readme = archive.read("README.txt").decode()
                assert "without" in readme and "place where they were taken" in readme


def test_strip_location_leaves_a_photo_without_one_as_it_is():
    buffer = io.BytesIO()
    _pixels().save(buffer, "JPEG", exif=Image.Exif().tobytes())
    assert strip_location(buffer.getvalue()) == buffer.getvalue()
    assert strip_location(_png()[:40]) == _png()[:40]  # cut short: left as it is
