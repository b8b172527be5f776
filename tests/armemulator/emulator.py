"""An ARM emulator for the Microsoft.ContainerInstance containerGroups subset clipyard uses.

HTTPS on 127.0.0.1 with a throwaway CA (the SDK refuses bearer tokens over plain http).
PUT answers 201 with an ``Azure-AsyncOperation`` URL the SDK's poller follows; DELETE
answers 200, 202 (with an operation) or 204 as ARM does. Faults are injected, and
counters read, through this class's methods.
"""

from __future__ import annotations

import signal
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from taskmanager.backends.local import default_images
from tests.armemulator.faults import (
    CAPACITY_CODE,
    IMAGE_CODE,
    KINDS,
    QUOTA_CODE,
    Fault,
    FaultBook,
)
from tests.armemulator.groups import Group, Reaper, iso, kill_group, repository, strip_secrets
from tests.armemulator.server import Answer, error, make_server

_PROVIDER = "Microsoft.ContainerInstance/containerGroups"


def emulator_images() -> dict[str, list[str] | None]:
    """Map image repositories to local commands; None runs nothing and stays running."""
    return {**default_images(), "idle": None}


class ArmEmulator:
    """A running emulator: endpoint, CA bundle, fault injection and counters."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        subscription_id: str = "00000000-0000-0000-0000-0000000000c1",
        resource_group: str = "clipyard-test",
        images: dict[str, list[str] | None] | None = None,
        provisioning_delay_s: float = 0.0,
        page_size: int = 10,
        stop_grace_s: float = 1.0,
    ) -> None:
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="armemu-")
        self.root = root if root is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.root.mkdir(parents=True, exist_ok=True)
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.images = images if images is not None else emulator_images()
        self.provisioning_delay_s = provisioning_delay_s
        self.page_size = page_size
        self.stop_grace_s = stop_grace_s
        self.faults = FaultBook()
        self.requests: Counter[str] = Counter()
        self.create_times: list[float] = []
        self.delete_times: list[float] = []
        self.put_bodies: dict[str, dict[str, Any]] = {}  # raw, secure values included
        self._groups: dict[str, Group] = {}
        self._operations: dict[str, tuple[str, str, Group]] = {}
        self._pull_failures: dict[str, str] = {}
        self._slow: dict[str, float] = {}
        self._slow_window: tuple[float, float] = (0.0, 0.0)  # (until, seconds)
        self._lock = threading.RLock()
        ca = trustme.CA()
        self.ca_bundle = self.root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server = make_server(self)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._reaper = Reaper(self._advance_all)

    # --- fault injection -----------------------------------------------------------------

    def fail_next(
        self,
        kind: str,
        status: int,
        *,
        count: int = 1,
        code: str | None = None,
        message: str | None = None,
        retry_after_s: float | None = None,
        seconds: float | None = None,
    ) -> None:
        """Answer the next ``count`` requests of ``kind`` ("any" for all) with an error.

        With ``seconds``, answer every such request for that long instead (a storm).
        """
        default_code = {429: "TooManyRequests", 500: "InternalServerError"}.get(
            status, "ServiceUnavailable" if status == 503 else "Conflict"
        )
        self.faults.add(
            Fault(
                kind,
                status,
                code or default_code,
                message or f"injected {status}",
                count,
                retry_after_s,
                until=None if seconds is None else time.monotonic() + seconds,
            )
        )

    def storm(
        self, kind: str, status: int, seconds: float, *, retry_after_s: float | None = None
    ) -> None:
        """Answer every request of ``kind`` ("any" for all) with ``status`` for ``seconds``."""
        message = "The request is being throttled." if status == 429 else None
        self.fail_next(kind, status, message=message, retry_after_s=retry_after_s, seconds=seconds)

    def throttle(self, kind: str, retry_after_s: float, count: int = 1) -> None:
        """Answer 429 with ``Retry-After``, as ARM throttling does."""
        self.fail_next(
            kind,
            429,
            count=count,
            retry_after_s=retry_after_s,
            message="The request is being throttled.",
        )

    def exceed_quota(self, count: int = 1) -> None:
        """Refuse the next creates with the quota error ACI gives."""
        self.fail_next(
            "create",
            409,
            count=count,
            code=QUOTA_CODE,
            message=(
                "Resource type 'Microsoft.ContainerInstance/containerGroups' container group "
                f"quota 'StandardCores' exceeded in region 'eastus'. Limit: 10, Usage: 10, "
                f"Requested: 1. (subscription {self.subscription_id})"
            ),
        )

    def lack_capacity(self, count: int = 1) -> None:
        """Refuse the next creates as a region out of capacity does."""
        self.fail_next(
            "create",
            409,
            count=count,
            code=CAPACITY_CODE,
            message="The requested resource with 'CPU: 1.0, Memory: 1.0 GB' is not "
            "available in the location 'eastus' at this moment. Please retry your request "
            "or try a different location.",
        )

    def fail_image_pull(self, image: str, message: str | None = None) -> None:
        """Make groups created with ``image`` fail provisioning with a pull-failure event."""
        self._pull_failures[repository(image)] = message or (
            f'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to '
            "resolve reference: unauthorized: authentication required"
        )

    def slow_provisioning(self, name: str, seconds: float) -> None:
        """Keep the group ``name`` (when created) provisioning for ``seconds``."""
        self._slow[name] = seconds

    def delay_provisioning(self, seconds: float, window_s: float) -> None:
        """Keep every group created in the next ``window_s`` provisioning for ``seconds``."""
        with self._lock:
            self._slow_window = (time.time() + window_s, seconds)

    def _provisioning_delay(self, name: str, now: float) -> float:
        """Return how long the group ``name``, created ``now``, provisions (lock held)."""
        if name in self._slow:
            return self._slow.pop(name)
        until, seconds = self._slow_window
        return seconds if now < until else self.provisioning_delay_s

    def make_disappear(self, name: str) -> None:
        """Drop a group without a delete, as if someone removed it behind our back."""
        with self._lock:
            group = self._groups.pop(name)
        group.kill(0)

    def evict(self, name: str) -> None:
        """Evict a running Spot group, as ACI does when it reclaims Spot capacity."""
        with self._lock:
            group = self._groups[name]
        if not group.is_spot:
            raise AssertionError(f"{name} is not a Spot group: ACI evicts only Spot groups")
        group.group_events.append(
            {
                "count": 1,
                "firstTimestamp": iso(time.time()),
                "lastTimestamp": iso(time.time()),
                "name": "SpotEvicted",
                "type": "Warning",
                "message": "The Spot container group was evicted to reclaim capacity.",
            }
        )
        group.stop(0.2, detail="Evicted")

    def kill_oom(self, name: str) -> None:
        """Kill the group's container as the kernel's OOM killer would."""
        with self._lock:
            group = self._groups[name]
        group.detail_status = "OOMKilled"
        if group.process is not None:
            kill_group(group.process.pid, signal.SIGKILL)

    # --- counters ----------------------------------------------------------------------------

    def count(self, kind: str) -> None:
        """Count one request of ``kind``."""
        with self._lock:
            self.requests[kind] += 1

    def max_in_window(self, times: list[float], window_s: float) -> int:
        """Return the most events in any half-open window [t, t + window_s)."""
        ordered = sorted(times)
        best = start = 0
        for end, moment in enumerate(ordered):
            while ordered[start] <= moment - window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    def group_names(self) -> list[str]:
        """Return the names of the groups that exist."""
        with self._lock:
            return sorted(self._groups)

    def log_of(self, name: str) -> str:
        """Return the group's whole log file, as written (not as the API truncates it)."""
        with self._lock:
            group = self._groups[name]
        return group.log_path.read_text() if group.log_path.exists() else ""

    def assert_empty(self) -> None:
        """Fail if any container group is left behind."""
        names = self.group_names()
        assert not names, f"container groups left behind: {names}"

    def close(self) -> None:
        """Kill every container, stop serving, remove temporary files."""
        self._reaper.close()
        with self._lock:
            groups = list(self._groups.values())
            self._groups.clear()
        for group in groups:
            group.kill(0)
        self._server.shutdown()
        self._server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- requests ----------------------------------------------------------------------------

    def handle(
        self,
        kind: str,
        params: dict[str, str],
        query: dict[str, str],
        body: Any,
        headers: dict[str, str],
    ) -> Answer:
        """Serve one request (already counted and past fault injection)."""
        handlers: dict[str, Callable[[], Answer]] = {
            "create": lambda: self._create(params["name"], body, headers),
            "get": lambda: self._get(params["name"]),
            "delete": lambda: self._delete(params["name"]),
            "stop": lambda: self._stop(params["name"]),
            "logs": lambda: self._logs(params["name"], query.get("tail")),
            "list": lambda: self._list(int(query.get("$skipToken", "0"))),
            "operation": lambda: self._operation(params["op"]),
        }
        assert set(handlers) == set(KINDS)
        return handlers[kind]()

    def _resource_id(self, name: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{_PROVIDER}/{name}"
        )

    def _operation_header(self, kind: str, name: str, group: Group) -> dict[str, str]:
        op_id = uuid.uuid4().hex
        with self._lock:
            self._operations[op_id] = (kind, name, group)
        return {"Azure-AsyncOperation": f"{self.endpoint}/emulator/operations/{op_id}"}

    def _create(self, name: str, body: Any, headers: dict[str, str]) -> Answer:
        refusal = self._validate(name, body)
        if refusal is not None:
            return refusal
        container = body["properties"]["containers"][0]["properties"]
        image = repository(container["image"])
        with self._lock:
            existing = self._groups.get(name)
            if existing is not None:
                if headers.get("if-none-match") == "*":
                    return error(412, "PreconditionFailed", f"container group {name} exists")
                # An update of a running group changes nothing here: answer what exists.
                return Answer(
                    200, existing.to_json(self._resource_id(name), is_instance_view=False)
                )
            local = self.images[image]
            command = None if local is None else [*local, *(container.get("command") or [])[1:]]
            env = {
                item["name"]: item.get("value", item.get("secureValue", ""))
                for item in container.get("environmentVariables") or []
            }
            now = time.time()
            group = Group(
                name=name,
                body=strip_secrets(body),
                command=command,
                env=env,
                log_path=self.root / f"{name}.{uuid.uuid4().hex[:8]}.log",
                created_at=now,
                ready_at=now + self._provisioning_delay(name, now),
                pull_error=self._pull_failures.get(image),
            )
            self._groups[name] = group
            self.put_bodies[name] = body
            self.create_times.append(now)
        answer = group.to_json(self._resource_id(name), is_instance_view=False)
        return Answer(201, answer, self._operation_header("create", name, group))

    def _validate(self, name: str, body: Any) -> Answer | None:
        properties = (body or {}).get("properties") or {}
        containers = properties.get("containers") or []
        if len(containers) != 1:
            return error(400, "InvalidContainerGroup", "clipyard groups have one container")
        container = containers[0].get("properties") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        if not requests.get("cpu") or not requests.get("memoryInGB"):
            return error(400, "InvalidResourceRequests", "cpu and memoryInGB are required")
        if properties.get("osType") not in ("Linux", "Windows"):
            return error(400, "InvalidOsType", "osType is required")
        for item in container.get("environmentVariables") or []:
            if "value" in item and "secureValue" in item:
                return error(400, "InvalidEnvironmentVariable", f"{item['name']}: one value")
        image = container.get("image", "")
        if repository(image) not in self.images:
            return error(
                400,
                IMAGE_CODE,
                f"The image '{image}' in container group '{name}' is not accessible. "
                "Please check the image and registry credential.",
            )
        return None

    def _find(self, name: str) -> Group | None:
        with self._lock:
            return self._groups.get(name)

    def _not_found(self, name: str) -> Answer:
        return error(
            404,
            "ResourceNotFound",
            f"The Resource '{_PROVIDER}/{name}' under resource group "
            f"'{self.resource_group}' was not found.",
        )

    def _get(self, name: str) -> Answer:
        group = self._find(name)
        if group is None:
            return self._not_found(name)
        group.advance(time.time())
        return Answer(200, group.to_json(self._resource_id(name), is_instance_view=True))

    def _delete(self, name: str) -> Answer:
        with self._lock:
            group = self._groups.get(name)
            if group is None:
                return Answer(204)
            self.delete_times.append(time.time())
            if not group.is_alive:
                del self._groups[name]
                return Answer(200, group.to_json(self._resource_id(name), is_instance_view=True))
            group.is_deleting = True
        threading.Thread(target=group.kill, args=(0,), daemon=True).start()
        headers = self._operation_header("delete", name, group)
        headers["Location"] = headers["Azure-AsyncOperation"]
        return Answer(202, None, headers)

    def _stop(self, name: str) -> Answer:
        group = self._find(name)
        if group is None:
            return self._not_found(name)
        group.stop(self.stop_grace_s)
        return Answer(204)

    def _logs(self, name: str, tail: str | None) -> Answer:
        group = self._find(name)
        if group is None:
            return self._not_found(name)
        return Answer(200, {"content": group.read_log(int(tail) if tail else None)})

    def _list(self, skip: int) -> Answer:
        with self._lock:
            groups = sorted(self._groups.values(), key=lambda group: group.name)
        page = groups[skip : skip + self.page_size]
        body: dict[str, Any] = {
            "value": [g.to_json(self._resource_id(g.name), is_instance_view=False) for g in page]
        }
        if skip + self.page_size < len(groups):
            body["nextLink"] = (
                f"{self.endpoint}/subscriptions/{self.subscription_id}/resourceGroups/"
                f"{self.resource_group}/providers/{_PROVIDER}?api-version=2023-05-01"
                f"&$skipToken={skip + self.page_size}"
            )
        return Answer(200, body)

    def _operation(self, op_id: str) -> Answer:
        with self._lock:
            found = self._operations.get(op_id)
        if found is None:
            return error(404, "OperationNotFound", f"no operation {op_id}")
        kind, name, group = found
        status = "InProgress"
        if kind == "delete" and self._find(name) is not group:
            status = "Succeeded"
        elif kind == "create":
            group.advance(time.time())
            status = {"Pending": "InProgress", "Succeeded": "Succeeded"}.get(
                group.provisioning_state, "Failed"
            )
        body: dict[str, Any] = {"id": op_id, "name": op_id, "status": status}
        if status == "Failed":
            body["error"] = {
                "code": "ContainerGroupDeploymentFailed",
                "message": group.pull_error or "provisioning failed",
            }
        return Answer(200, body)

    def _advance_all(self) -> None:
        now = time.time()
        with self._lock:
            groups = list(self._groups.items())
        for name, group in groups:
            group.advance(now)
            if group.is_deleting and not group.is_alive:
                with self._lock:
                    if self._groups.get(name) is group:
                        del self._groups[name]
