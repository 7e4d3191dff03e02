"""Property-based tests: whatever bytes arrive, decoding returns an RGB image or a PhotoError,
never another exception."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aetherscan.photos import PhotoError, open_photo, read_size

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _valid(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


VALID = {fmt: _valid(fmt) for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF")}


def _decode_or_refuse(data: bytes) -> None:
    try:
        image = open_photo(data, max_megapixels=1)
    except PhotoError as exc:
        assert str(exc)  # a message for people, never empty
        return
    assert image.mode == "RGB"
    assert min(image.size) >= 16
    assert read_size(data, max_megapixels=1) == image.size


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    _decode_or_refuse(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(sorted(VALID)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_corrupted_and_truncated_images(fmt, edits, cut):
    data = bytearray(VALID[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _decode_or_refuse(bytes(data))
