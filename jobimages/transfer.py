"""Move bytes between storage URLs and local files, retrying what a retry can fix.

Inputs come from `https://` SAS URLs, `http://` (Azurite) or the file system; the output
goes to a write-only SAS URL as an Azure block blob, or to a path. A write-only SAS cannot
read or HEAD the blob, so uploads never look before they leap.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from jobimages.errors import BadInput, StorageUnreachable
from jobimages.urls import is_remote, local_path, redact_url

_CHUNK = 1 << 20
_API_VERSION = "2023-11-03"
# Status codes a later attempt may not see: throttling, timeouts and server trouble.
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before calling storage unreachable."""

    attempts: int = 5  # one try and four retries
    base_delay_s: float = 0.5  # doubled after every failed attempt
    max_delay_s: float = 8.0  # cap, so the whole budget stays under half a minute
    timeout_s: float = 30.0  # per request; a stalled socket counts as a transient failure
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay_before(self, attempt: int) -> float:
        """Return the pause before the given retry (1 = first retry)."""
        return float(min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1)))


class _Transient(Exception):
    """A failure worth another attempt."""


def _open(request: urllib.request.Request, timeout_s: float) -> http.client.HTTPResponse:
    """Send a request and return the response, sorting failures into transient or final."""
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(  # noqa: S310 (Request already vetted)
            request, timeout=timeout_s
        )
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {exc.code}") from exc
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(_reason(exc)) from exc
    return response


def _reason(exc: BaseException) -> str:
    """Describe a network failure without quoting any URL."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return str(getattr(reason, "strerror", None) or reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _with_retries(what: str, url: str, policy: RetryPolicy, attempt_once: Callable[[], T]) -> T:
    """Run one storage operation, retrying transient failures with exponential backoff."""
    last = ""
    for attempt in range(1, policy.attempts + 1):
        if attempt > 1:
            policy.sleep(policy.delay_before(attempt - 1))
        try:
            return attempt_once()
        except _Transient as exc:
            last = str(exc)
    raise StorageUnreachable(
        f"could not reach storage for the {what} at {redact_url(url)} "
        f"after {policy.attempts} attempts: {last}"
    )


def fetch_to_file(
    url: str, dest: Path, *, what: str, policy: RetryPolicy, max_bytes: int | None = None
) -> int:
    """Copy the input at the URL to a local file and return its size in bytes."""
    if not is_remote(url):
        return _copy_local_input(url, dest, what=what, max_bytes=max_bytes)

    def attempt_once() -> int:
        # Only http(s) URLs get here; is_remote sent everything else to the file system.
        request = urllib.request.Request(url, headers={"x-ms-version": _API_VERSION})  # noqa: S310
        try:
            response = _open(request, policy.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise StorageUnreachable(
                    f"storage refused to read the {what} at {redact_url(url)} "
                    f"(HTTP {exc.code}): the SAS may have expired or lack read permission"
                ) from exc
            raise BadInput(
                f"the {what} at {redact_url(url)} could not be read (HTTP {exc.code})"
            ) from exc
        with response, dest.open("wb") as sink:
            try:
                return _copy_limited(response, sink, what=what, max_bytes=max_bytes)
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(_reason(exc)) from exc

    return _with_retries(what, url, policy, attempt_once)


def _copy_local_input(url: str, dest: Path, *, what: str, max_bytes: int | None) -> int:
    """Copy a local input, calling a missing file bad input."""
    try:
        source = local_path(url)
        with source.open("rb") as src, dest.open("wb") as sink:
            return _copy_limited(src, sink, what=what, max_bytes=max_bytes)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError) as exc:
        raise BadInput(f"the {what} at {url} does not exist or is not a file") from exc


class _TooLarge(BadInput):
    """The input is bigger than the limit allows."""


def _copy_limited(src: BinaryIO, sink: BinaryIO, *, what: str, max_bytes: int | None) -> int:
    """Copy a stream in chunks, refusing to go past max_bytes."""
    total = 0
    while chunk := src.read(_CHUNK):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise _TooLarge(f"the {what} is larger than the limit of {max_bytes} bytes")
        sink.write(chunk)
    return total


def store_file(
    source: Path,
    url: str,
    *,
    what: str,
    content_type: str,
    policy: RetryPolicy,
    block_bytes: int = 4 << 20,  # Azure accepts up to 4000 MiB a block; 4 MiB keeps retries cheap
) -> None:
    """Write a local file to the output URL: a path, or an Azure block blob via its SAS."""
    if not is_remote(url):
        _store_local(source, url, what=what)
        return
    size = source.stat().st_size
    if size <= block_bytes:
        data = source.read_bytes()
        _put(
            url,
            data,
            {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": content_type},
            what=what,
            policy=policy,
        )
        return
    block_ids: list[str] = []
    with source.open("rb") as src:
        index = 0
        while chunk := src.read(block_bytes):
            # Block ids must all have the same length before base64 encoding.
            block_id = base64.b64encode(f"block-{index:08d}".encode()).decode()
            _put(
                _with_query(url, comp="block", blockid=block_id),
                chunk,
                {},
                what=what,
                policy=policy,
                shown_url=url,
            )
            block_ids.append(block_id)
            index += 1
    body = "".join(f"<Latest>{b}</Latest>" for b in block_ids)
    manifest = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{body}</BlockList>'.encode()
    _put(
        _with_query(url, comp="blocklist"),
        manifest,
        {"x-ms-blob-content-type": content_type, "Content-Type": "application/xml"},
        what=what,
        policy=policy,
        shown_url=url,
    )


def _with_query(url: str, **params: str) -> str:
    """Append query parameters to a SAS URL, keeping its own."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _put(
    url: str,
    data: bytes,
    headers: dict[str, str],
    *,
    what: str,
    policy: RetryPolicy,
    shown_url: str | None = None,
) -> None:
    """PUT one request body, retrying transient failures."""
    shown = shown_url or url

    def attempt_once() -> None:
        request = urllib.request.Request(  # noqa: S310 (http/https only, as above)
            url,
            data=data,
            method="PUT",
            headers={"x-ms-version": _API_VERSION, "Content-Length": str(len(data)), **headers},
        )
        try:
            with _open(request, policy.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise StorageUnreachable(
                f"storage refused to write the {what} at {redact_url(shown)} (HTTP {exc.code})"
                + (
                    ": the SAS may have expired or lack write permission"
                    if exc.code in (401, 403)
                    else ""
                )
            ) from exc

    _with_retries(what, shown, policy, attempt_once)


def _store_local(source: Path, url: str, *, what: str) -> None:
    """Move the file into place atomically, so a reader never sees half an output."""
    try:
        target = local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise StorageUnreachable(f"could not write the {what} to {url}: {exc}") from exc
