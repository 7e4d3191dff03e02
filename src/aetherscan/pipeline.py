"""The Python API and the ``aetherscan reconstruct`` command: photo files in, a Reconstruction out.

>>> from aetherscan.pipeline import reconstruct
>>> scene = reconstruct(["photos/"], engine="fast3r", image_size=512)  # doctest: +SKIP
>>> scene.point_cloud().xyz.shape  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aetherscan.engines import create_engine
from aetherscan.engines.base import Engine, EngineError, Observer, Photo
from aetherscan.export import export, export_file
from aetherscan.reconstruction import Reconstruction
from aetherscan.settings import Settings

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".tif", ".tiff", ".bmp"}
)


def find_photos(paths: Iterable[str | Path]) -> list[Path]:
    """Photo files from files and folders, in order; a folder gives its photos sorted by name
    (not recursing, skipping hidden files). Raises FileNotFoundError for a missing path."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file()
                    and p.suffix.lower() in PHOTO_SUFFIXES
                    and not p.name.startswith(".")
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such photo or folder: {path}")
    return found


def photos_from_paths(paths: Iterable[str | Path]) -> list[Photo]:
    """Photo objects named by file name (by path where two files share a name)."""
    files = find_photos(paths)
    counts = Counter(p.name for p in files)
    return [Photo(name=p.name if counts[p.name] == 1 else str(p), path=p) for p in files]


def reconstruct(
    photos: Iterable[str | Path],
    engine: str | Engine = "auto",
    *,
    observer: Observer | None = None,
    **options: Any,
) -> Reconstruction:
    """Reconstruct a scene from photo files and folders.

    ``engine`` is ``"auto"``, ``"fast3r"``, ``"colmap"`` or an engine already built (to load the
    model once for several calls); ``options`` go to ``aetherscan.engines.create_engine``
    (weights, device, dtype, image_size, min_confidence, max_points_per_view, ...).
    """
    if isinstance(engine, str):
        engine = create_engine(engine, **options)
    elif options:
        raise TypeError(f"options {sorted(options)} only apply when the engine is built by name")
    return engine.reconstruct(photos_from_paths(photos), observer)


def reconstruct_command(
    settings: Settings, photos: list[Path], output: Path, cameras: Path | None
) -> int:
    """``aetherscan reconstruct``: progress on stderr, the result in ``output`` (and cameras)."""
    try:
        found = photos_from_paths(photos)
    except FileNotFoundError as exc:
        print(f"aetherscan: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("aetherscan: no photos found in " + ", ".join(map(str, photos)), file=sys.stderr)
        return 2
    bar = _ProgressBar() if sys.stderr.isatty() else _ProgressLog()
    try:
        engine = create_engine(settings.engine, **settings.engine_options())
        result = engine.reconstruct(found, bar)
    except EngineError as exc:
        bar.close()
        print(f"aetherscan: {exc}", file=sys.stderr)
        return 1
    bar.close()
    paths = {photo.name: photo.path for photo in found}
    try:
        written = [export_file(result, output, paths)]
        if cameras is not None:
            written.append(export(result, "cameras", cameras))
    except ValueError as exc:
        print(f"aetherscan: {exc}", file=sys.stderr)
        return 2
    for dropped in result.dropped:
        print(f"left out {dropped.name}: {dropped.reason}", file=sys.stderr)
    print(
        f"{len(result.views)} cameras, {result.num_points} points "
        f"({result.engine}, {result.timings_s.get('total', 0.0):.1f} s) -> "
        + ", ".join(map(str, written)),
        file=sys.stderr,
    )
    return 0


class _ProgressBar(Observer):
    """A tqdm bar on stderr showing the stage, the job's fraction and the engine's message."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=1000,
            file=sys.stderr,
            bar_format="{desc:>9}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        )

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self._bar.set_description_str(stage, refresh=False)
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.n = round(min(max(fraction, 0.0), 1.0) * 1000)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class _ProgressLog(Observer):
    """Progress as plain lines, for a stderr that is a file or a pipe (logs, CI): a line when
    the stage changes, and within a stage at most one every ``interval_s`` seconds."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self._interval_s = interval_s
        self._stage = ""
        self._last_line_s = 0.0

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last_line_s < self._interval_s:
            return
        self._stage, self._last_line_s = stage, now
        percent = round(min(max(fraction, 0.0), 1.0) * 100)
        print(f"{stage:>9} {percent:3d}%  {message}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass
