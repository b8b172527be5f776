"""Accounts: users with argon2-hashed passwords, and bearer API tokens stored as SHA-256.

A token is shown once, when it is created; only its hash and a short display prefix
are kept, so a database leak reveals no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskmanager.errors import DomainError
from taskmanager.models import ApiToken, User, WebSession

ROLES = ("user", "operator")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_TOKEN_NAME = 100
MAX_TOKEN_TTL_DAYS = 3650
TOKEN_PREFIX = "cy_"  # noqa: S105 (a marker, not a secret)
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")
# Recording every use would turn each API call into a write; once a minute is enough.
_LAST_USED_GRANULARITY = timedelta(minutes=1)

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a miss costs as long as a hit.
_DUMMY_HASH = _hasher.hash("not a real password")


class AccountError(DomainError):
    """Base of the account service's errors (the API maps each to a status code)."""


class InvalidAccountRequest(AccountError):
    """A field is malformed or out of bounds; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EmailTaken(AccountError):
    """Another account already uses this email address."""


class InvalidCredentials(AccountError):
    """The email and password do not match an active account."""


class TokenNotFound(AccountError):
    """No such token of this user."""


def normalize_email(email: str) -> str:
    """Return ``email`` trimmed and validated; raise ``InvalidAccountRequest`` if malformed."""
    email = email.strip()
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise InvalidAccountRequest("email", "must be an email address of at most 320 characters")
    return email


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidAccountRequest(
            "password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )


def create_user(
    sessions: sessionmaker[Session], email: str, password: str, *, role: str = "user"
) -> User:
    """Create an account; raise ``EmailTaken`` if the address is in use."""
    email = normalize_email(email)
    _check_password(password)
    if role not in ROLES:
        raise InvalidAccountRequest("role", f"must be one of {', '.join(ROLES)}")
    user = User(email=email, password_hash=_hasher.hash(password), role=role)
    try:
        with sessions.begin() as session:
            session.add(user)
    except IntegrityError as exc:
        raise EmailTaken(email) from exc
    return user


def set_role(sessions: sessionmaker[Session], email: str, role: str) -> User:
    """Give the account with ``email`` the role ``role``."""
    if role not in ROLES:
        raise InvalidAccountRequest("role", f"must be one of {', '.join(ROLES)}")
    with sessions.begin() as session:
        user = session.scalars(
            select(User).where(func.lower(User.email) == email.strip().lower())
        ).first()
        if user is None:
            raise InvalidAccountRequest("email", f"no account with email {email!r}")
        user.role = role
    return user


def authenticate(sessions: sessionmaker[Session], email: str, password: str) -> User:
    """Return the active user with these credentials; raise ``InvalidCredentials`` if none."""
    with sessions() as session:
        user = session.scalars(
            select(User).where(func.lower(User.email) == email.strip().lower())
        ).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError) as exc:
        raise InvalidCredentials() from exc
    if user is None or not user.is_active:
        raise InvalidCredentials()
    if _hasher.check_needs_rehash(user.password_hash):
        with sessions.begin() as session:
            session.execute(
                update(User).where(User.id == user.id).values(password_hash=_hasher.hash(password))
            )
    return user


def get_user(sessions: sessionmaker[Session], user_id: uuid.UUID) -> User | None:
    """Return the active user with ``user_id``, or None."""
    with sessions() as session:
        user = session.get(User, user_id)
    return user if user is not None and user.is_active else None


def start_web_session(
    sessions: sessionmaker[Session], user_id: uuid.UUID, max_age: timedelta
) -> uuid.UUID:
    """Record a new browser session for ``user_id``; return its id (the cookie's ``sid``).

    The user's expired sessions are deleted on the way, so the table stays small.
    """
    with sessions.begin() as session:
        session.execute(
            delete(WebSession).where(
                WebSession.user_id == user_id, WebSession.expires_at < func.now()
            )
        )
        row = WebSession(user_id=user_id, expires_at=func.now() + max_age)
        session.add(row)
        session.flush()
        return row.id


def user_for_web_session(sessions: sessionmaker[Session], session_id: uuid.UUID) -> User | None:
    """Return the active user of a live (unexpired, unrevoked) browser session, or None."""
    with sessions() as session:
        user: User | None = session.scalars(
            select(User)
            .join(WebSession, WebSession.user_id == User.id)
            .where(
                WebSession.id == session_id,
                WebSession.revoked_at.is_(None),
                WebSession.expires_at > func.now(),
                User.is_active,
            )
        ).first()
    return user


def end_web_session(sessions: sessionmaker[Session], session_id: uuid.UUID) -> None:
    """Revoke a browser session: its cookie, even a copy of it, signs nobody in again."""
    with sessions.begin() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    sessions: sessionmaker[Session],
    user_id: uuid.UUID,
    name: str,
    *,
    ttl_days: int | None = None,
    not_after: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token for the user; return it and its secret (shown only now).

    ``not_after``: the expiry of the token this one is made with. A child never outlives
    its parent, or a token stolen for an hour could mint one that lasts a year.
    """
    name = name.strip()
    if not 1 <= len(name) <= MAX_TOKEN_NAME:
        raise InvalidAccountRequest("name", f"must be 1 to {MAX_TOKEN_NAME} characters")
    if ttl_days is not None and not 1 <= ttl_days <= MAX_TOKEN_TTL_DAYS:
        raise InvalidAccountRequest("ttl_days", f"must be between 1 and {MAX_TOKEN_TTL_DAYS}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        now = session.scalar(select(func.now()))
        token = ApiToken(
            user_id=user_id,
            name=name,
            token_hash=hash_token(secret),
            prefix=secret[:10],
            expires_at=_earliest(
                (now + timedelta(days=ttl_days)) if ttl_days and now else None, not_after
            ),
        )
        session.add(token)
    return token, secret


def _earliest(*moments: datetime | None) -> datetime | None:
    """Return the earliest of the given moments (None: never)."""
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


def token_expiry(sessions: sessionmaker[Session], secret: str) -> datetime | None:
    """Return when the token with ``secret`` expires (None: never, or no such token)."""
    with sessions() as session:
        expiry: datetime | None = session.scalar(
            select(ApiToken.expires_at).where(ApiToken.token_hash == hash_token(secret))
        )
        return expiry


def list_tokens(sessions: sessionmaker[Session], user_id: uuid.UUID) -> list[ApiToken]:
    """List the user's tokens that are not revoked, newest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                .order_by(ApiToken.created_at.desc())
            )
        )


def revoke_token(sessions: sessionmaker[Session], user_id: uuid.UUID, token_id: uuid.UUID) -> None:
    """Revoke one of the user's tokens; raise ``TokenNotFound`` if it is not theirs."""
    with sessions.begin() as session:
        revoked = session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token_id,
                ApiToken.user_id == user_id,
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
        )
    if revoked.rowcount == 0:  # type: ignore[attr-defined]
        raise TokenNotFound(str(token_id))


def user_for_token(sessions: sessionmaker[Session], secret: str) -> User | None:
    """Return the active user a valid, unexpired, unrevoked token belongs to, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    with sessions() as session:
        row = session.execute(
            select(User, ApiToken.id, ApiToken.last_used_at, func.now())
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(
                ApiToken.token_hash == hash_token(secret),
                ApiToken.revoked_at.is_(None),
                (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > func.now()),
                User.is_active,
            )
        ).first()
        if row is None:
            return None
        user, token_id, last_used_at, now = row
        if _is_stale(last_used_at, now):
            session.execute(
                update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=func.now())
            )
            session.commit()
    result: User = user
    return result


def _is_stale(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or now - last_used_at > _LAST_USED_GRANULARITY
