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
        now = self.clock()
        window = int(now // WINDOW_S)
        names = [f"{self.prefix}:{what}:{key}:{window}" for key in keys]
        try:
            pipeline = self.connection.pipeline(transaction=False)
            for name in names:
                pipeline.incr(name)
                pipeline.expire(name, WINDOW_S * 2)
            counts = pipeline.execute()[::2]
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable; request allowed", error=str(exc))
            return
        if max(int(c) for c in counts) > limit:
            raise RateLimited(what, limit, max(1, int((window + 1) * WINDOW_S - now) + 1))
