"""protocol.py on its own: parsing client messages (with properties over arbitrary input), the
JSON points message and the binary point frame."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aetherscan.server.protocol import (
    CLIENT_MESSAGE_TYPES,
    FRAME_HEADER_BYTES,
    BadMessage,
    ErrorMessage,
    ImageData,
    Points,
    ReconstructionComplete,
    UploadComplete,
    decode_point_frame,
    encode_point_frame,
    parse_client_message,
    points_json,
    split_frames,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_json_value_parses_or_is_refused_with_a_sentence(value):
    try:
        message = parse_client_message(json.dumps(value))
    except BadMessage as exc:
        text = str(exc)
        assert text and len(text) < 2000 and "\n" not in text
    else:
        assert message.type in CLIENT_MESSAGE_TYPES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text_parse_or_are_refused(raw):
    with contextlib.suppress(BadMessage):  # anything else fails the test
        parse_client_message(raw)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(CLIENT_MESSAGE_TYPES),
    st.dictionaries(
        st.sampled_from(["data", "filename", "count", "features", "protocol", "photo"]), json_values
    ),
)
def test_messages_with_a_known_type_and_any_fields(kind, fields):
    try:
        message = parse_client_message(json.dumps({"type": kind, **fields}))
    except BadMessage as exc:
        assert str(exc).startswith(f"{kind} message: field ")
    else:
        assert message.type == kind


def test_contract_messages_parse_to_their_models():
    image = parse_client_message(
        '{"type":"image_data","data":"data:image/jpeg;base64,AA==","filename":"image1.jpg"}'
    )
    assert image == ImageData(
        type="image_data", data="data:image/jpeg;base64,AA==", filename="image1.jpg"
    )
    assert parse_client_message('{"type":"upload_complete","count":5}') == UploadComplete(
        type="upload_complete", count=5
    )
    # Fields that this server does not know are ignored, for newer clients.
    assert parse_client_message('{"type":"ping","sent_at":1}').type == "ping"


def test_server_messages_dump_exactly_the_contract_shapes():
    assert ReconstructionComplete(total_points=7).to_json() == (
        '{"type":"reconstruction_complete","total_points":7}'
    )
    assert ErrorMessage(message="no").to_json() == '{"type":"error","message":"no"}'


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 2**32 - 1))
def test_points_json_is_a_valid_points_message(n, seed):
    rng = np.random.default_rng(seed)
    xyz = (rng.normal(size=(n, 3)) * 10 ** rng.uniform(-6, 6)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    text = points_json(xyz, rgb)
    message = Points.model_validate_json(text)
    assert len(message.data) == n
    decoded = np.array([[p.x, p.y, p.z] for p in message.data], np.float32)
    np.testing.assert_array_equal(decoded, xyz)  # exact float32 round trip
    assert [[p.r, p.g, p.b] for p in message.data] == rgb.tolist()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 2**32 - 1), st.floats(1e-4, 1e4), st.integers(0, 99))
def test_point_frame_round_trip(n, seed, scale, view):
    rng = np.random.default_rng(seed)
    xyz = (rng.normal(size=(n, 3)) * scale + rng.normal(size=3) * scale).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    confidence = (1 + rng.permutation(n) / 64).astype(np.float32)  # distinct: one order
    frame = encode_point_frame(xyz, rgb, confidence, view)
    levels = min(64, n)
    assert len(frame) == FRAME_HEADER_BYTES + 4 * levels + 8 * n <= FRAME_HEADER_BYTES + 256 + 8 * n

    decoded = decode_point_frame(frame)
    order = np.argsort(-confidence)
    extent = xyz.max(0) - xyz.min(0)
    tolerance = extent / 65535 * 0.5 + np.abs(xyz).max() * 1e-6
    assert decoded.view_index == view
    assert np.all(np.abs(decoded.xyz - xyz[order]) <= tolerance)
    assert np.all(np.abs(decoded.rgb.astype(int) - rgb[order]) <= 7)
    table = decoded.confidence_table
    assert len(table) == levels and np.all(np.diff(table) <= 0)
    np.testing.assert_array_equal(table, confidence[order][(np.arange(levels) * n) // levels])


def test_frame_edge_cases():
    one = decode_point_frame(
        encode_point_frame(np.ones((1, 3)), np.full((1, 3), 255), np.ones(1), 0)
    )
    np.testing.assert_array_equal(one.xyz, [[1, 1, 1]])
    assert one.rgb.tolist() == [[255, 255, 255]]
    flat = np.zeros((10, 3), np.float32)
    flat[:, 0] = np.arange(10)
    decoded = decode_point_frame(encode_point_frame(flat, np.zeros((10, 3)), np.arange(10.0), 2))
    np.testing.assert_allclose(decoded.xyz[:, 0], np.arange(10)[::-1], atol=1e-3)
    np.testing.assert_array_equal(decoded.xyz[:, 1:], 0)
    with pytest.raises(ValueError, match="at least one point"):
        encode_point_frame(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), 0)
    with pytest.raises(ValueError, match="magic"):
        decode_point_frame(b"nope" + bytes(60))
    with pytest.raises(ValueError, match="bytes"):
        decode_point_frame(encode_point_frame(np.ones((3, 3)), np.ones((3, 3)), np.ones(3), 0)[:-2])


def test_concatenated_frames_split_back():
    frames = [
        encode_point_frame(np.random.rand(n, 3), np.zeros((n, 3)), np.random.rand(n), i)
        for i, n in enumerate((5, 70, 1))
    ]
    assert split_frames(b"".join(frames)) == frames
