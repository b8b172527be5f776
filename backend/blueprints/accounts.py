"""Sign-up, sign-in, sign-out, the current user and their API tokens."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, session

from backend.auth import (
    bearer_secret,
    client_key,
    end_session,
    login_required,
    rate_limit,
    require_caller,
    start_session,
)
from backend.bodies import answer, parse_body
from backend.problems import Forbidden
from backend.schemas import (
    Credentials,
    SessionOut,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    UserOut,
)
from backend.services import services
from taskmanager.accounts import (
    InvalidCredentials,
    authenticate,
    create_token,
    create_user,
    list_tokens,
    normalize_email,
    revoke_token,
    token_expiry,
)

bp = Blueprint("accounts", __name__, url_prefix="/api/v1")


@bp.post("/auth/signup")
def signup() -> Response:
    """Create an account and sign it in."""
    settings = services().settings
    if not settings.allow_signup:
        raise Forbidden("sign-up is closed here; ask an operator for an account")
    rate_limit("login", settings.login_rate_per_minute)  # before the body is read
    body = parse_body(Credentials)
    user = create_user(services().sessions, body.email, body.password)
    csrf = start_session(user)
    return _no_store(answer(SessionOut(user=UserOut.model_validate(user), csrf_token=csrf), 201))


@bp.post("/auth/login")
def login() -> Response:
    """Sign in with email and password; set the session cookie."""
    settings = services().settings
    rate_limit("login", settings.login_rate_per_minute)  # per client, before the body
    body = parse_body(Credentials)
    email = normalize_email(body.email).lower()
    # Failures, not attempts, are limited per account: per (account, client), so that a
    # stranger cannot lock a known account out, and per account, more loosely.
    pair, account = f"pair:{email}|{client_key()}", f"account:{email}"
    limiter = services().limiter
    limiter.check("failed login", [pair], settings.login_failures_per_minute)
    limiter.check("failed login", [account], settings.login_account_failures_per_minute)
    try:
        user = authenticate(services().sessions, body.email, body.password)
    except InvalidCredentials:
        limiter.count("failed login", [pair, account])
        raise
    csrf = start_session(user)
    return _no_store(answer(SessionOut(user=UserOut.model_validate(user), csrf_token=csrf)))


@bp.post("/auth/logout")
@login_required
def logout() -> Response:
    """Sign out: revoke the session server-side (a copied cookie stops working too)."""
    end_session()
    return Response(status=204)


@bp.get("/auth/me")
@login_required
def me() -> Response:
    """Return the signed-in user and the session's CSRF token."""
    user = UserOut.model_validate(require_caller().user)
    return _no_store(answer(SessionOut(user=user, csrf_token=session.get("csrf", ""))))


@bp.get("/tokens")
@login_required
def tokens() -> Response:
    """List the caller's API tokens (never their secrets)."""
    found = list_tokens(services().sessions, require_caller().id)
    return answer(TokenList(items=[TokenOut.model_validate(t) for t in found]))


@bp.post("/tokens")
@login_required
def new_token() -> Response:
    """Create an API token; its secret is in this answer only."""
    body = parse_body(TokenCreate)
    caller = require_caller()
    parent_expiry = None
    if caller.via == "token":
        parent_expiry = token_expiry(services().sessions, bearer_secret() or "")
    token, secret = create_token(
        services().sessions,
        caller.id,
        body.name,
        ttl_days=body.ttl_days,
        not_after=parent_expiry,
    )
    return answer(TokenCreated(**TokenOut.model_validate(token).model_dump(), token=secret), 201)


@bp.delete("/tokens/<uuid:token_id>")
@login_required
def delete_token(token_id: uuid.UUID) -> Response:
    """Revoke one of the caller's tokens."""
    revoke_token(services().sessions, require_caller().id, token_id)
    services().tokens.forget_user(require_caller().id)
    return Response(status=204)


def _no_store(response: Response) -> Response:
    """Keep an answer that carries the CSRF token out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    return response
