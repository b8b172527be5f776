"""A small client of the clipyard HTTP API for the command line (never the database).

It knows the API's conventions: a bearer token, JSON bodies, ``application/problem+json``
errors turned into one-line ``ApiError``s that carry the CLI's exit code, and retries of
idempotent requests when the network or a proxy fails for a moment. Credentials come from
``clipyard login`` (a user config file readable by its owner only) or ``CLIPYARD_TOKEN``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

DEFAULT_API_URL = "http://127.0.0.1:8000"
# Statuses worth another try of an idempotent request: the server or a proxy hiccupped.
_RETRY_STATUSES = frozenset({502, 503, 504})
_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
# An upload refused with 429 (the API is checking other photos of ours; nothing was
# stored) is sent again after its Retry-After, for this long at most, in seconds.
_UPLOAD_BUSY_WAIT_S = 300.0
_HASH_CHUNK = 1024 * 1024


class ApiError(Exception):
    """A request failed; ``str()`` is one line a person can act on."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.retry_after_s = retry_after_s

    @property
    def is_unreachable(self) -> bool:
        """Tell whether the API could not be reached (or its proxy said it is down)."""
        return self.status is None or self.status in _RETRY_STATUSES

    @property
    def is_refused(self) -> bool:
        """Tell whether the API refused the request as given (a 4xx: fix and retry)."""
        return self.status is not None and 400 <= self.status < 500


def config_path() -> Path:
    """Return where ``clipyard login`` keeps the API URL and token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "clipyard" / "credentials.json"


@dataclass(frozen=True)
class Credentials:
    """The API to talk to and the token to show it."""

    api_url: str
    token: str | None
    token_id: str | None = None

    def save(self, path: Path | None = None) -> Path:
        """Write the credentials readable by their owner only (0600); return the path."""
        target = path or config_path()
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"api_url": self.api_url, "token": self.token, "token_id": self.token_id}
        # Created 0600 from the start: the secret is never readable by others, not even briefly.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        target.chmod(0o600)
        return target


def load_credentials(
    api_url: str | None, token: str | None, path: Path | None = None
) -> Credentials:
    """Combine explicit values (options, environment) with the saved login, explicit first."""
    saved: dict[str, Any] = {}
    source = path or config_path()
    if source.exists():
        try:
            saved = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ApiError(
                f"cannot read {source}: {exc}; run clipyard login again", status=400
            ) from exc
    url = api_url or saved.get("api_url") or DEFAULT_API_URL
    return Credentials(url.rstrip("/"), token or saved.get("token"), saved.get("token_id"))


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's bytes (what the API records for an upload)."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _retry_after_s(response: requests.Response) -> float | None:
    """Return the answer's Retry-After in seconds (the API sends seconds), if any."""
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdecimal() else None


