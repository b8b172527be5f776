"""A sliding-window rate limiter shared by every manager through Redis.

ACI limits container group creates and deletes per subscription (by default 100 per
5 minutes and 300 per hour each); every manager process must count against the same
windows, so the windows live in Redis sorted sets and one Lua script checks and takes
a slot atomically, on the Redis server's clock.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

# KEYS: one sorted set per window. ARGV: window_s, limit per key, then the slot's id.
# Returns {1, now} when the slot is taken, {0, seconds until one frees} when refused.
_TAKE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wait = 0
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 * i - 1])
  local limit = tonumber(ARGV[2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local used = redis.call('ZCARD', KEYS[i])
  if used >= limit then
    local freeing = redis.call('ZRANGE', KEYS[i], used - limit, used - limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(freeing[2]) + window - now)
  end
end
if wait > 0 then
  return {0, tostring(wait)}
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[#ARGV])
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i - 1]) * 1000) + 1000)
end
return {1, tostring(now)}
"""

# Re-date a taken slot to now (its request has finished).
_SETTLE = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now, ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class Window:
    """At most ``limit`` actions in any ``seconds``-long window."""

    limit: int
    seconds: float


class RateLimited(Exception):
    """No slot freed within the allowed wait."""

    def __init__(self, action: str, retry_after_s: float) -> None:
        super().__init__(f"{action} rate limit reached; a slot frees in {retry_after_s:.1f} s")
        self.action = action
        self.retry_after_s = retry_after_s


class SharedRateLimiter:
    """Hand out slots for one action (e.g. ACI creates) within every window's limit."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        key: str,
        windows: list[Window],
        *,
        max_wait_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._keys = [f"{key}:{window.seconds:g}s" for window in windows]
        self._windows = windows
        self._action = key.rsplit(":", 1)[-1]
        self._max_wait_s = max_wait_s
        self._sleep = sleep
        self._take = client.register_script(_TAKE)
        self._settle = client.register_script(_SETTLE)

    def acquire(self) -> str:
        """Take a slot, waiting up to ``max_wait_s`` for one; return the slot's id.

        Raises ``RateLimited`` (with the wait still needed) when none frees in time.
        """
        slot = uuid.uuid4().hex
        args: list[str | float | int] = []
        for window in self._windows:
            args += [window.seconds, window.limit]
        args.append(slot)
        deadline = time.monotonic() + self._max_wait_s
        while True:
            is_taken, value = self._take(keys=self._keys, args=args)
            if int(is_taken):
                return slot
            wait = float(value)
            remaining = deadline - time.monotonic()
            if wait > remaining:
                raise RateLimited(self._action, wait)
            # Jitter spreads managers that all waited for the same slot.
            self._sleep(min(remaining, wait + random.uniform(0, 0.05)))  # noqa: S311

    def settle(self, slot: str) -> None:
        """Date the slot at the end of its request.

        The window then starts when the request may have reached Azure at the latest,
        so Azure's own count of any window never exceeds ours.
        """
        self._settle(keys=self._keys, args=[slot])

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot around one request."""
        slot = self.acquire()
        try:
            yield
        finally:
            self.settle(slot)
