"""Who is calling: a bearer API token (CLI) or a signed session cookie (browser).

A cookie-authenticated request that changes state must carry the session's CSRF token
in ``X-CSRF-Token``; a bearer request needs none (a browser never adds it by itself).
"""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Literal, ParamSpec, TypeVar

from flask import g, request, session

from backend.problems import AuthRequired, Forbidden
from backend.services import services
from taskmanager.accounts import (
    end_web_session,
    start_web_session,
    user_for_token,
    user_for_web_session,
)
from taskmanager.models import User

P = ParamSpec("P")
R = TypeVar("R")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Caller:
    """The authenticated user and how they proved it."""

    user: User
    via: Literal["token", "session"]

    @property
    def id(self) -> uuid.UUID:
        """Return the user's id."""
        return self.user.id

    @property
    def is_operator(self) -> bool:
        """Tell whether the user may see everything and run batches."""
        return self.user.role == "operator"

    def owner_filter(self) -> uuid.UUID | None:
        """Return the owner to restrict queries to (None: an operator sees all)."""
        return None if self.is_operator else self.user.id


def start_session(user: User) -> str:
    """Sign ``user`` in with a cookie session; return its CSRF token.

    The cookie names a session row, so signing out can revoke it server-side.
    """
    max_age = timedelta(seconds=services().settings.session_max_age_s)
    session.clear()
    session.permanent = True
    session["sid"] = str(start_web_session(services().sessions, user.id, max_age))
    session["csrf"] = secrets.token_urlsafe(32)
    token: str = session["csrf"]
    return token


def bearer_secret() -> str | None:
    """Return the request's bearer token, None without one; a malformed header is a 401."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthRequired("use 'Authorization: Bearer <token>'")
    return secret.strip()


def _resolve() -> Caller | None:
    secret = bearer_secret()
    if secret is not None:
        user = services().tokens.get(secret)
        if user is None:
            user = user_for_token(services().sessions, secret)
            if user is None:
                raise AuthRequired("the API token is unknown, expired or revoked")
            services().tokens.put(secret, user)
        return Caller(user, "token")
    sid = session.get("sid")
    if sid is None:
        return None
    try:
        user = user_for_web_session(services().sessions, uuid.UUID(sid))
    except ValueError:
        user = None
    if user is None:
        session.clear()
        return None
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = str(session.get("csrf", "")).encode()
        # Bytes: compare_digest refuses (TypeError, a 500) a str that is not ASCII.
        if not sent or not secrets.compare_digest(sent.encode(errors="replace"), expected):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header (get it from /api/v1/auth/me)")
    return Caller(user, "session")


def end_session() -> None:
    """Sign the browser out: revoke its session row and clear the cookie."""
    sid = session.get("sid")
    if sid is not None:
        end_web_session(services().sessions, uuid.UUID(sid))
    session.clear()


def current_caller() -> Caller | None:
    """Return the authenticated caller of this request, or None."""
    if "caller" not in g:
        g.caller = _resolve()
    caller: Caller | None = g.caller
    return caller


def require_caller() -> Caller:
    """Return the caller; raise ``AuthRequired`` if there is none."""
    caller = current_caller()
    if caller is None:
        raise AuthRequired("sign in, or send an API token as 'Authorization: Bearer <token>'")
    return caller


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Let only authenticated callers reach ``view``."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        require_caller()
        return view(*args, **kwargs)

    wrapper.auth = "user"  # type: ignore[attr-defined]
    return wrapper


def operator_required(view: Callable[P, R]) -> Callable[P, R]:
    """Let only operators reach ``view``."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not require_caller().is_operator:
            raise Forbidden("only operators may do this")
        return view(*args, **kwargs)

    wrapper.auth = "operator"  # type: ignore[attr-defined]
    return wrapper


def client_address() -> str:
    """Return the client's address (as ProxyFix resolved it behind trusted proxies)."""
    return request.remote_addr or "unknown"


def client_key() -> str:
    """Return what a client is counted as: its address, or its /64 for IPv6.

    One IPv6 subscriber gets a whole /64: counting single addresses would let a client
    change address on every request.
    """
    address = client_address()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return address


def rate_limit(
    what: str, limit: int, *, user_key: str | None = None, per_client: bool = True
) -> None:
    """Count this request per client address and (if known) per user.

    ``per_client=False`` counts the user only: for a second count, once the body named
    the user, of a request already counted per client before its body was read.
    """
    keys = [f"ip:{client_key()}"] if per_client else []
    if user_key:
        keys.append(f"user:{user_key}")
    services().limiter.hit(what, keys, limit)
