"""Every message of the WebSocket protocol and the REST API, and the binary point frame.

The contract (issue 5) is the four client/server message pairs that existing clients use
unchanged; everything else is an extension that a client opts into with ``hello`` and that old
clients never see. ``docs/protocol.md`` describes both; ``web/js/protocol.js`` is generated from
this module (``python -m aetherscan.server.browser_types``) and a test fails when they drift.

Binary point frame, little-endian (``encode_point_frame``), 40 + 4L + 8N bytes::

    0         4 bytes    magic "AEP1"
    4         uint32     N points
    8         uint32     view index (into the cameras message / Reconstruction.views)
    12        uint32     L confidence levels in the table
    16        float32[3] origin (min corner of the frame's bounding box)
    28        float32[3] step (extent / 65535 per axis): position = origin + q * step
    40        float32[L] confidence table, descending: table[k] = confidence of point floor(k*N/L)
    40+4L     uint16[3N] quantized positions q, x y z interleaved
    40+4L+6N  uint16[N]  colours RGB565 (red in the 5 high bits, green 6, blue 5 low)

Points in a frame are sorted by confidence, descending, so a confidence threshold is a prefix.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from aetherscan.reconstruction import MASK_SOURCES, PointCloud

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
FEATURES = (
    "progress",
    "cameras",
    "job",
    "binary_points",
    "quality",
    "masks",
    "attach",
    "preview",
    "restart",
    "video",
    "options",
)
MAX_POINTS_PER_MESSAGE = 5000  # JSON points messages
MAX_POINTS_PER_FRAME = 65536  # binary point frames
MAX_NESTING = 32  # lists and objects in a client message; the protocol's own have 2
MAX_INT_DIGITS = 20  # of an integer in a client message; a longer one fits no field

# Client to server ---------------------------------------------------------------------------


class _ClientMessage(BaseModel):
    # Unknown fields are ignored so that newer clients can talk to this server.
    model_config = ConfigDict(extra="ignore")


class ImageData(_ClientMessage):
    """One photo as a data URL; its filename is a label for people, never a path."""

    type: Literal["image_data"]
    data: StrictStr = Field(description="data:image/jpeg;base64,...")
    filename: StrictStr


class UploadComplete(_ClientMessage):
    """Starts the reconstruction of the photos received; count must equal their number."""

    type: Literal["upload_complete"]
    count: StrictInt
    options: dict[str, StrictBool | None] | None = Field(
        None,
        description="EXTENSION 'options': the job's options, e.g. {\"refine_poses\": true}; "
        "without the feature the field is ignored, like any unknown field",
    )


class Ping(_ClientMessage):
    type: Literal["ping"]


class Hello(_ClientMessage):
    """EXTENSION: opts into the features named (unknown ones are ignored)."""

    type: Literal["hello"]
    protocol: StrictInt = PROTOCOL_VERSION
    features: list[StrictStr] = Field(default_factory=list)


class Cancel(_ClientMessage):
    """EXTENSION: cancels this connection's upload or its queued or running job."""

    type: Literal["cancel"]


class MaskData(_ClientMessage):
    """EXTENSION 'masks': the mask of a photo of this upload, sent after the photo's image_data.
    Black (0) marks pixels to ignore, anything else the subject; the photo's upright size."""

    type: Literal["mask_data"]
    photo: StrictStr = Field(description="the photo's label, as image_received.filename said")
    data: StrictStr = Field(description="data:image/png;base64,...")


class VideoData(_ClientMessage):
    """EXTENSION 'video': a piece of a video, in order; ``last`` on the final piece. The video's
    frames are then chosen and each is answered like a photo (image_received), then
    video_received. One video at a time per connection."""

    type: Literal["video_data"]
    filename: StrictStr
    data: StrictStr = Field(description="this piece as a data URL: data:video/mp4;base64,...")
    last: StrictBool = False


class Attach(_ClientMessage):
    """EXTENSION 'attach': follow a job of this client again, from the start of its stream, after
    the connection that made it dropped (docs/protocol.md, Reattaching)."""

    type: Literal["attach"]
    job_id: StrictStr = Field(description="the id that image_received.job_id gave")