def _problem_message(response: requests.Response) -> tuple[str, str | None]:
    """Return a one-line message and the field named by a problem+json answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or response.reason
        return f"{detail} (HTTP {response.status_code})", body.get("field")
    return f"HTTP {response.status_code} {response.reason}", None


class ApiClient:
    """Calls the API as one user; every method returns decoded JSON or raises ``ApiError``."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout_s: float = 60.0,
        http: requests.Session | None = None,
    ) -> None:
        self.base = credentials.api_url.rstrip("/")
        self.http = http or requests.Session()
        self.timeout_s = timeout_s
        if credentials.token:
            self.http.headers["Authorization"] = f"Bearer {credentials.token}"
        self.http.headers["User-Agent"] = "clipyard-cli"

    def request(
        self,
        method: str,
        path: str,
        *,
        is_idempotent: bool | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one request; retry idempotent ones on network errors and 502/503/504."""
        retryable = method.upper() in ("GET", "HEAD") if is_idempotent is None else is_idempotent
        delays = _RETRY_DELAYS_S if retryable else ()
        url = f"{self.base}{path}"
        for attempt in range(len(delays) + 1):
            try:
                response = self.http.request(
                    method, url, headers=headers, timeout=self.timeout_s, **kwargs
                )
            except requests.RequestException as exc:
                if attempt < len(delays):
                    time.sleep(delays[attempt])
                    continue
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ApiError(f"the API at {self.base} is unreachable: {reason}") from exc
            if response.status_code in _RETRY_STATUSES and attempt < len(delays):
                time.sleep(delays[attempt])
                continue
            return self._decode(response)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _decode(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            message, field = _problem_message(response)
            if response.status_code == 401:
                message += "; run clipyard login, or set CLIPYARD_TOKEN"
            raise ApiError(
                message,
                status=response.status_code,
                field=field,
                retry_after_s=_retry_after_s(response),
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with query ``params`` (None values left out)."""
        query = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=query)

    def post(self, path: str, body: Any = None, *, is_idempotent: bool = False) -> Any:
        """POST a JSON body."""
        return self.request("POST", path, json=body or {}, is_idempotent=is_idempotent)

    # --- accounts ------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """Return who the token belongs to."""
        found: dict[str, Any] = self.get("/api/v1/auth/me")["user"]
        return found

    def revoke_token(self, token_id: str) -> None:
        """Revoke one of the caller's API tokens."""
        self.request("DELETE", f"/api/v1/tokens/{token_id}", is_idempotent=True)

    # --- uploads, templates, jobs ---------------------------------------------------------

    def find_upload(self, sha256: str) -> dict[str, Any] | None:
        """Return the caller's upload of the file with this SHA-256, if one exists."""
        items: list[dict[str, Any]] = self.get("/api/v1/uploads", sha256=sha256)["items"]
        return items[0] if items else None

    def upload(self, path: Path, *, sha256: str | None = None) -> dict[str, Any]:
        """Upload a photo unless the caller already did (same bytes); return the upload."""
        found = self.find_upload(sha256 or file_sha256(path))
        return found if found is not None else self.post_upload(path)

    def post_upload(self, path: Path) -> dict[str, Any]:
        """Upload a photo (multipart), whether or not the same bytes were sent before.

        A 429 is waited out: the API checks a few photos per user at once, and
        ``clipyard batch`` sends more than that in parallel.
        """
        give_up_at = time.monotonic() + _UPLOAD_BUSY_WAIT_S
        while True:
            try:
                with path.open("rb") as photo:
                    created: dict[str, Any] = self.request(
                        "POST",
                        "/api/v1/uploads",
                        files={"file": (path.name, photo)},
                        is_idempotent=False,
                    )
                return created
            except ApiError as exc:
                if exc.status != 429 or exc.retry_after_s is None:
                    raise
                # One to two Retry-Afters: senders refused together come back apart.
                wait_s = exc.retry_after_s * random.uniform(1, 2)  # noqa: S311 (not a secret)
                if time.monotonic() + wait_s > give_up_at:
                    raise
                time.sleep(wait_s)

    def templates(self) -> list[dict[str, Any]]:
        """List the templates."""
        items: list[dict[str, Any]] = self.get("/api/v1/templates")["items"]
        return items

    def create_job(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
        """Submit a job; with a key, submitting again returns the same job (and is retried)."""
        key = idempotency_key or str(uuid.uuid4())
        return self.request(
            "POST", "/api/v1/jobs", json=body, headers={"Idempotency-Key": key}, is_idempotent=True
        )

    def get_job(self, job_id: str) -> Any:
        """Return a job."""
        return self.get(f"/api/v1/jobs/{job_id}")

    def jobs(self, **filters: Any) -> Any:
        """Return one page of jobs (filters: state, template, batch_id, limit, cursor)."""
        return self.get("/api/v1/jobs", **filters)

    def events(self, job_id: str, after: int = 0) -> Any:
        """Return a job's events after ``after`` and whether the job is finished."""
        return self.get(f"/api/v1/jobs/{job_id}/events", after=after)

    # --- batches ---------------------------------------------------------------------------

    def plan(self, body: dict[str, Any]) -> Any:
        """Estimate a batch without creating anything."""
        return self.post("/api/v1/batches/plan", body, is_idempotent=True)

    def find_batch(self, name: str) -> dict[str, Any] | None:
        """Return the caller's batch of this name, if any."""
        items: list[dict[str, Any]] = self.get("/api/v1/batches", name=name)["items"]
        return items[0] if items else None

    def resolve_batch(self, name_or_id: str) -> dict[str, Any]:
        """Return a batch (with its jobs counted by state) given its id or its name."""
        try:
            batch_id = str(uuid.UUID(name_or_id))
        except ValueError:
            found = self.find_batch(name_or_id)
            if found is None:
                raise ApiError(f"you have no batch named {name_or_id!r}", status=404) from None
            batch_id = found["id"]
        batch: dict[str, Any] = self.get(f"/api/v1/batches/{batch_id}")
        return batch

    def create_batch(self, body: dict[str, Any]) -> Any:
        """Create a batch."""
        return self.post("/api/v1/batches", body)

    def batches(self) -> list[dict[str, Any]]:
        """List batches, newest first."""
        items: list[dict[str, Any]] = self.get("/api/v1/batches")["items"]
        return items

    def add_rows(self, batch_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create the rows' jobs (idempotent by row id, so retried)."""
        items: list[dict[str, Any]] = self.post(
            f"/api/v1/batches/{batch_id}/jobs", {"rows": rows}, is_idempotent=True
        )["items"]
        return items

    def set_budget(self, batch_id: str, budget_usd: str) -> Any:
        """Set a batch's budget (resumes it if the budget had paused it)."""
        return self.post(
            f"/api/v1/batches/{batch_id}/budget", {"budget_usd": budget_usd}, is_idempotent=True
        )

    def cancel_batch(self, batch_id: str) -> Any:
        """Cancel a batch."""
        return self.post(f"/api/v1/batches/{batch_id}/cancel", is_idempotent=True)

    def retry_failed(self, batch_id: str) -> Any:
        """Queue a batch's failed jobs again."""
        return self.post(f"/api/v1/batches/{batch_id}/retry-failed")

    def report(self, batch_id: str, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Yield every report row of a batch, page by page."""
        cursor = None
        while True:
            page = self.get(f"/api/v1/batches/{batch_id}/report", cursor=cursor, limit=page_size)
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return
