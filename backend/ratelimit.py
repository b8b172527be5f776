"""Fixed-window rate limits kept in Redis, shared by every API process.

A limit counts requests per key (a user id, a client address) per minute. If Redis
cannot be reached the request is let through: Postgres, not Redis, protects the data,
and refusing every sign-in because a cache is down would be worse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import structlog

log = structlog.get_logger(__name__)

WINDOW_S = 60


class RateLimited(Exception):
    """Too many requests; ``retry_after_s`` says when the window ends."""

    def __init__(self, what: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"more than {limit} {what} requests per minute; wait {retry_after_s} s")
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass
class RateLimiter:
    """Counts requests per key and minute in Redis."""

    connection: redis.Redis[str]
    prefix: str = "cy:rl"
    # Seconds since the epoch; tests pin it so a window boundary cannot split a test.
    clock: Callable[[], float] = field(default=time.time)

    def hit(self, what: str, keys: list[str], limit: int) -> None:
        """Count one request against each key; raise ``RateLimited`` past ``limit``."""
        if limit <= 0 or not keys:
            return
        counts = self._add(what, keys)
        if counts and max(counts) > limit:
            raise self._limited(what, limit)

    def count(self, what: str, keys: list[str]) -> None:
        """Count one event (a failed sign-in, say) against each key; refuse nothing."""
        if keys:
            self._add(what, keys)

    def check(self, what: str, keys: list[str], limit: int) -> None:
        """Raise ``RateLimited`` if a key already counted ``limit`` events this window."""
        if limit <= 0 or not keys:
            return
        names = self._names(what, keys)
        try:
            counts = [int(c or 0) for c in self.connection.mget(names)]
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable; request allowed", error=str(exc))
            return
        if max(counts) >= limit:
            raise self._limited(what, limit)

    def _names(self, what: str, keys: list[str]) -> list[str]:
        window = int(self.clock() // WINDOW_S)
        return [f"{self.prefix}:{what}:{key}:{window}" for key in keys]

    def _add(self, what: str, keys: list[str]) -> list[int]:
        """Add one to each key's count; return the counts (none if Redis is away)."""
        try:
            pipeline = self.connection.pipeline(transaction=False)
            for name in self._names(what, keys):
                pipeline.incr(name)
                pipeline.expire(name, WINDOW_S * 2)
            return [int(c) for c in pipeline.execute()[::2]]
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable; request allowed", error=str(exc))
            return []

    def _limited(self, what: str, limit: int) -> RateLimited:
        now = self.clock()
        window_end = (int(now // WINDOW_S) + 1) * WINDOW_S
        return RateLimited(what, limit, max(1, int(window_end - now) + 1))
