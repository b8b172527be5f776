"""Pytest fixtures: an ARM emulator per test, checked empty at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
