"""The ACI backend: each container is an Azure Container Instances container group.

One group per attempt, named by the spec, restart policy Never, one container. State
comes from the group's instance view; logs from the logs API, which returns the whole
log (only its last 16 KB after a stop), so the backend keeps a position per container
and the supervisor must save lines as it watches. Creates and deletes pass through a
limiter shared by every manager.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance import models as aci

from taskmanager.backends.aci_errors import to_backend_error
from taskmanager.backends.aci_logs import LogPosition, next_chunk
from taskmanager.backends.base import (
    APP_TAG,
    BackendError,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
)
from taskmanager.backends.ratelimit import RateLimited, SharedRateLimiter
from taskmanager.settings import Settings

log = structlog.get_logger(__name__)

CONTAINER_NAME = "job"
# Tag holding the group's creation time (epoch seconds): survives a manager's death,
# so whoever adopts the group can still tell how long it has been provisioning.
CREATED_TAG = "clipyard_created"


class AciBackend:
    """A ``ContainerBackend`` whose containers are ACI container groups."""

    name = "aci"

    def __init__(
        self,
        client: ContainerInstanceManagementClient,
        settings: Settings,
        *,
        resource_group: str,
        creates: SharedRateLimiter,
        deletes: SharedRateLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._settings = settings
        self._resource_group = resource_group
        self._creates = creates
        self._deletes = deletes
        self._clock = clock
        self._lock = threading.Lock()
        self._positions: dict[str, LogPosition] = {}
        self._last_state: dict[str, ContainerState] = {}
        self._stopping: set[str] = set()

    # --- launch --------------------------------------------------------------------------

    def launch(self, spec: ContainerSpec) -> None:
        """Create the container group spec.name; adopt it quietly if it already exists."""
        if self.status(spec.name).state is not ContainerState.NOT_FOUND:
            return
        group = self._group_for(spec)
        try:
            with self._rate_slot(self._creates, "create", spec.name):
                # No LRO wait: provisioning (image pull) shows in status(), which also
                # works for a manager that adopts the group after this one died.
                self._client.container_groups.begin_create_or_update(
                    self._resource_group,
                    spec.name,
                    group,
                    polling=False,
                    headers={"If-None-Match": "*"},
                )
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return  # another manager created it between our look and our create
            raise self._error(exc, "create", spec.name) from exc
        except AzureError as exc:
            raise self._error(exc, "create", spec.name) from exc
        with self._lock:
            self._last_state[spec.name] = ContainerState.PENDING
        log.info("container group created", name=spec.name, spot=spec.is_spot)

    def _group_for(self, spec: ContainerSpec) -> aci.ContainerGroup:
        settings = self._settings
        image = spec.image
        if settings.aci_registry_server and not _has_registry(image):
            image = f"{settings.aci_registry_server.rstrip('/')}/{image}"
        env = [aci.EnvironmentVariable(name=k, value=v) for k, v in spec.env.items()]
        env += [aci.EnvironmentVariable(name=k, secure_value=v) for k, v in spec.secure_env.items()]
        container = aci.Container(
            name=CONTAINER_NAME,
            image=image,
            command=[settings.aci_entrypoint, *spec.args],
            resources=aci.ResourceRequirements(
                requests=aci.ResourceRequests(
                    cpu=float(spec.cpu), memory_in_gb=float(spec.memory_gb)
                )
            ),
            environment_variables=env,
        )
        fields: dict[str, Any] = {}
        if settings.aci_registry_server and (
            settings.aci_registry_identity or settings.aci_registry_username
        ):
            password = settings.aci_registry_password
            fields["image_registry_credentials"] = [
                aci.ImageRegistryCredential(
                    server=settings.aci_registry_server,
                    identity=settings.aci_registry_identity,
                    username=settings.aci_registry_username,
                    password=password.get_secret_value() if password else None,
                )
            ]
        if settings.aci_registry_identity:
            fields["identity"] = aci.ContainerGroupIdentity(
                type="UserAssigned",
                user_assigned_identities={
                    settings.aci_registry_identity: aci.UserAssignedIdentities()
                },
            )
        if settings.aci_subnet_id and not spec.is_spot:
            # Spot groups cannot join a virtual network.
            fields["subnet_ids"] = [aci.ContainerGroupSubnetId(id=settings.aci_subnet_id)]
        return aci.ContainerGroup(
            location=settings.aci_location,
            containers=[container],
            os_type="Linux",
            restart_policy="Never",
            sku="Standard",
            priority="Spot" if spec.is_spot else "Regular",
            tags={**spec.tags, CREATED_TAG: f"{self._clock():.3f}"},
            **fields,
        )

    # --- watch ---------------------------------------------------------------------------

    def status(self, name: str) -> ContainerStatus:
        """Return the group's state from its instance view (NOT_FOUND if it does not exist)."""
        group = self._get(name)
        status = (
            ContainerStatus(ContainerState.NOT_FOUND) if group is None else self._status_of(group)
        )
        with self._lock:
            self._last_state[name] = status.state
        return status

    def _get(self, name: str) -> aci.ContainerGroup | None:
        try:
            return self._client.container_groups.get(self._resource_group, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._error(exc, "read", name) from exc

    def _status_of(self, group: aci.ContainerGroup) -> ContainerStatus:
        name = str(group.name)
        view = group.containers[0].instance_view if group.containers else None
        current = view.current_state if view is not None else None
        events: list[aci.Event] = list(view.events or []) if view is not None else []
        if group.instance_view is not None:
            events += group.instance_view.events or []
        started_at = (current.start_time) if current else None
        event_text = " ".join(f"{e.name} {e.message}" for e in events).lower()
        detail_status = (current.detail_status or "") if current else ""
        if "evict" in f"{detail_status} {event_text}".lower():
            finished_at = (current.finish_time) if current else None
            return ContainerStatus(
                ContainerState.LOST,
                started_at=started_at,
                finished_at=finished_at,
                detail="evicted",
            )
        if current is not None and current.state == "Terminated":
            detail = _detail_for(detail_status, is_stopping=name in self._stopping)
            state = ContainerState.EXITED if current.exit_code is not None else ContainerState.LOST
            return ContainerStatus(
                state,
                exit_code=current.exit_code,
                started_at=started_at,
                finished_at=(current.finish_time),
                detail=detail,
            )
        if "pull" in event_text and ("fail" in event_text or "back-off" in event_text):
            return ContainerStatus(ContainerState.LOST, detail="image_pull")
        if group.provisioning_state == "Failed":
            return ContainerStatus(ContainerState.LOST, detail="provisioning_failed")
        if current is not None and current.state == "Running":
            return ContainerStatus(ContainerState.RUNNING, started_at=started_at)
        created = float((group.tags or {}).get(CREATED_TAG, self._clock()))
        if self._clock() - created > self._settings.aci_start_timeout_s:
            return ContainerStatus(ContainerState.LOST, detail="start_timeout")
        return ContainerStatus(ContainerState.PENDING)

    def wait(self, name: str, timeout_s: float) -> None:
        """Sleep ``timeout_s``: ACI cannot tell us of an exit."""
        time.sleep(max(0.0, timeout_s))

    def logs_since(self, name: str, cursor: int) -> tuple[str, int]:
        """Return the complete log lines written after ``cursor`` and the next cursor."""
        with self._lock:
            last_state = self._last_state.get(name)
            known = self._positions.get(name)
        if last_state in (ContainerState.PENDING, ContainerState.NOT_FOUND):
            return "", cursor  # nothing to read yet (or ever): save the call
        try:
            logs = self._client.containers.list_logs(self._resource_group, name, CONTAINER_NAME)
        except ResourceNotFoundError:
            return "", cursor
        except AzureError as exc:
            raise self._error(exc, "read the logs of", name) from exc
        is_finished = last_state in (ContainerState.EXITED, ContainerState.LOST)
        chunk = next_chunk(logs.content or "", cursor, known, is_finished=is_finished)
        if chunk.is_gap:
            log.warning("container log lines lost to ACI's truncation", name=name)
        with self._lock:
            self._positions[name] = chunk.position
        return chunk.text, chunk.position.cursor

    # --- stop and remove -------------------------------------------------------------------

    def stop(self, name: str, grace_s: float) -> None:
        """Stop the group (ACI stops at once) and wait until it reports finished."""
        with self._lock:
            self._stopping.add(name)
        try:
            self._client.container_groups.stop(self._resource_group, name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise self._error(exc, "stop", name) from exc
        deadline = time.monotonic() + grace_s + 30.0
        while time.monotonic() < deadline:
            status = self.status(name)
            if status.is_finished or status.state is ContainerState.NOT_FOUND:
                return
            time.sleep(min(1.0, self._settings.aci_lro_poll_interval_s))

    def remove(self, name: str) -> None:
        """Delete the group and wait for ARM to finish; succeed quietly if already gone."""
        try:
            with self._rate_slot(self._deletes, "delete", name):
                poller = self._client.container_groups.begin_delete(self._resource_group, name)
            poller.result(timeout=self._settings.aci_delete_timeout_s)
            is_done = poller.done()
        except ResourceNotFoundError:
            is_done = True
        except AzureError as exc:
            raise self._error(exc, "delete", name) from exc
        if not is_done:
            raise BackendError(
                f"ARM has not finished deleting container group {name} after "
                f"{self._settings.aci_delete_timeout_s:g} s; the janitor will try again",
                is_retryable=True,
            )
        with self._lock:
            self._positions.pop(name, None)
            self._last_state.pop(name, None)
            self._stopping.discard(name)

    def list_ours(self) -> list[ContainerInfo]:
        """List every group tagged as ours, with its state (list, then get each)."""
        try:
            groups = list(
                self._client.container_groups.list_by_resource_group(self._resource_group)
            )
        except AzureError as exc:
            raise self._error(exc, "list", self._resource_group) from exc
        ours = []
        for listed in groups:
            tags = dict(listed.tags or {})
            if tags.get("app") != APP_TAG:
                continue
            name = str(listed.name)
            tags.pop(CREATED_TAG, None)
            try:
                status = self.status(name)
            except BackendError as exc:
                # One throttled read leaves this group out of this listing (the janitor
                # looks again next pass); it must not hide every other group.
                log.warning("container group skipped in listing", name=name, error=str(exc))
                continue
            ours.append(ContainerInfo(name, tags, status))
        return ours

    # --- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _rate_slot(self, limiter: SharedRateLimiter, action: str, name: str) -> Iterator[None]:
        try:
            slot = limiter.acquire()
        except RateLimited as exc:
            raise BackendError(
                f"not allowed to {action} container group {name} yet: ACI's {action} rate "
                f"limit for the subscription is reached (container_creates_per_5min / "
                f"_per_hour); a slot frees in {exc.retry_after_s:.0f} s",
                is_retryable=True,
                retry_after_s=exc.retry_after_s,
            ) from exc
        try:
            yield
        finally:
            limiter.settle(slot)

    def _error(self, exc: AzureError, action: str, name: str) -> BackendError:
        error = to_backend_error(exc, action, name, location=self._settings.aci_location)
        log.warning(
            "aci request failed",
            action=action,
            name=name,
            error=str(error),
            is_retryable=error.is_retryable,
            retry_after_s=error.retry_after_s,
        )
        return error


def _has_registry(image: str) -> bool:
    first, _, rest = image.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def _detail_for(detail_status: str, *, is_stopping: bool) -> str | None:
    lowered = detail_status.lower()
    if "oom" in lowered:
        return "oom"
    if is_stopping or "killed" in lowered:
        return "killed"
    return None
