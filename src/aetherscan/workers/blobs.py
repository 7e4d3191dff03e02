"""Where the photos and results of queued jobs live, for the server and its workers alike.

A key is a path relative to the data folder: ``jobs/<id>/photos/0000.jpg``,
``jobs/<id>/result/scene.ply``. Two kinds of store hold them:

- ``FolderBlobs``: the data folder itself, on one machine or a file system the workers share
  (``AETHERSCAN_DATA_DIR``); a key is a file already, and nothing is copied.
- ``S3Blobs``: a bucket of S3-compatible object storage (``s3://bucket/prefix``; MinIO and the
  like through ``s3_endpoint_url``), for workers that share no disk with the server. The
  server uploads each photo as it arrives and fetches a result when its job is done.

A store that refuses or cannot be reached raises ``StorageError`` with a sentence for people;
the client's timeouts are short, so that nothing waits for ever on the network.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlparse

from aetherscan.server.storage import StorageError, writing

log = logging.getLogger(__name__)

RESULT_FOLDER = "result"


def photo_key(job_id: str, file_name: str) -> str:
    return f"jobs/{job_id}/photos/{file_name}"


def result_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/{RESULT_FOLDER}"


class Blobs(Protocol):
    def local_path(self, key: str) -> Path | None:
        """The file that holds ``key`` on this machine, if the store is a folder here."""

    def upload(self, path: Path, key: str) -> None:
        """Store the file ``path`` as ``key`` (nothing to do where it is that file already)."""

    def download(self, key: str, path: Path) -> None:
        """Write ``key`` to the file ``path``."""

    def publish_folder(self, folder: Path, prefix: str) -> None:
        """Make the files of ``folder`` the whole of ``prefix``/, replacing what it held; the
        folder is used up."""

    def fetch_folder(self, prefix: str, folder: Path) -> None:
        """Copy every file under ``prefix``/ into ``folder`` (nothing where it is that folder)."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every file under ``prefix``/; never raises (logged)."""


def open_blobs(storage_url: str | None, data_dir: Path, endpoint_url: str | None = None) -> Blobs:
    """The store that ``storage_url`` names: the data folder when it is None."""
    if not storage_url:
        return FolderBlobs(data_dir)
    parsed = urlparse(storage_url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(
            f"storage URL {storage_url!r} is not s3://bucket/prefix (setting storage_url)"
        )
    return S3Blobs(parsed.netloc, parsed.path.strip("/"), endpoint_url)


class FolderBlobs:
    """The data folder as the store (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def local_path(self, key: str) -> Path:
        return self.root / key

    def upload(self, path: Path, key: str) -> None:
        target = self.root / key
        if path.resolve() != target.resolve():
            with writing("a file of the store"):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)

    def download(self, key: str, path: Path) -> None:
        shutil.copyfile(self.root / key, path)

    def publish_folder(self, folder: Path, prefix: str) -> None:
        """The folder moves in whole: it was made beside the target (``scratch_folder``), so the
        target never holds half a result."""
        target = self.root / prefix
        if not target.parent.is_dir():  # the job was deleted meanwhile: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
            raise FileNotFoundError(f"{target.parent.name} has no folder any more")
        with writing("a job's results"):
            if folder.resolve().parent != target.parent.resolve():
                shutil.copytree(folder, target.with_name(folder.name))
                shutil.rmtree(folder, ignore_errors=True)
                folder = target.with_name(folder.name)
            shutil.rmtree(target, ignore_errors=True)
            folder.rename(target)

    def fetch_folder(self, prefix: str, folder: Path) -> None:
        source = self.root / prefix
        if source.resolve() != Path(folder).resolve():
            shutil.copytree(source, folder, dirs_exist_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)

    def scratch_folder(self, prefix: str) -> Path:
        """A new folder beside ``prefix`` on the same file system, to publish in one move."""
        target = self.root / prefix
        if not target.parent.is_dir():
            raise FileNotFoundError(f"{target.parent.name} has no folder any more")
        scratch = target.with_name(f".{target.name}-{secrets.token_hex(4)}")
        scratch.mkdir()
        return scratch


class S3Blobs:
    """A bucket of S3-compatible object storage as the store (see the module)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def local_path(self, key: str) -> None:
        return None

    def upload(self, path: Path, key: str) -> None:
        with _s3_errors("store a file in"):
            self._client.upload_file(str(path), self.bucket, self._key(key))

    def download(self, key: str, path: Path) -> None:
        with _s3_errors("read a file from"):
            self._client.download_file(self.bucket, self._key(key), str(path))

    def publish_folder(self, folder: Path, prefix: str) -> None:
        """Files first, then the removal of the older files the folder does not have: a reader
        in between sees the new files, never none. The folder is removed after."""
        names = {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}
        for name in sorted(names):
            self.upload(folder / name, f"{prefix}/{name}")
        stale = [key for key in self._list(prefix) if key.removeprefix(f"{prefix}/") not in names]
        self._delete(stale)
        shutil.rmtree(folder, ignore_errors=True)

    def fetch_folder(self, prefix: str, folder: Path) -> None:
        folder = Path(folder)
        for key in self._list(prefix):
            target = folder / key.removeprefix(f"{prefix}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            self.download(key, part)
            part.replace(target)

    def delete_prefix(self, prefix: str) -> None:
        try:
            self._delete(self._list(prefix))
        except StorageError as exc:
            log.error("the files under %s could not be removed from the store: %s", prefix, exc)

    def _list(self, prefix: str) -> list[str]:
        """The keys (without the store's own prefix) under ``prefix``/."""
        keys = []
        with _s3_errors("list the files of"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix) + "/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    keys.append(item["Key"][len(self.prefix) + 1 :] if self.prefix else item["Key"])
        return keys

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # the most one request may name
            chunk = [{"Key": self._key(key)} for key in keys[start : start + 1000]]
            with _s3_errors("remove files from"):
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})


class _s3_errors:
    """Turn the object store's errors into a StorageError that says what could not be done."""

    def __init__(self, doing: str) -> None:
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> Literal[False]:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        if exc is None or not isinstance(exc, BotoCoreError | ClientError | S3UploadFailedError):
            return False
        log.error("the object store: could not %s it: %s", self.doing, exc)
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "an error")
            if code in ("404", "NoSuchKey", "NoSuchBucket"):
                raise FileNotFoundError(f"the object store has no such file ({code})") from exc
            cause = f"it answered {code}"
        else:
            cause = "it could not be reached" if "connect" in str(exc).lower() else str(exc)
        raise StorageError(
            f"the server could not {self.doing} its object storage ({cause}); try again later",
            503,
        ) from exc
