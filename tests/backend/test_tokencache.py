"""The API's cache of verified tokens: bounded staleness, immediate local revocation."""

from __future__ import annotations

import uuid

from backend.tokencache import TokenCache
from taskmanager.models import User


def _user() -> User:
    return User(id=uuid.uuid4(), email="a@example.com", role="user")


def test_an_entry_lives_exactly_ttl_seconds() -> None:
    now = [0.0]
    cache = TokenCache(10.0, timer=lambda: now[0])
    user = _user()
    cache.put("cy_secret", user)
    now[0] = 9.9
    assert cache.get("cy_secret") is user
    now[0] = 10.0
    assert cache.get("cy_secret") is None


def test_forgetting_a_user_drops_only_their_tokens() -> None:
    cache = TokenCache(10.0)
    alice, bob = _user(), _user()
    cache.put("cy_a1", alice)
    cache.put("cy_a2", alice)
    cache.put("cy_b1", bob)
    cache.forget_user(alice.id)
    assert (cache.get("cy_a1"), cache.get("cy_a2"), cache.get("cy_b1")) == (None, None, bob)


def test_zero_ttl_disables_the_cache() -> None:
    cache = TokenCache(0)
    cache.put("cy_secret", _user())
    assert cache.get("cy_secret") is None
