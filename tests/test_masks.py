"""aetherscan.masks: which file is the mask of which photo, and the checks of a mask against its
photo (decodes, the photo's upright size, not black everywhere)."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from aetherscan.masks import MaskError, check_mask, find_masks, pair_masks

_ORIENTATION = 0x0112


def image_bytes(size, color=255, mode="L", fmt="PNG", orientation=None) -> bytes:
    image = Image.new(mode, size, color)
    buffer = io.BytesIO()
    if orientation is None:
        image.save(buffer, fmt)
    else:
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        image.save(buffer, fmt, exif=exif)
    return buffer.getvalue()


def test_masks_pair_by_name_by_colmap_name_and_by_stem():
    photos = ["a.jpg", "b.jpg", "c.JPG", "d.png"]
    pairs, unmatched = pair_masks(photos, ["a.jpg", "b.jpg.png", "c.png", "notes.txt", "zz.png"])
    assert pairs == {"a.jpg": "a.jpg", "b.jpg": "b.jpg.png", "c.JPG": "c.png"}
    assert unmatched == ["notes.txt", "zz.png"]


def test_a_full_name_wins_over_a_stem():
    pairs, _ = pair_masks(["a.jpg", "a.png"], ["a.png", "a.jpg.webp"])
    assert pairs == {"a.png": "a.png", "a.jpg": "a.jpg.webp"}


def test_a_mask_that_fits_two_photos_is_refused_with_a_name_that_would_work():
    with pytest.raises(
        MaskError, match=r"a\.webp could be the mask of a\.jpg or a\.png.*a\.jpg\.png"
    ):
        pair_masks(["a.jpg", "a.png"], ["a.webp"])


def test_a_photo_with_two_masks_is_refused():
    with pytest.raises(MaskError, match=r"a\.jpg has two masks, a\.jpg\.png and a\.png"):
        pair_masks(["a.jpg"], ["a.jpg.png", "a.png"])


def test_find_masks_in_a_folder_and_none_for_a_photo_without_one(tmp_path, caplog):
    photos_dir, masks_dir = tmp_path / "photos", tmp_path / "masks"
    photos_dir.mkdir()
    masks_dir.mkdir()
    photos = [photos_dir / name for name in ("x.jpg", "y.jpg", "z.jpg")]
    for name in ("x.png", "y.jpg.png", "stray.png", ".hidden.png"):
        (masks_dir / name).write_bytes(b"")
    (masks_dir / "readme.txt").write_text("masks from the turntable software")
    with caplog.at_level(logging.WARNING, logger="aetherscan.masks"):
        found = find_masks(photos, masks_dir)
    assert found == {photos[0]: masks_dir / "x.png", photos[1]: masks_dir / "y.jpg.png"}
    assert "stray.png" in caplog.text and "hidden" not in caplog.text
    with pytest.raises(MaskError, match="does not exist"):
        find_masks(photos, tmp_path / "nowhere")


def test_two_photos_of_one_name_cannot_share_a_folder_of_masks(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "img.png").write_bytes(b"")
    photos = [tmp_path / "one" / "img.jpg", tmp_path / "two" / "img.jpg"]
    with pytest.raises(MaskError, match=r"two photos are called img\.jpg"):
        find_masks(photos, tmp_path / "masks")
    (tmp_path / "empty").mkdir()
    assert find_masks(photos, tmp_path / "empty") == {}  # no mask: nothing to tell apart


def subject_mask(size, mode: str, fmt: str) -> bytes:
    """Black (ignore) around a white (subject) rectangle in the middle."""
    image = Image.new("L", size, 0)
    image.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "PNG"), ("RGB", "JPEG"), ("RGBA", "PNG"), ("1", "BMP"), ("L", "WEBP")]
)
def test_a_mask_of_the_photos_size_in_any_format_is_accepted(mode, fmt, tmp_path):
    mask = subject_mask((40, 30), mode, fmt)
    check_mask(mask, "a.jpg", (40, 30))
    (tmp_path / "mask").write_bytes(mask)
    check_mask(tmp_path / "mask", "a.jpg", (40, 30))


def test_a_mask_of_another_size_is_refused_naming_the_photo():
    with pytest.raises(MaskError) as refused:
        check_mask(image_bytes((41, 30)), "IMG_1.jpg", (40, 30))
    assert str(refused.value) == (
        "IMG_1.jpg: its mask is 41x30 pixels but the photo is 40x30 (as shown, after its EXIF "
        "orientation); a mask must have its photo's size"
    )


def test_the_size_is_the_photos_upright_size(tmp_path):
    from aetherscan.photos import read_size

    photo = tmp_path / "sideways.jpg"
    photo.write_bytes(image_bytes((40, 30), (90, 90, 90), "RGB", "JPEG", orientation=6))
    upright = read_size(photo)
    assert upright == (30, 40)
    check_mask(image_bytes((30, 40)), "sideways.jpg", upright)
    with pytest.raises(MaskError, match="40x30 pixels but the photo is 30x40"):
        check_mask(image_bytes((40, 30)), "sideways.jpg", upright)


@pytest.mark.parametrize(
    ("mask", "problem"),
    [
        (b"not an image at all", "not an image in a supported format"),
        (b"", "the file is empty"),
        (image_bytes((40, 30))[:60], "damaged or truncated"),
        (image_bytes((40, 30), 0), "black everywhere"),
    ],
    ids=["not-an-image", "empty", "truncated", "all-black"],
)
def test_a_mask_that_cannot_be_used_is_refused_with_a_sentence(mask, problem, tmp_path):
    for source in (mask, tmp_path / "mask.png"):
        if not isinstance(source, bytes):
            source.write_bytes(mask)
        with pytest.raises(MaskError, match=rf"^a\.jpg: its mask .*{problem}"):
            check_mask(source, "a.jpg", (40, 30))
