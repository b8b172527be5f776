"""Where the soak's containers run: local process groups, or ACI groups in the ARM emulator."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Protocol

from tests.benchmarks.soaklib.faults import FaultAction, busy_managers
from tests.benchmarks.soaklib.services import EmulatorProcess
from tests.benchmarks.soaklib.stack import LEASE_TTL_S, Stack, kill_group


class Platform(Protocol):
    """A container backend as the soak drives it: settings, own faults, leftovers."""

    # Prefix of every metric the soak prints on this platform.
    prefix: str
    # Billed time a container costs beyond the compositor's own run (create, start).
    launch_overhead_s: float

    def start(self, root: Path) -> dict[str, str]:
        """Start what the platform needs; return the managers' settings for it (env)."""

    def faults(self, stack: Stack, rng: random.Random) -> dict[str, FaultAction]:
        """Return the faults only this platform has, by kind."""

    def leftovers(self, stack: Stack) -> list[str]:
        """Return the containers that still exist (after the drain: leaked ones)."""

    def close(self) -> None:
        """Stop what ``start`` started."""


class LocalPlatform:
    """The local backend: each container a detached process group with a run directory."""

    prefix = "soak"
    launch_overhead_s = 0.1

    def start(self, root: Path) -> dict[str, str]:
        """Choose the local backend (its run directories live under the data directory)."""
        return {"CLIPYARD_CONTAINER_BACKEND": "local"}

    def faults(self, stack: Stack, rng: random.Random) -> dict[str, FaultAction]:
        """Return no faults of its own: the common ones cover a local machine."""
        return {}

    def leftovers(self, stack: Stack) -> list[str]:
        """Return the run directories left (the janitor removes each with its container)."""
        containers = stack.root / "data" / "containers"
        return sorted(d.name for d in containers.iterdir()) if containers.is_dir() else []

    def close(self) -> None:
        """Nothing to stop."""


# ARM's throttling during an adoption, a 503 storm, and a slow region (image pulls).
THROTTLE_S = 8.0
STORM_S = 6.0
PROVISIONING_DELAY_S = 15.0
PROVISIONING_WINDOW_S = 10.0


class AciPlatform:
    """The aci backend against the ARM emulator, whose containers are local processes."""

    prefix = "soak_aci"
    # The create request, the emulator's start and the status read that sees the exit.
    launch_overhead_s = 0.3

    def __init__(self) -> None:
        self.emulator: EmulatorProcess | None = None

    def _emulator(self) -> EmulatorProcess:
        assert self.emulator is not None, "start() first"
        return self.emulator

    def start(self, root: Path) -> dict[str, str]:
        """Start the emulator; return settings pointing the aci backend at it."""
        self.emulator = EmulatorProcess(root / "arm")
        address = self.emulator.address
        return {
            "CLIPYARD_CONTAINER_BACKEND": "aci",
            "CLIPYARD_ACI_SUBSCRIPTION_ID": address.subscription_id,
            "CLIPYARD_ACI_RESOURCE_GROUP": address.resource_group,
            "CLIPYARD_ACI_ARM_ENDPOINT": address.endpoint,
            "CLIPYARD_ACI_CA_BUNDLE": address.ca_bundle,
            "CLIPYARD_ACI_STATIC_TOKEN": "soak",
            # The emulator names no polling interval; ARM's usual one would slow deletes.
            "CLIPYARD_ACI_LRO_POLL_INTERVAL_S": "0.2",
            # A subscription with raised ACI limits: the soak measures faults, not the
            # default 100 creates per 5 minutes.
            "CLIPYARD_CONTAINER_CREATES_PER_5MIN": "5000",
            "CLIPYARD_CONTAINER_CREATES_PER_HOUR": "50000",
        }

    def faults(self, stack: Stack, rng: random.Random) -> dict[str, FaultAction]:
        """Return ARM's own faults: throttling during adoption, a 503 storm, slow starts."""

        def throttle_adoption() -> str | None:
            managers = busy_managers(stack)
            if not managers:
                return None
            victim = rng.choice(managers)
            kill_group(victim.pid)
            # The burst begins before the lease goes stale and covers the adoption.
            time.sleep(LEASE_TTL_S - 1)
            for kind in ("get", "list", "create"):
                self._emulator().call("storm", kind, 429, THROTTLE_S, retry_after_s=1.0)
            time.sleep(THROTTLE_S)
            return f"manager {victim.pid} killed; 429s on get, list, create for {THROTTLE_S:g} s"

        def storm_503() -> str | None:
            self._emulator().call("storm", "any", 503, STORM_S)
            time.sleep(STORM_S)
            return f"every ARM request answered 503 for {STORM_S:g} s"

        def slow_provisioning() -> str | None:
            self._emulator().call(
                "delay_provisioning", PROVISIONING_DELAY_S, window_s=PROVISIONING_WINDOW_S
            )
            # Over when the last group created in the window has started.
            time.sleep(PROVISIONING_WINDOW_S + PROVISIONING_DELAY_S)
            return (
                f"groups created in {PROVISIONING_WINDOW_S:g} s provisioned for "
                f"{PROVISIONING_DELAY_S:g} s"
            )

        return {
            "throttle_adoption": throttle_adoption,
            "storm_503": storm_503,
            "slow_provisioning": slow_provisioning,
        }

    def leftovers(self, stack: Stack) -> list[str]:
        """Return the container groups left in the emulator."""
        names: list[str] = self._emulator().call("group_names")
        return names

    def close(self) -> None:
        """Stop the emulator (and any container it still runs)."""
        if self.emulator is not None:
            self.emulator.close()
