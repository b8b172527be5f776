"""The storage interface every blob store implements, and its errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import BinaryIO, Protocol


class StorageError(Exception):
    """A blob operation failed."""


class BlobNotFound(StorageError):
    """The blob does not exist."""


class StorageUnavailable(StorageError):
    """The store could not be reached or answered with a server error; try again later."""


class InvalidKey(StorageError, ValueError):
    """A blob key that could escape its store or is not well formed."""


class Storage(Protocol):
    """A blob store that also mints short-lived, least-privilege URLs for containers.

    Keys are ``/``-separated relative paths (see ``keys.py``). Transfers stream:
    nothing reads a whole blob into memory.
    """

    def upload(self, key: str, source: BinaryIO, *, content_type: str | None = None) -> None:
        """Store everything ``source`` yields under ``key``, replacing any old blob."""

    def download(self, key: str, destination: BinaryIO) -> None:
        """Write the blob's bytes to ``destination``; raise ``BlobNotFound`` if missing."""

    def iter_bytes(self, key: str, *, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the blob's bytes from ``start`` (``length`` of them, or to the end)."""

    def size(self, key: str) -> int:
        """Return the blob's size in bytes; raise ``BlobNotFound`` if missing."""

    def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""

    def delete(self, key: str) -> None:
        """Delete the blob; succeed quietly if it is already gone."""

    def read_url(self, key: str, ttl: timedelta, *, download_name: str | None = None) -> str:
        """Return a URL that can only read this blob, valid for ``ttl``."""

    def write_url(self, key: str, ttl: timedelta) -> str:
        """Return a URL that can only create or write this blob, valid for ``ttl``."""
