"""Assemble the ACI backend from settings: client, credential and shared rate limiters."""

from __future__ import annotations

import redis
from azure.core.credentials import TokenCredential

from taskmanager.backends.aci import AciBackend
from taskmanager.backends.aci_client import (
    AciConfigurationError,
    check_credential,
    create_client,
    create_credential,
    require,
)
from taskmanager.backends.ratelimit import SharedRateLimiter, Window
from taskmanager.settings import Settings


def create_rate_limiters(
    settings: Settings, client: redis.Redis[bytes], subscription_id: str
) -> tuple[SharedRateLimiter, SharedRateLimiter]:
    """Return the create and delete limiters every manager of the subscription shares."""
    scale = settings.aci_rate_window_scale
    windows = [
        Window(settings.container_creates_per_5min, 300 * scale),
        Window(settings.container_creates_per_hour, 3600 * scale),
    ]
    return tuple(  # type: ignore[return-value]
        SharedRateLimiter(
            client,
            f"clipyard:aci:{subscription_id}:{action}",
            windows,
            max_wait_s=settings.aci_rate_max_wait_s,
        )
        for action in ("create", "delete")
    )


def create_aci_backend(
    settings: Settings,
    *,
    redis_url: str | None = None,
    credential: TokenCredential | None = None,
    is_credential_checked: bool = True,
) -> AciBackend:
    """Build the ACI backend; fail at once, naming the setting, if it cannot work."""
    subscription_id, resource_group = require(settings)
    if redis_url is None and settings.redis_url is not None:
        redis_url = settings.redis_url.get_secret_value()
    if redis_url is None:
        raise AciConfigurationError(
            "the aci backend shares its create/delete rate limits through Redis: set REDIS_URL"
        )
    if credential is None:
        credential = create_credential(settings)
        if is_credential_checked:
            check_credential(credential)
    creates, deletes = create_rate_limiters(
        settings, redis.Redis.from_url(redis_url), subscription_id
    )
    return AciBackend(
        create_client(settings, credential),
        settings,
        resource_group=resource_group,
        creates=creates,
        deletes=deletes,
    )
