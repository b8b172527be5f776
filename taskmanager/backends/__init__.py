"""Container backends: where each job attempt's container runs."""

from __future__ import annotations

from taskmanager.backends.base import ContainerBackend
from taskmanager.settings import Settings


def create_backend(settings: Settings) -> ContainerBackend:
    """Build the backend the settings choose."""
    if settings.container_backend == "local":
        from taskmanager.backends.local import LocalBackend

        return LocalBackend(settings.data_dir / "containers")
    raise NotImplementedError("the aci backend arrives with issue 5")
