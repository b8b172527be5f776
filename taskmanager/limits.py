"""The bounds of a job's resources: one source for the job service, batches and the API.

A job (or a batch, for all its jobs) may ask for CPUs, memory, a deadline and a number
of attempts; what it leaves unset comes from the settings' defaults. Every entry point
checks against the same ranges here, so a request the API accepts is one the service
accepts, and a manifest row is judged by the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from taskmanager.errors import InvalidRequest
from taskmanager.settings import Settings

N = TypeVar("N", int, Decimal)


@dataclass(frozen=True)
class Bound(Generic[N]):
    """An inclusive range a request field must lie in."""

    field: str
    low: N
    high: N
    unit: str = ""

    def describe(self) -> str:
        """Say the range in words, as error messages and API descriptions use it."""
        unit = f" {self.unit}" if self.unit else ""
        return f"must be between {self.low} and {self.high}{unit}"

    def check(self, value: N) -> N:
        """Return ``value``; raise ``InvalidRequest`` naming the field if out of range."""
        if not self.low <= value <= self.high:
            raise InvalidRequest(self.field, self.describe())
        return value


CPU = Bound("cpu", Decimal("0.25"), Decimal(4), "vCPUs")
MEMORY_GB = Bound("memory_gb", Decimal("0.5"), Decimal(16), "GB")
MAX_RUNTIME_S = Bound("max_runtime_s", 1, 6 * 3600, "seconds")
MAX_ATTEMPTS = Bound("max_attempts", 1, 10)
# A batch's cap on its own running containers (the global caps still apply).
MAX_CONCURRENT = Bound("max_concurrent", 1, 1000)


@dataclass(frozen=True)
class Resources:
    """What one job's containers get and how long and often they may run."""

    cpu: Decimal
    memory_gb: Decimal
    max_runtime_s: int
    max_attempts: int


def resolve_resources(
    settings: Settings,
    *,
    cpu: Decimal | None = None,
    memory_gb: Decimal | None = None,
    max_runtime_s: int | None = None,
    max_attempts: int | None = None,
) -> Resources:
    """Fill what was not asked for from the settings, and check every value.

    Only ``None`` means "not asked for": a zero is a value, and out of range.
    """
    return Resources(
        cpu=CPU.check(settings.default_cpu if cpu is None else cpu),
        memory_gb=MEMORY_GB.check(settings.default_memory_gb if memory_gb is None else memory_gb),
        max_runtime_s=MAX_RUNTIME_S.check(
            settings.default_max_runtime_s if max_runtime_s is None else max_runtime_s
        ),
        max_attempts=MAX_ATTEMPTS.check(
            settings.default_max_attempts if max_attempts is None else max_attempts
        ),
    )


_DECIMAL_NUMBER = re.compile(r"[0-9]{1,18}")


def is_decimal_number(text: str) -> bool:
    """Tell whether ``text`` is a plain whole number in ASCII digits.

    ``str.isdigit`` says yes to '²' and other Unicode digits that ``int`` refuses.
    """
    return _DECIMAL_NUMBER.fullmatch(text) is not None