ClientMessage = Annotated[
    ImageData | UploadComplete | Ping | Hello | Cancel | MaskData | Attach | VideoData,
    Field(discriminator="type"),
]
CLIENT_MESSAGE_TYPES = (
    "image_data",
    "upload_complete",
    "ping",
    "hello",
    "cancel",
    "mask_data",
    "attach",
    "video_data",
)

# Server to client ---------------------------------------------------------------------------

JobState = Literal["uploading", "queued", "running", "done", "failed", "cancelled"]


class _ServerMessage(BaseModel):
    # Fields with defaults are always sent: the browser's types mark them required.
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    def to_json(self) -> str:
        # Extension fields are None unless the client opted in, and then absent from the JSON,
        # so old clients get exactly the contract's shapes.
        return self.model_dump_json(exclude_none=True)


class ImageReceived(_ServerMessage):
    """A photo was checked and kept; ``filename`` is its label in results (see docs)."""

    type: Literal["image_received"] = "image_received"
    status: Literal["saved"] = "saved"
    filename: str
    job_id: str | None = Field(
        None, description="EXTENSION 'attach': the job the photo went to, to attach to it later"
    )


class _Reply(BaseModel):
    """A part of a message or a REST answer; every field is always there."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Point(_Reply):
    x: float
    y: float
    z: float
    r: int = Field(ge=0, le=255)
    g: int = Field(ge=0, le=255)
    b: int = Field(ge=0, le=255)


class Points(_ServerMessage):
    """Up to MAX_POINTS_PER_MESSAGE points; sent as they are computed (see points_json)."""

    type: Literal["points"] = "points"
    data: list[Point]


# Where the masks of a result came from (aetherscan.reconstruction.MASK_SOURCES).
MaskSource = Literal["none", "given", "automatic", "mixed"]
assert typing.get_args(MaskSource) == MASK_SOURCES


class QualityInfo(_Reply):
    """The engine's verdict on its result: ``good`` when every check it ran passed,
    ``uncertain`` otherwise (also when it checked nothing), with one sentence per doubt."""

    verdict: Literal["good", "uncertain"]
    reasons: list[str]


class ReconstructionComplete(_ServerMessage):
    type: Literal["reconstruction_complete"] = "reconstruction_complete"
    total_points: int = Field(description="the number of points sent for this job")
    job_id: str | None = Field(None, description="EXTENSION 'job'")
    downloads: dict[str, str] | None = Field(
        None, description="EXTENSION 'job': format name to download URL"
    )
    quality: QualityInfo | None = Field(None, description="EXTENSION 'quality'")
    masks: MaskSource | None = Field(
        None, description="EXTENSION 'quality': where the masks the engine used came from"
    )


ErrorCode = Literal[
    "bad_message",  # not JSON, wrong shape, unknown type, bad fields
    "bad_photo",  # a photo that cannot be used
    "bad_mask",  # a mask that cannot be used, or that names no photo of the upload
    "limit",  # a limit of the server was reached; the message names its setting
    "upload",  # upload_complete refused (too few photos, count disagrees), or busy
    "job_failed",  # the reconstruction failed; the job is over
    "timeout",  # the connection was idle for too long and is closed
    "storage",  # the server could not store what was sent (disk full, read-only); nothing lost
    "attach",  # attach refused: no such job of this client, or this connection is busy
    "job_restarted",  # the job runs again after its worker died; without restart, its stream ends
]


class ErrorMessage(_ServerMessage):
    type: Literal["error"] = "error"
    message: str
    code: ErrorCode | None = Field(None, description="EXTENSION: sent after hello")


class Pong(_ServerMessage):
    type: Literal["pong"] = "pong"


class Limits(_Reply):
    max_photos_per_job: int
    max_photo_mb: float
    max_job_mb: float
    max_photo_megapixels: float
    max_message_mb: float
    max_jobs_per_client: int
    max_jobs_total: int
    max_queue_length: int
    idle_timeout_s: float


class Welcome(_ServerMessage):
    """EXTENSION: the answer to hello."""

    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    engine: str
    features: list[str] = Field(description="the features enabled for this connection")
    limits: Limits
    max_points_per_message: int = MAX_POINTS_PER_MESSAGE
    reattach_grace_s: float | None = Field(
        None,
        description="EXTENSION 'attach': how long a job waits for its client after a drop",
    )
    job_options: list[str] | None = Field(
        None, description="EXTENSION 'options': the job options the server's engine takes"
    )


class Progress(_ServerMessage):
    """EXTENSION 'progress': stage (see aetherscan.engines.base.STAGES), fraction 0..1."""

    type: Literal["progress"] = "progress"
    stage: str
    fraction: float
    message: str = ""


class Queued(_ServerMessage):
    """EXTENSION 'progress': the number of jobs ahead of this one (0: it starts next)."""

    type: Literal["queued"] = "queued"
    position: int
    job_id: str | None = Field(None, description="EXTENSION 'job'")


class Camera(_Reply):
    name: str
    width: int
    height: int
    K: list[list[float]] = Field(description="3x3 intrinsics in pixels of the original photo")
    cam_from_world: list[list[float]] = Field(description="4x4, OpenCV axes (x right, y down)")


class DroppedInfo(_Reply):
    name: str
    reason: str


class Cameras(_ServerMessage):
    """EXTENSION 'cameras': one per view; a point frame's view index points into this list.
    ``dropped``: the photos that are not in the result, each with the reason."""

    type: Literal["cameras"] = "cameras"
    cameras: list[Camera]
    dropped: list[DroppedInfo] = Field(default_factory=list)


class PreviewPoints(_Reply):
    positions: list[float] = Field(description="x y z of each point, one after another")
    colors: list[int] = Field(description="r g b (0-255) of each point, one after another")


class PreviewMessage(_ServerMessage):
    """EXTENSION 'preview': a provisional look while the result is computed (the cameras placed
    so far and a sample of sparse points, in a world frame of its own). Each preview replaces
    the one before; the result's first points replace the preview's points, and ``cameras``
    replaces its cameras. None of it counts in ``total_points``."""

    type: Literal["preview"] = "preview"
    message: str
    cameras: list[Camera]
    points: PreviewPoints


class Restarted(_ServerMessage):
    """EXTENSION 'restart': the worker running the job stopped (killed, out of memory) after
    sending some of its points, and the job runs again on another worker from the start. Drop
    every point, camera and preview of the job received so far: the stream starts again, and
    ``total_points`` counts only what follows."""

    type: Literal["restarted"] = "restarted"
    message: str


class VideoReceived(_ServerMessage):
    """EXTENSION 'video': the answer to a video's last piece, after an image_received for each
    frame taken from it (they count as photos in upload_complete)."""

    type: Literal["video_received"] = "video_received"
    filename: str = Field(description="the video's label")
    frames: list[str] = Field(description="the labels of the frames taken, in time order")
    duration_s: float
    notes: list[str] = Field(description="sentences: cut short, blurred stretches, thinned")


class CancelledMessage(_ServerMessage):
    """EXTENSION: the answer to cancel."""

    type: Literal["cancelled"] = "cancelled"
    message: str


class MaskReceived(_ServerMessage):
    """EXTENSION 'masks': the answer to mask_data; the mask was checked and kept."""

    type: Literal["mask_received"] = "mask_received"
    status: Literal["saved"] = "saved"
    photo: str = Field(description="the label of the photo whose mask it is")


class Attached(_ServerMessage):
    """EXTENSION 'attach': the answer to attach; the job's stream follows from its start."""

    type: Literal["attached"] = "attached"
    job_id: str
    state: JobState
    photos: list[str] = Field(description="the labels of the photos the job holds, in order")


