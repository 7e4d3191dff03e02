"""A video arriving over the WebSocket in pieces (feature ``video``): written to a file in the
data folder's tmp/ as it comes, within ``max_video_mb``, and removed once its frames are taken
or the connection ends."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aetherscan.server.storage import writing
from aetherscan.server.uploads import Refused, check_video_size


class IncomingVideo:
    def __init__(self, label: str, folder: Path, max_mb: float) -> None:
        self.label, self.max_mb = label, max_mb
        handle, name = tempfile.mkstemp(prefix="video-", dir=folder)
        self.path = Path(name)
        self._file = open(handle, "wb")  # noqa: SIM115 (closed in finish and discard)
        self.size = 0

    def append(self, data: bytes) -> None:
        """One more piece; Refused over the limit (the caller discards the video then).
        Blocking: run in a thread."""
        try:
            check_video_size(self.label, self.size + len(data), self.max_mb)
        except Refused as exc:
            raise Refused(f"{exc.message}; the pieces received are dropped", status=413) from None
        with writing("a video"):
            self._file.write(data)
        self.size += len(data)

    def finish(self) -> Path:
        """The whole video's file (the caller discards it once its frames are taken)."""
        with writing("a video"):
            self._file.close()
        return self.path

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)
