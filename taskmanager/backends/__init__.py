"""Container backends: where each job attempt's container runs."""

from __future__ import annotations

from taskmanager.backends.base import ContainerBackend
from taskmanager.settings import Settings


def create_backend(settings: Settings, *, redis_url: str | None = None) -> ContainerBackend:
    """Build the backend the settings choose.

    The ``aci`` backend shares its create/delete rate limits through Redis: ``redis_url``
    (or the REDIS_URL setting) is required for it.
    """
    if settings.container_backend == "local":
        from taskmanager.backends.local import LocalBackend

        return LocalBackend(settings.data_dir / "containers")
    from taskmanager.backends.aci_factory import create_aci_backend

    return create_aci_backend(settings, redis_url=redis_url)