ServerMessage = Annotated[
    ImageReceived
    | Points
    | ReconstructionComplete
    | ErrorMessage
    | Pong
    | Welcome
    | Progress
    | Queued
    | Cameras
    | PreviewMessage
    | Restarted
    | VideoReceived
    | CancelledMessage
    | MaskReceived
    | Attached,
    Field(discriminator="type"),
]

# REST ---------------------------------------------------------------------------------------


class PhotoInfo(_Reply):
    name: str = Field(description="the label: the client's filename, made unique and safe")
    width: int
    height: int


class JobPhoto(PhotoInfo):
    mask: bool = Field(False, description="a mask was uploaded with this photo")
    thumbnail: str | None = Field(
        None,
        description="URL of a small JPEG of the photo (256 px long side, upright, without "
        "metadata); null once the job's photos are gone",
    )


class ScaleInfo(_Reply):
    metres_per_unit: float = Field(
        description="the length in metres of one unit of the engine's scene: every download "
        "is in metres; GET /points and the WebSocket stay in the engine's units"
    )


class ScaleRequest(BaseModel):
    """The body of PUT /api/jobs/{id}/scale: either ``metres_per_unit``, or two ``points`` of
    the scene (engine units, as GET /points and the stream give them) and their true distance
    ``length_m`` in metres."""

    metres_per_unit: float | None = Field(None, gt=0)
    points: list[list[float]] | None = Field(None, min_length=2, max_length=2)
    length_m: float | None = Field(None, gt=0)


