"""Answers about accounts: the signed-in user, the session and API tokens.

``UserOut`` and ``TokenOut`` read the domain rows directly
(``UserOut.model_validate(user)``): their fields are the rows' own attributes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class UserOut(BaseModel):
    """An account, as its owner sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: Literal["user", "operator"]
    created_at: datetime


class SessionOut(BaseModel):
    """The signed-in user and the CSRF token to send as ``X-CSRF-Token``."""

    user: UserOut
    csrf_token: str


class TokenOut(BaseModel):
    """An API token without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class TokenCreated(TokenOut):
    """A new API token with its secret, shown this once."""

    token: str


class TokenList(BaseModel):
    """The caller's tokens."""

    items: list[TokenOut]
