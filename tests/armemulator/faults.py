"""Injected faults: canned ARM error answers the emulator gives instead of serving a request."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

# Request kinds, as counted and as faults target them.
KINDS = ("create", "get", "delete", "stop", "logs", "list", "operation")

# Error codes ACI really answers with.
QUOTA_CODE = "ContainerGroupQuotaReached"
CAPACITY_CODE = "ServiceUnavailable"
IMAGE_CODE = "InaccessibleImage"


@dataclass
class Fault:
    """Answer the next ``count`` requests of ``kind`` with this error."""

    kind: str
    status: int
    code: str
    message: str
    count: int
    retry_after_s: float | None = None
    # A storm: every such request is answered until this time.monotonic(), not counted.
    until: float | None = None

    def body(self) -> dict[str, Any]:
        """Return the ARM error body."""
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        """Return the response headers (Retry-After when set)."""
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": f"{self.retry_after_s:g}"}


class FaultBook:
    """Queued faults per request kind, taken one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue a fault."""
        if fault.kind not in (*KINDS, "any"):
            raise ValueError(f"unknown request kind {fault.kind!r}")
        with self._lock:
            self._faults.append(fault)

    def take(self, kind: str) -> Fault | None:
        """Return the fault the next ``kind`` request must get, if any."""
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.until is None or f.until > now]
            for fault in self._faults:
                if fault.kind not in (kind, "any"):
                    continue
                if fault.until is not None:
                    return fault
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._faults.clear()
