"""API tokens verified recently, so a busy client's requests skip a database round trip.

A token revoked through this process is forgotten at once; other API processes may
accept it for at most ``token_cache_s`` more seconds (likewise an expired token or a
deactivated user). Set ``token_cache_s`` to 0 to check the database on every request.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from cachetools import TTLCache

from taskmanager.accounts import hash_token
from taskmanager.models import User

_MAX_TOKENS = 10_000


class TokenCache:
    """Token hash -> its (detached, read-only) user, for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, timer: Callable[[], float] = time.monotonic) -> None:
        self._users: TTLCache[str, User] | None = (
            TTLCache(maxsize=_MAX_TOKENS, ttl=ttl_s, timer=timer) if ttl_s > 0 else None
        )
        # TTLCache is not thread-safe; gunicorn's gthread workers share this instance.
        self._lock = threading.Lock()

    def get(self, secret: str) -> User | None:
        """Return the user of a recently verified ``secret``, or None."""
        if self._users is None:
            return None
        with self._lock:
            return self._users.get(hash_token(secret))

    def put(self, secret: str, user: User) -> None:
        """Remember that ``secret`` was just verified as ``user``'s."""
        if self._users is not None:
            with self._lock:
                self._users[hash_token(secret)] = user

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Drop every cached token of ``user_id`` (one was revoked)."""
        if self._users is None:
            return
        with self._lock:
            for key in [k for k, user in self._users.items() if user.id == user_id]:
                del self._users[key]
