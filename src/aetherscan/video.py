"""Photos from a video: a phone clip in place of forty photos (MP4, MOV, WebM; what OpenCV's
FFmpeg decodes).

Frames are chosen, not taken blindly (``sample_video``), in one pass over the clip:

- **Spaced by how much the view changed**: corners found in the last chosen frame are followed
  from frame to frame (pyramidal Lucas-Kanade optical flow at 480 px); once their median
  displacement reaches ``step`` of the picture's diagonal, the next frame is chosen among those
  seen since half of that. Standing still adds nothing; walking fast adds more frames.
- **Sharp**: among those candidates, the one with the highest sharpness (the variance of the
  Laplacian at 480 px). A frame less than ``BLURRED`` of the sharpness of the sharp frames of
  the last two seconds (motion blur, a focus hunt) is never chosen, nor followed; a stretch where every
  candidate is blurred is skipped, and said.
- **At most** ``max_frames``: more are thinned evenly, first and last kept.

Each frame is a JPEG named after the clip and its time stamp (``clip-t0012.345s.jpg``), upright
(the container's rotation is applied), and carries the 35 mm equivalent focal length in its
EXIF where the container says it (Apple's QuickTime key ``camera.focal_length.35mm_equivalent``),
which the engines take as their focal prior. A clip cut short gives the frames before the cut,
and says so; one that cannot be decoded at all is refused with a sentence (``VideoError``).
"""

from __future__ import annotations

import io
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv")
# The major brands of the still images that share the ISO box format with MP4 (HEIF, AVIF).
STILL_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
    | {b"avif", b"avis", b"avio"}
)
ANALYSIS_PX = 480  # the long side at which motion and sharpness are measured
ANALYSIS_FPS = 15.0  # frames a second looked at; the others are decoded but not converted
BLURRED = 0.55  # of the sharpness level of the last two seconds: below it, a frame is blurred
SHARP_PERCENTILE = 80  # that level: a high percentile, the sharp frames' whatever the blurred
MIN_TRACKS = 25  # fewer corners followed than this: find new ones
JPEG_QUALITY = 95
FOCAL_KEY = b"com.apple.quicktime.camera.focal_length.35mm_equivalent"
EXIF_IFD, EXIF_FOCAL_35MM = 0x8769, 0xA405


class VideoError(ValueError):
    """A video that cannot be used; the message says why, for people."""


@dataclass
class Frame:
    name: str  # e.g. clip-t0012.345s.jpg
    time_s: float
    jpeg: bytes
    sharpness: float


@dataclass
class SampledVideo:
    frames: list[Frame]
    duration_s: float  # decoded
    fps: float
    width: int  # upright
    height: int
    focal_35mm: float | None = None
    notes: list[str] = field(default_factory=list)  # for people: cut short, blurred stretches


