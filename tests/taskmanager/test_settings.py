"""Settings come from the environment and a .env file; secrets never print."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskmanager.settings import Settings, redact_url


def test_defaults_are_the_local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env(env_file=None)
    assert settings.is_embedded_database
    assert settings.is_embedded_redis
    assert settings.storage_backend == "local"
    assert settings.container_backend == "local"
    assert settings.blob_dir == Path(".clipyard") / "blobs"
    assert settings.price_per_vcpu_hour == Decimal("0.0405")


def test_environment_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CLIPYARD_LEASE_TTL_S=12.5\nCLIPYARD_STORAGE_BACKEND=azure\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db.example/clipyard")
    monkeypatch.setenv("CLIPYARD_LEASE_TTL_S", "7")  # the environment wins over .env
    settings = Settings.from_env(env_file=env_file)
    assert settings.lease_ttl_s == 7
    assert settings.storage_backend == "azure"
    assert not settings.is_embedded_database


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db.example/clipyard")
    monkeypatch.setenv("CLIPYARD_AZURE_STORAGE_CONNECTION_STRING", "AccountKey=topsecret")
    monkeypatch.setenv("CLIPYARD_SECRET_KEY", "flask-secret")
    settings = Settings.from_env(env_file=None)
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "hunter2" not in text
        assert "topsecret" not in text
        assert "flask-secret" not in text
    assert redact_url("postgresql://app:hunter2@db.example/clipyard") == (
        "postgresql://app:***@db.example/clipyard"
    )


def test_invalid_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPYARD_LEASE_TTL_S", "-1")
    with pytest.raises(ValidationError, match="lease_ttl_s"):
        Settings.from_env(env_file=None)