class JobStatus(_Reply):
    job_id: str
    state: JobState
    engine: str
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    position: int | None = Field(None, description="jobs ahead of this one while queued")
    photos: list[JobPhoto]
    num_points: int = 0
    views: list[PhotoInfo] = Field(default_factory=list, description="registered photos")
    dropped: list[DroppedInfo] = Field(default_factory=list)
    quality: QualityInfo | None = Field(None, description="the engine's verdict, once done")
    masks: MaskSource | None = Field(
        None, description="where the masks the engine used came from, once done"
    )
    scale: ScaleInfo | None = Field(
        None, description="the scale set with PUT /api/jobs/{id}/scale; null: engine units"
    )
    error: str | None = None
    options: dict[str, bool] = Field(
        default_factory=dict, description="the job options its client chose"
    )
    downloads: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    finished_at: datetime | None = None
    expires_at: datetime | None = None


class Info(_Reply):
    engine: str
    version: str
    protocol: int = PROTOCOL_VERSION
    features: list[str]
    limits: Limits
    max_points_per_message: int = MAX_POINTS_PER_MESSAGE
    formats: list[str] = Field(description="download formats of a finished job")
    job_options: list[str] = Field(
        description="the job options the engine takes (POST /api/jobs form fields)"
    )


class Health(_Reply):
    status: Literal["ok"] = "ok"


class ErrorResponse(_Reply):
    detail: str


# Parsing ------------------------------------------------------------------------------------

_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
ParsedMessage = ImageData | UploadComplete | Ping | Hello | Cancel | MaskData | Attach


class BadMessage(ValueError):
    """A client message that cannot be used; the text says what was wrong for people."""