def sniff_video(head: bytes) -> str | None:
    """The container that the first bytes of a file show: "mp4", "mov", "webm" or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if head[8:12] in STILL_BRANDS:
            return None  # HEIC, HEIF, AVIF: a photo in the same box format
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"  # an old QuickTime file without ftyp
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"  # Matroska; WebM is its subset
    return None


def sample_video(
    path: Path,
    *,
    max_frames: int = 60,
    step: float = 0.08,
    max_seconds: float = 600.0,
    max_megapixels: float = 40.0,
    name: str | None = None,
) -> SampledVideo:
    """The frames to reconstruct from (see the module). ``name``: the clip's name for the
    frames' names (default: the file's stem). VideoError when nothing can be used."""
    import cv2

    path = Path(path)
    stem = Path(name or path.name).stem or "video"
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise VideoError(
                f"{stem}: this file cannot be read as a video (MP4, MOV or WebM that FFmpeg "
                "decodes); it may be damaged or in a format not supported"
            )
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 30.0
        expected = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        expected_s = expected / fps if expected and expected > 0 else None
        if expected_s is not None and expected_s > max_seconds:
            raise VideoError(
                f"{stem}: the video is {expected_s:.0f} s long, more than the limit of "
                f"{max_seconds:.0f} s (setting max_video_seconds); cut it shorter"
            )
        sampler = _Sampler(stem, fps, step, max_megapixels)
        index = 0
        every = max(1, round(fps / ANALYSIS_FPS))
        while capture.grab():
            if index % every == 0:
                ok, image = capture.retrieve()
                if not ok:
                    break
                sampler.add(index / fps, image)
            index += 1
            if index / fps > max_seconds:
                raise VideoError(
                    f"{stem}: the video is longer than the limit of {max_seconds:.0f} s "
                    "(setting max_video_seconds); cut it shorter"
                )
    finally:
        capture.release()
    if sampler.looked == 0:
        raise VideoError(
            f"{stem}: no frame of this video could be decoded; it may be damaged, or in a "
            "codec not supported"
        )
    result = sampler.finish(max_frames)
    result.duration_s = index / fps
    if expected_s is not None and result.duration_s < 0.9 * expected_s - 1.0:
        result.notes.append(
            f"{stem}: the video ends at {result.duration_s:.1f} s of the {expected_s:.1f} s its "
            "header announces (cut short?); the frames before were kept"
        )
    result.focal_35mm = quicktime_focal_35mm(path)
    if result.focal_35mm:
        for frame in result.frames:
            frame.jpeg = _with_focal(frame.jpeg, result.focal_35mm)
    return result


class _Sampler:
    """The one pass of ``sample_video``: follows the view and keeps the frames it chooses."""

    def __init__(self, stem: str, fps: float, step: float, max_megapixels: float) -> None:
        self.stem, self.fps, self.step, self.max_megapixels = stem, fps, step, max_megapixels
        self.looked = 0
        self.chosen: list[Frame] = []
        self.window: list[
            tuple[float, float, np.ndarray, np.ndarray]
        ] = []  # time, sharp, gray, image
        self.recent: list[float] = []  # sharpness of the last frames looked at
        self.tracks: np.ndarray | None = None  # corners followed, at the last frame
        self.anchors: np.ndarray | None = None  # the same corners, in the last chosen frame
        self.carried = 0.0  # displacement since the last chosen frame before the corners changed
        self.previous: np.ndarray | None = None
        self.found = 0  # corners found when the tracks started
        self.diagonal = 1.0
        self.blurred_stretches = 0
        self.in_blur = False
        self.width = self.height = 0

    def add(self, time_s: float, image: np.ndarray) -> None:
        import cv2

        if self.looked == 0:
            self.height, self.width = image.shape[:2]
            if self.width * self.height > self.max_megapixels * 1e6:
                raise VideoError(
                    f"{self.stem}: its frames are {self.width}x{self.height}, more than the "
                    f"limit of {self.max_megapixels:g} megapixels (setting max_photo_megapixels)"
                )
        self.looked += 1
        scale = ANALYSIS_PX / max(image.shape[:2])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        self.diagonal = math.hypot(*gray.shape)
        sharpness = float(cv2.Laplacian(gray, cv2.CV_32F).var())
        self.recent = [*self.recent[-int(2 * ANALYSIS_FPS) :], sharpness]
        if len(self.recent) >= 5 and sharpness < BLURRED * self._sharp_level():
            return  # blurred: corners smear in it, and it is never chosen
        if not self.chosen and not self.window:
            self.window.append((time_s, sharpness, gray, image))
            self._start_tracks(gray)
            return
        moved = self._follow(gray)
        if moved >= 0.5 * self.step or not self.chosen:
            self.window.append((time_s, sharpness, gray, image))
        if not self.chosen and len(self.window) >= max(3, int(0.5 * ANALYSIS_FPS)):
            self._choose(gray)  # the first frame: the sharpest of the first half second
        elif moved >= self.step:
            self._choose(gray)
        self.previous = gray

    def _sharp_level(self) -> float:
        """How sharp the clip is here: the 80th percentile of the last two seconds' sharpness,
        which stays the sharp frames' level even when every other frame is smeared."""
        return float(np.percentile(self.recent, SHARP_PERCENTILE))

    def _start_tracks(self, gray: np.ndarray) -> None:
        import cv2

        corners = cv2.goodFeaturesToTrack(gray, maxCorners=300, qualityLevel=0.01, minDistance=8)
        self.tracks = (
            corners.reshape(-1, 2) if corners is not None else np.empty((0, 2), np.float32)
        )
        self.anchors = self.tracks.copy()
        self.found = len(self.tracks)
        self.previous = gray

    def _follow(self, gray: np.ndarray) -> float:
        """Follow the corners into ``gray``; their median displacement since the last chosen
        frame, as a share of the diagonal."""
        import cv2

        assert self.tracks is not None and self.anchors is not None
        if len(self.tracks) and self.previous is not None:
            moved, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
                self.previous,
                gray,
                self.tracks.astype(np.float32),
                None,
                winSize=(21, 21),
                maxLevel=3,
            )
            good = status.reshape(-1) == 1
            self.tracks, self.anchors = moved.reshape(-1, 2)[good], self.anchors[good]
        displacement = self._displacement()
        if len(self.tracks) < MIN_TRACKS:
            # The corners were lost: a cut, a fast turn. The view changed by a step at least.
            lost = len(self.tracks) < 0.5 * self.found
            self.carried = max(displacement, self.step) if lost else displacement
            self._start_tracks(gray)
            displacement = self.carried
        return displacement

    def _displacement(self) -> float:
        assert self.tracks is not None and self.anchors is not None
        if not len(self.tracks):
            return self.carried
        shift = np.median(np.linalg.norm(self.tracks - self.anchors, axis=1))
        return self.carried + float(shift) / self.diagonal

    def _choose(self, current: np.ndarray) -> None:
        """Choose the sharpest frame of the window that is not blurred, and follow the view from
        it; ``current`` is the frame looked at last."""
        reference = self._sharp_level() if self.recent else 0.0
        sharp = [entry for entry in self.window if entry[1] >= BLURRED * reference]
        self.window = []
        if not sharp:
            if not self.in_blur:  # a stretch is counted once, however long
                self.blurred_stretches += 1
            self.in_blur = True
            return
        self.in_blur = False
        time_s, sharpness, gray, image = max(sharp, key=lambda entry: entry[1])
        self.chosen.append(self._frame(time_s, sharpness, image))
        self.carried = 0.0
        self._start_tracks(gray)
        if gray is not current:  # motion counts from the chosen frame: follow it to the last
            self._follow(current)
        self.previous = current

    def _frame(self, time_s: float, sharpness: float, image: np.ndarray) -> Frame:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        return Frame(f"{self.stem}-t{time_s:08.3f}s.jpg", time_s, jpeg.tobytes(), sharpness)

    def finish(self, max_frames: int) -> SampledVideo:
        if self.window and self.chosen and self.previous is not None:
            self._choose(self.previous)  # the view at the end changed enough since the last
        frames = self.chosen
        notes = []
        if len(frames) > max_frames:
            keep = np.unique(np.round(np.linspace(0, len(frames) - 1, max_frames)).astype(int))
            notes.append(
                f"{self.stem}: {len(frames)} frames differed enough; {len(keep)} kept, evenly "
                "spaced (setting max_video_frames)"
            )
            frames = [frames[k] for k in keep]
        if self.blurred_stretches:
            notes.append(
                f"{self.stem}: {self.blurred_stretches} stretches of the video were too blurred "
                "to take a frame from (move more slowly there)"
            )
        return SampledVideo(frames, 0.0, self.fps, self.width, self.height, notes=notes)


