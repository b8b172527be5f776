"""The soak's users: an operator's batch and a user's interactive jobs, sent through the API."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import requests
from PIL import Image

TEMPLATE = "postcard"
# Errors after which a request may or may not have been served: a real client sends the
# same request again (same row id, same idempotency key).
_RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class Client:
    """An API client that retries as a real one would: same keys, until answered."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send until a non-5xx answer arrives (the API or a service may be restarting)."""
        return self.send_until_answered(method, path, lambda: kwargs)

    def send_until_answered(
        self, method: str, path: str, build: Callable[[], dict[str, Any]]
    ) -> Any:
        """Send ``build()``'s request again and again until a non-5xx answer arrives.

        ``build`` makes the request's arguments afresh for each try (a streamed body can
        be read only once).
        """
        deadline = time.monotonic() + 300
        while True:
            try:
                answer = self.http.request(method, f"{self.base}{path}", timeout=10, **build())
                if answer.status_code < 500:
                    answer.raise_for_status()
                    return answer.json()
            except _RETRYABLE:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{method} {path} got no answer within 300 s")
            time.sleep(0.5)


def small_photo(colour: tuple[int, int, int]) -> tuple[str, bytes]:
    """Return a small flat JPEG as (file name, bytes)."""
    data = io.BytesIO()
    Image.new("RGB", (800, 600), colour).save(data, "JPEG")
    return "photo.jpg", data.getvalue()


def large_photo(seed: int) -> bytes:
    """Return a large, busy JPEG (several megabytes): an upload that takes a while to send."""
    pixels = np.random.default_rng(seed).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "JPEG", quality=90)
    return data.getvalue()


class TrickledBody:
    """A multipart upload body that is sent slowly, so it stays in flight to be cut.

    ``half_sent`` is set once half of it has gone out.
    """

    def __init__(self, photo: bytes, bytes_per_s: float, half_sent: threading.Event) -> None:
        self.boundary = uuid.uuid4().hex
        head = (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="large.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        self._data = head + photo + f"\r\n--{self.boundary}--\r\n".encode()
        self._position = 0
        self._bytes_per_s = bytes_per_s
        self._half_sent = half_sent

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        """Return the next chunk, after the time it would take to send at the set rate."""
        size = 64 * 1024 if size is None or size < 0 else size
        chunk = self._data[self._position : self._position + size]
        self._position += len(chunk)
        time.sleep(len(chunk) / self._bytes_per_s)
        if self._position * 2 >= len(self._data):
            self._half_sent.set()
        return chunk


def upload_trickled(client: Client, photo: bytes, half_sent: threading.Event) -> Any:
    """Upload ``photo`` slowly (about 3 s), trying again from the start until it is stored."""

    def build() -> dict[str, Any]:
        body = TrickledBody(photo, bytes_per_s=len(photo) / 3, half_sent=half_sent)
        return {
            "data": body,
            "headers": {"Content-Type": f"multipart/form-data; boundary={body.boundary}"},
        }

    return client.send_until_answered("POST", "/api/v1/uploads", build)


@dataclass
class BatchPlan:
    """The batch the operator submits: its rows, budget, concurrency and deadline."""

    rows: int
    budget_usd: Decimal
    max_concurrent: int
    max_runtime_s: int


@dataclass
class Load:
    """Submits the batch's rows and the interactive jobs, keeping every accepted job id."""

    operator: Client
    user: Client
    accepted: list[str] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    batch_id: str = ""
    user_photo_id: str = ""
    threads: list[threading.Thread] = field(default_factory=list)
    is_stopping: threading.Event = field(default_factory=threading.Event)

    def create_batch(self, plan: BatchPlan) -> None:
        """Create the batch and upload both accounts' photos."""
        batch = self.operator.call(
            "POST",
            "/api/v1/batches",
            json={
                "name": "soak",
                "budget_usd": str(plan.budget_usd),
                "max_concurrent": plan.max_concurrent,
                "max_runtime_s": plan.max_runtime_s,
            },
        )
        self.batch_id = batch["id"]
        self.user_photo_id = self.user.call(
            "POST", "/api/v1/uploads", files={"file": small_photo((40, 90, 200))}
        )["id"]

    def submit_rows(self, plan: BatchPlan, gap_s: float) -> None:
        """Submit the batch's rows one by one, ``gap_s`` apart."""
        photo = self.operator.call(
            "POST", "/api/v1/uploads", files={"file": small_photo((200, 60, 40))}
        )
        for row in range(plan.rows):
            job = self.operator.call(
                "POST",
                "/api/v1/jobs",
                json={
                    "template": TEMPLATE,
                    "upload_id": photo["id"],
                    "batch_id": self.batch_id,
                    "row_id": f"row-{row}",
                    "max_runtime_s": plan.max_runtime_s,
                },
            )
            self.accepted.append(job["id"])
            time.sleep(gap_s)

    def submit_interactive(self, key: str, upload_id: str | None = None) -> str:
        """Submit one interactive job (idempotent by ``key``); return its id."""
        job = self.user.call(
            "POST",
            "/api/v1/jobs",
            headers={"Idempotency-Key": key},
            json={"template": TEMPLATE, "upload_id": upload_id or self.user_photo_id},
        )
        self.accepted.append(job["id"])
        return str(job["id"])

    def submit_interactive_stream(self, gap_s: float) -> None:
        """Submit interactive jobs ``gap_s`` apart until told to stop: work throughout."""
        index = 0
        while not self.is_stopping.is_set():
            self.submit_interactive(f"soak-{index}")
            index += 1
            self.is_stopping.wait(gap_s)

    def start(self, target: Callable[[], None]) -> threading.Thread:
        """Run ``target`` in a thread, keeping what it raises for ``raise_failures``."""

        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # reported by raise_failures
                self.failures.append(exc)

        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def stop_submitting(self) -> None:
        """End the interactive stream and wait until every submitter is done."""
        self.is_stopping.set()
        for thread in self.threads:
            thread.join()

    def raise_failures(self) -> None:
        """Stop the soak if a submitter failed."""
        if self.failures:
            raise SystemExit(f"submitting failed: {self.failures[0]!r}")