def parse_client_message(text: str | bytes) -> ParsedMessage:
    """The typed message in ``text``, or BadMessage saying what was wrong with it. Hostile text
    is a BadMessage like any other: nesting thousands deep, a number of thousands of digits, a
    key given twice, bytes that are not UTF-8, a lone surrogate escape. (NaN and Infinity, which
    Python's JSON reads, fit no field: no client message has a float.)"""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise BadMessage(
                f"the message is not UTF-8 text (byte {exc.start} cannot start a character)"
            ) from None
    try:
        raw = json.loads(text, parse_int=_parse_int, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise BadMessage(f"the message is not valid JSON ({exc})") from None
    except RecursionError:  # the decoder's own guard, at about a thousand levels
        raise BadMessage(_too_deep()) from None
    _check_values(raw)
    expected = ", ".join(CLIENT_MESSAGE_TYPES)
    if not isinstance(raw, dict):
        raise BadMessage(
            f'a message must be a JSON object with a "type" field, got {_json_kind(raw)}'
        )
    if "type" not in raw:
        raise BadMessage(f'the message has no "type" field; expected one of: {expected}')
    kind = raw["type"]
    if not isinstance(kind, str) or kind not in CLIENT_MESSAGE_TYPES:
        raise BadMessage(f"unknown message type {_shown(kind)}; expected one of: {expected}")
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        raise BadMessage(f"{kind} message: {_describe(exc)}") from None


class _LongNumber:
    """An integer of more than MAX_INT_DIGITS digits in a client message, never converted
    (thousands of digits take long, and Python refuses more than 4300): no field takes it."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __str__(self) -> str:
        return f"<{self.digits} digits>"


def _parse_int(text: str) -> int | _LongNumber:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _LongNumber(digits)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: with a key given twice, which value counts
    would be a guess (JavaScript takes the last, some parsers the first)."""
    result = dict(pairs)
    if len(result) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadMessage(f"the key {_shown(key)} appears twice in one object")
            seen.add(key)
    return result


def _too_deep() -> str:
    return f"the message nests lists or objects more than {MAX_NESTING} levels deep"


def _check_values(raw: object) -> None:
    """Refuse nesting deeper than MAX_NESTING, and strings with a lone surrogate (a ``\\ud800``
    escape), which are not text and could not even be quoted back in an error."""
    pending = [(raw, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and not _is_text(value):
                raise BadMessage(
                    "the message has a string with a lone surrogate escape (\\ud800 to "
                    "\\udfff), which is not text"
                )
        elif isinstance(value, dict | list):
            if depth > MAX_NESTING:
                raise BadMessage(_too_deep())
            if isinstance(value, dict):
                pending.extend((key, depth) for key in value)
                pending.extend((child, depth + 1) for child in value.values())
            else:
                pending.extend((child, depth + 1) for child in value)


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        # loc is (tag, field, ...); the tag repeats the message type.
        field = ".".join(str(part) for part in error["loc"][1:]) or "message"
        if error["type"] == "missing":
            problems.append(f'field "{field}" is missing')
        else:
            value = error.get("input")
            wanted = error["msg"].removeprefix("Input should be ")
            shown = "" if isinstance(value, _LongNumber) else f" ({_shown(value)})"
            problems.append(
                f'field "{_clip(field)}" should be {wanted}, got {_json_kind(value)}{shown}'
            )
    return "; ".join(problems)


def _json_kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, _LongNumber):
        return f"a number of {value.digits} digits (at most {MAX_INT_DIGITS} are read)"
    return names.get(type(value), type(value).__name__)


def _shown(value: object, limit: int = 40) -> str:
    """The value as JSON for an error message, cut to ``limit`` characters, without ever
    writing out a huge value whole (a string of 60 MB, a list of a million)."""
    return _clip(json.dumps(_head(value, limit), default=str), limit)


def _head(value: object, limit: int) -> object:
    if isinstance(value, str):
        return value[: limit + 1]
    if isinstance(value, list):
        return [_head(item, limit) for item in value[:limit]]
    if isinstance(value, dict):
        items = itertools.islice(value.items(), limit)
        return {str(key)[: limit + 1]: _head(item, limit) for key, item in items}
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Points on the wire -------------------------------------------------------------------------


_JSON_POINT = '{"x":%.9g,"y":%.9g,"z":%.9g,"r":%d,"g":%d,"b":%d}'


def points_json(xyz: np.ndarray, rgb: np.ndarray) -> str:
    """A ``points`` message for up to MAX_POINTS_PER_MESSAGE points, built by one C-level
    string format instead of a model per point (pydantic would take seconds for a million).
    Positions get 9 significant digits, which read back to the same float32; they must be
    finite."""
    values = np.concatenate(
        [np.asarray(xyz, np.float32).astype(np.float64), np.asarray(rgb, np.uint8)], axis=1
    )
    body = ",".join([_JSON_POINT] * len(values)) % tuple(values.ravel().tolist())
    return f'{{"type":"points","data":[{body}]}}'


def encode_points(cloud: PointCloud, binary: bool) -> tuple[list[str] | list[bytes], int]:
    """The messages for a batch of points (JSON of at most MAX_POINTS_PER_MESSAGE points, or
    binary frames of one view each), and how many points they hold: the finite ones."""
    finite = np.isfinite(cloud.xyz).all(axis=1)
    if not finite.all():
        log.warning("dropping %d points that are not finite", int((~finite).sum()))
        cloud = cloud.select(finite)
    if not binary:
        texts = [
            points_json(
                cloud.xyz[start : start + MAX_POINTS_PER_MESSAGE],
                cloud.rgb[start : start + MAX_POINTS_PER_MESSAGE],
            )
            for start in range(0, len(cloud), MAX_POINTS_PER_MESSAGE)
        ]
        return texts, len(cloud)
    frames = []
    for view in np.unique(cloud.view_index):
        part = cloud.select(cloud.view_index == view)
        for start in range(0, len(part), MAX_POINTS_PER_FRAME):
            chunk = slice(start, start + MAX_POINTS_PER_FRAME)
            frames.append(
                encode_point_frame(
                    part.xyz[chunk], part.rgb[chunk], part.confidence[chunk], int(view)
                )
            )
    return frames, len(cloud)


FRAME_MAGIC = b"AEP1"
FRAME_HEADER_BYTES = 40
FRAME_CONFIDENCE_LEVELS = 64
_HEADER = struct.Struct("<4sIII3f3f")
assert _HEADER.size == FRAME_HEADER_BYTES


def encode_point_frame(
    xyz: np.ndarray,
    rgb: np.ndarray,
    confidence: np.ndarray,
    view_index: int,
    levels: int = FRAME_CONFIDENCE_LEVELS,
) -> bytes:
    """One binary point frame (layout in the module docstring) for N >= 1 points of one view."""
    n = len(xyz)
    if n == 0:
        raise ValueError("a point frame needs at least one point")
    # Written for speed (benchmarks/server_wire.py). Points of equal confidence keep no
    # particular order.
    confidence = np.asarray(confidence, np.float32)
    order = np.argsort(-confidence)
    xyz = np.take(np.asarray(xyz, np.float32), order, axis=0)
    rgb = np.take(np.asarray(rgb, np.uint8), order, axis=0)
    confidence = np.take(confidence, order)

    columns = np.ascontiguousarray(xyz.T)  # (3, N): reductions along rows are fast
    origin = columns.min(axis=1)
    step = ((columns.max(axis=1) - origin) / np.float32(65535)).astype(np.float32)
    inverse = np.divide(1, step, out=np.zeros(3, np.float32), where=step > 0)
    q = xyz - origin
    q *= inverse
    q += 0.5  # rounds to nearest on truncation below
    np.clip(q, 0, 65535, out=q)
    q = q.astype("<u2")  # (N, 3)

    rgb16 = rgb.astype(np.uint16)
    rgb565 = ((rgb16[:, 0] >> 3) << 11 | (rgb16[:, 1] >> 2) << 5 | rgb16[:, 2] >> 3).astype("<u2")

    levels = min(levels, n)
    table = confidence[(np.arange(levels) * n) // levels].astype("<f4")
    header = _HEADER.pack(FRAME_MAGIC, n, view_index, levels, *origin.tolist(), *step.tolist())
    return b"".join((header, table.tobytes(), q.tobytes(), rgb565.tobytes()))


@dataclass
class PointFrame:
    """A decoded point frame: positions and colours as the browser reconstructs them."""

    view_index: int
    xyz: np.ndarray  # (N, 3) float32
    rgb: np.ndarray  # (N, 3) uint8, expanded from RGB565
    confidence_table: np.ndarray  # (L,) float32, descending


def decode_point_frame(frame: bytes) -> PointFrame:
    if len(frame) < FRAME_HEADER_BYTES or frame[:4] != FRAME_MAGIC:
        raise ValueError("not an AetherScan point frame (magic AEP1)")
    _, n, view_index, levels, *rest = _HEADER.unpack_from(frame)
    origin, step = np.array(rest[:3], np.float32), np.array(rest[3:], np.float32)
    expected = FRAME_HEADER_BYTES + 4 * levels + 8 * n
    if len(frame) != expected:
        raise ValueError(
            f"a frame of {n} points and {levels} levels has {expected} bytes, got {len(frame)}"
        )
    table = np.frombuffer(frame, "<f4", levels, FRAME_HEADER_BYTES)
    q = np.frombuffer(frame, "<u2", 3 * n, FRAME_HEADER_BYTES + 4 * levels).reshape(n, 3)
    packed = np.frombuffer(frame, "<u2", n, FRAME_HEADER_BYTES + 4 * levels + 6 * n)
    r5, g6, b5 = packed >> 11, (packed >> 5) & 63, packed & 31
    rgb = np.stack([(r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2)], axis=1)
    xyz = origin + q.astype(np.float32) * step
    return PointFrame(view_index, xyz.astype(np.float32), rgb.astype(np.uint8), table.copy())


def split_frames(blob: bytes) -> list[bytes]:
    """The frames of a concatenation of frames (GET /api/jobs/{id}/points)."""
    frames, offset = [], 0
    while offset < len(blob):
        _, n, _, levels, *_ = _HEADER.unpack_from(blob, offset)
        size = FRAME_HEADER_BYTES + 4 * levels + 8 * n
        frames.append(blob[offset : offset + size])
        offset += size
    return frames