def quicktime_focal_35mm(path: Path) -> float | None:
    """The 35 mm equivalent focal length that an iPhone's QuickTime metadata (moov/meta, keys
    and ilst) gives, or None. Reads the boxes only, never the media."""
    try:
        with open(path, "rb") as file:
            moov = _find_box(file, b"moov", Path(path).stat().st_size)
            if moov is None:
                return None
            meta = _child(moov, b"meta")
            if meta is None:
                return None
            if len(meta) >= 4 and meta[:4] == b"\0\0\0\0":  # an ISO full box: version, flags
                meta = meta[4:]
            keys, items = _child(meta, b"keys"), _child(meta, b"ilst")
            if keys is None or items is None:
                return None
            names = _key_names(keys)
            wanted = next((k for k, key in names.items() if key == FOCAL_KEY), None)
            if wanted is None:
                return None
            return _item_number(items, wanted)
    except (OSError, struct.error, ValueError):
        return None


def _find_box(file: io.BufferedReader, kind: bytes, end: int) -> bytes | None:
    """The body of the top-level box ``kind`` (read whole: moov boxes are small)."""
    position = 0
    while position + 8 <= end:
        file.seek(position)
        size, found = struct.unpack(">I4s", file.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", file.read(8))[0], 16
        elif size == 0:
            size = end - position
        if size < header:
            return None
        if found == kind:
            if size > 64 * 1024 * 1024:
                return None
            return file.read(size - header)
        position += size
    return None


def _boxes(body: bytes):
    at = 0
    while at + 8 <= len(body):
        size, kind = struct.unpack_from(">I4s", body, at)
        if size < 8 or at + size > len(body):
            return
        yield kind, body[at + 8 : at + size]
        at += size


def _child(body: bytes, kind: bytes) -> bytes | None:
    return next((inner for found, inner in _boxes(body) if found == kind), None)


def _key_names(keys: bytes) -> dict[int, bytes]:
    (count,) = struct.unpack_from(">I", keys, 4)  # after version and flags
    names, at = {}, 8
    for index in range(1, count + 1):
        size, _namespace = struct.unpack_from(">I4s", keys, at)
        names[index] = keys[at + 8 : at + size]
        at += size
    return names


def _item_number(items: bytes, wanted: int) -> float | None:
    for kind, item in _boxes(items):
        if struct.unpack(">I", kind)[0] != wanted:
            continue
        data = _child(item, b"data")
        if data is None or len(data) < 8:
            return None
        type_code, value = struct.unpack_from(">I", data)[0] & 0xFFFFFF, data[8:]
        if type_code == 23 and len(value) == 4:  # float32
            number = struct.unpack(">f", value)[0]
        elif type_code == 24 and len(value) == 8:  # float64
            number = struct.unpack(">d", value)[0]
        elif type_code in (21, 22) and 1 <= len(value) <= 8:  # signed, unsigned integer
            number = float(int.from_bytes(value, "big", signed=type_code == 21))
        elif type_code == 1:  # text
            number = float(value.decode("utf-8", "replace").strip())
        else:
            return None
        return number if 5.0 <= number <= 2000.0 else None
    return None


def _with_focal(jpeg: bytes, focal_35mm: float) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        exif = image.getexif()
        exif.get_ifd(EXIF_IFD)[EXIF_FOCAL_35MM] = round(focal_35mm)
        out = io.BytesIO()
        image.save(out, "JPEG", quality="keep", exif=exif.tobytes())
    return out.getvalue()
