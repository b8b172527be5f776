"""An HTTPS ARM emulator for Azure Container Instances, driven by the real Azure SDK."""

from __future__ import annotations

from tests.armemulator.emulator import ArmEmulator, emulator_images

__all__ = ["ArmEmulator", "emulator_images"]
