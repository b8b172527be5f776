"""Pytest fixtures: an ARM emulator per test, checked empty at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.armemulator.emulator import ArmEmulator


@pytest.fixture
def arm_emulator(tmp_path: Path) -> Iterator[ArmEmulator]:
    """Start an ARM emulator for the test; fail the test if it leaves groups behind.

    The object carries ``endpoint``, ``ca_bundle``, ``subscription_id``,
    ``resource_group``, ``assert_empty()`` and the fault-injection methods.
    """
    emulator = ArmEmulator(tmp_path / "armemulator")
    try:
        yield emulator
        emulator.assert_empty()
    finally:
        emulator.close()


def emulator_settings(emulator: ArmEmulator) -> dict[str, Any]:
    """Return settings that point the aci backend at ``emulator``, with short timings."""
    return {
        "container_backend": "aci",
        "aci_subscription_id": emulator.subscription_id,
        "aci_resource_group": emulator.resource_group,
        "aci_arm_endpoint": emulator.endpoint,
        "aci_ca_bundle": emulator.ca_bundle,
        "aci_static_token": SecretStr("emulator-token"),
        "aci_sdk_retries": 2,
        "aci_sdk_backoff_s": 0.01,
        "aci_max_inline_retry_after_s": 0.5,
        "aci_lro_poll_interval_s": 0.05,
        "aci_rate_max_wait_s": 10.0,
    }
