"""Accounts under attack: no lock-out by strangers, no child outliving its parent token
(issue 17, item 6)."""

from __future__ import annotations

import time
from datetime import datetime

from flask import Flask

from tests.backend.conftest import PASSWORD, Identity


def _login(app: Flask, email: str, password: str, address: str) -> int:
    response = app.test_client().post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )
    return response.status_code


def test_a_stranger_failing_a_known_account_locks_out_only_themselves(
    app: Flask, alice: Identity
) -> None:
    moment = time.time()
    app.extensions["clipyard"].limiter.clock = lambda: moment
    limit = app.extensions["clipyard"].settings.login_failures_per_minute
    stranger = [_login(app, alice.email, "wrong password!", "203.0.113.9") for _ in range(8)]
    assert stranger[:limit] == [401] * limit
    assert set(stranger[limit:]) == {429}
    # The account's owner, from their own address, still signs in.
    assert _login(app, alice.email, PASSWORD, "198.51.100.7") == 200


def test_an_ipv6_client_is_counted_by_its_64(app: Flask, alice: Identity) -> None:
    moment = time.time()
    app.extensions["clipyard"].limiter.clock = lambda: moment
    limit = app.extensions["clipyard"].settings.login_failures_per_minute
    # A new address of the same /64 for every attempt changes nothing.
    statuses = [
        _login(app, alice.email, "wrong password!", f"2001:db8:1:2::{n + 1:x}")
        for n in range(limit + 1)
    ]
    assert statuses[-1] == 429


def test_a_token_cannot_mint_one_that_outlives_it(app: Flask, alice: Identity) -> None:
    client = app.test_client()
    short = client.post(
        "/api/v1/tokens", json={"name": "short", "ttl_days": 1}, headers=alice.headers
    ).json
    assert short is not None
    child = client.post(
        "/api/v1/tokens",
        json={"name": "child", "ttl_days": 365},
        headers={"Authorization": f"Bearer {short['token']}"},
    ).json
    assert child is not None
    forever = client.post(
        "/api/v1/tokens",
        json={"name": "forever"},
        headers={"Authorization": f"Bearer {short['token']}"},
    ).json
    assert forever is not None
    parent_expiry = datetime.fromisoformat(short["expires_at"])
    assert datetime.fromisoformat(child["expires_at"]) <= parent_expiry
    assert forever["expires_at"] is not None
    assert datetime.fromisoformat(forever["expires_at"]) <= parent_expiry
