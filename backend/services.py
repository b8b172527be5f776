"""What the API's handlers work with, built once by the app factory and passed by the app.

Handlers reach it through ``services()``; nothing here is built at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tasktiger import TaskTiger

from backend.ratelimit import RateLimiter
from backend.sse import EventHub
from backend.streams import StreamSlots
from backend.tokencache import TokenCache
from backend.uploadslots import UploadSlots
from taskmanager.queueing import TaskTigerEnqueuer
from taskmanager.settings import Settings
from taskmanager.storage import Storage


@dataclass
class Services:
    """Settings, database, storage, queue and the API's own helpers."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    redis: redis.Redis[str]
    tiger: TaskTiger
    enqueuer: TaskTigerEnqueuer
    limiter: RateLimiter
    hub: EventHub
    tokens: TokenCache
    streams: StreamSlots
    uploads: UploadSlots


def services() -> Services:
    """Return the current app's services."""
    found: Services = current_app.extensions["clipyard"]
    return found
