"""Test videos made here from photos (no downloads): a pan across each photo in turn, with
motion-blurred frames put in, written by OpenCV (MPEG-4 in MP4 or MOV, VP8 in WebM); and edits
of an MP4's boxes: a rotation in its track header, iPhone-style focal-length metadata."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FLOWERPOT = Path(__file__).resolve().parent / "fixtures" / "flowerpot"
FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".webm": "VP80"}


@dataclass
class Clip:
    path: Path
    fps: float
    photo_of_frame: list[int]  # the photo each frame pans across
    blurred: set[int] = field(default_factory=set)  # frames blurred on purpose

    def frame_at(self, time_s: float) -> int:
        return round(time_s * self.fps)


def photo_pan_clip(
    path: Path,
    photos: list[Path] | None = None,
    *,
    seconds_per_photo: float = 1.0,
    fps: float = 30.0,
    blur_every: int = 0,
    size: tuple[int, int] = (360, 480),
    pan: bool = True,
) -> Clip:
    """A clip that pans across each photo in turn (a crop sliding over a fifth of its width),
    cutting from one to the next (``pan=False``: a camera held still); with ``blur_every``, every n-th frame is smeared by a
    horizontal motion blur of 25 px."""
    photos = photos or sorted(FLOWERPOT.glob("*.jpg"))
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix} here"
    kernel = np.zeros((1, 25), np.float32)
    kernel[0, :] = 1 / 25
    clip = Clip(path, fps, [])
    per_photo = round(seconds_per_photo * fps)
    for number, photo in enumerate(photos):
        image = cv2.imread(str(photo))
        scale = max(width / (0.8 * image.shape[1]), height / image.shape[0])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        room = image.shape[1] - width if pan else 0
        for k in range(per_photo):
            left = round(room * k / max(per_photo - 1, 1))
            frame = np.ascontiguousarray(image[:height, left : left + width])
            index = len(clip.photo_of_frame)
            if blur_every and index % blur_every == blur_every // 2:
                frame = cv2.filter2D(frame, -1, kernel)
                clip.blurred.add(index)
            writer.write(frame)
            clip.photo_of_frame.append(number)
    writer.release()
    return clip


def boxes(data: bytes, start: int = 0, end: int | None = None):
    """(kind, offset, size) of the boxes in data[start:end]."""
    at, end = start, len(data) if end is None else end
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        yield kind, at, size
        at += size


def rotate_mp4(path: Path, degrees: int) -> None:
    """Write a rotation into the video track's header matrix (what phones do when held upright)."""
    data = bytearray(path.read_bytes())
    one = 1 << 16
    matrix = {
        90: (0, one, 0, -one, 0, 0, 0, 0, 1 << 30),
        180: (-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30),
        270: (0, -one, 0, one, 0, 0, 0, 0, 1 << 30),
    }[degrees]
    (moov,) = [(at, size) for kind, at, size in boxes(data) if kind == b"moov"]
    for kind, at, size in boxes(data, moov[0] + 8, moov[0] + moov[1]):
        if kind != b"trak":
            continue
        for inner, inner_at, _ in boxes(data, at + 8, at + size):
            if inner == b"tkhd":
                version = data[inner_at + 8]
                offset = inner_at + 8 + 4 + (32 if version == 1 else 20) + 16
                struct.pack_into(">9i", data, offset, *matrix)
    path.write_bytes(bytes(data))


def add_focal_metadata(path: Path, focal_35mm: float) -> None:
    """Append to moov the QuickTime metadata an iPhone writes for the lens (keys + ilst), as a
    float32; moov must be the file's last box (OpenCV's writer puts it there), so no media
    offset moves."""
    data = path.read_bytes()
    *_, (kind, at, size) = list(boxes(data))
    assert kind == b"moov" and at + size == len(data)
    key = b"com.apple.quicktime.camera.focal_length.35mm_equivalent"
    keys_body = struct.pack(">II", 0, 1) + struct.pack(">I4s", 8 + len(key), b"mdta") + key
    value = struct.pack(">II", 23, 0) + struct.pack(">f", focal_35mm)
    data_box = struct.pack(">I4s", 8 + len(value), b"data") + value
    item = struct.pack(">II", 8 + len(data_box), 1) + data_box
    hdlr_body = struct.pack(">II4s12s", 0, 0, b"mdta", b"\0" * 12) + b"\0"
    meta_body = (
        struct.pack(">I4s", 8 + len(hdlr_body), b"hdlr")
        + hdlr_body
        + struct.pack(">I4s", 8 + len(keys_body), b"keys")
        + keys_body
        + struct.pack(">I4s", 8 + len(item), b"ilst")
        + item
    )
    meta = struct.pack(">I4s", 8 + len(meta_body), b"meta") + meta_body
    moov = struct.pack(">I", size + len(meta)) + data[at + 4 : at + size] + meta
    path.write_bytes(data[:at] + moov)
