"""Blob storage in a local directory, for the single-machine mode.

The URLs it mints are ``file://`` URLs: the local container backend runs on this
machine as the same user, so there is no boundary for a signature to protect and
"least privilege" is the caller's promise, not enforced. Writes land atomically (a
temporary file renamed into place), so a reader never sees half a blob.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from taskmanager.storage.base import BlobNotFound
from taskmanager.storage.keys import validate_key

_CHUNK = 1024 * 1024


class LocalStorage:
    """A ``Storage`` whose blobs are files under ``root``."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def path_of(self, key: str) -> Path:
        """Return the file that holds ``key``."""
        return self.root / validate_key(key)

    def upload(self, key: str, source: BinaryIO, *, content_type: str | None = None) -> None:
        """Store everything ``source`` yields under ``key``, replacing any old blob."""
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as target:
                shutil.copyfileobj(source, target, _CHUNK)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def download(self, key: str, destination: BinaryIO) -> None:
        """Write the blob's bytes to ``destination``; raise ``BlobNotFound`` if missing."""
        with self._open(key) as source:
            shutil.copyfileobj(source, destination, _CHUNK)

    def iter_bytes(self, key: str, *, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the blob's bytes from ``start`` (``length`` of them, or to the end)."""
        remaining = length
        with self._open(key) as source:
            source.seek(start)
            while remaining is None or remaining > 0:
                chunk = source.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def size(self, key: str) -> int:
        """Return the blob's size in bytes; raise ``BlobNotFound`` if missing."""
        try:
            return self.path_of(key).stat().st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        return self.path_of(key).is_file()

    def delete(self, key: str) -> None:
        """Delete the blob; succeed quietly if it is already gone."""
        self.path_of(key).unlink(missing_ok=True)

    def read_url(self, key: str, ttl: timedelta, *, download_name: str | None = None) -> str:
        """Return a ``file://`` URL of the blob (``ttl`` cannot be enforced locally)."""
        return self.path_of(key).as_uri()

    def write_url(self, key: str, ttl: timedelta) -> str:
        """Return a ``file://`` URL the blob can be written to (its folder is created)."""
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.as_uri()

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
