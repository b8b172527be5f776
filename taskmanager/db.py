"""Database engine and sessions (PostgreSQL through psycopg2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, Pool, create_engine
from sqlalchemy.orm import Session, sessionmaker


def normalize_database_url(database_url: str) -> str:
    """Return ``database_url`` with the psycopg2 driver named explicitly.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which we do not ship.
    """
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg2://" + database_url[len(prefix) :]
    if database_url.startswith("postgresql+psycopg2://"):
        return database_url
    raise ValueError("DATABASE_URL must be a postgresql:// URL (only PostgreSQL is supported)")


def create_db_engine(
    database_url: str, *, pool_size: int = 5, pool_class: type[Pool] | None = None
) -> Engine:
    """Create an engine for ``database_url``; only PostgreSQL is supported."""
    url = normalize_database_url(database_url)
    if pool_class is not None:
        return create_engine(url, poolclass=pool_class)
    return create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,  # survive a database restart without failing the next request
    )


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit on success, roll back on any error, always close."""
    with sessions() as session, session.begin():
        yield session
