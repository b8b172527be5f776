"""Logs never carry SAS signatures, account keys, bearer tokens or passwords."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from taskmanager.logs import configure_logging, redact


def test_redact_keeps_what_is_useful_and_hides_secrets() -> None:
    url = "https://acct.blob.core.windows.net/c/outputs/j/v.mp4?sv=2024&sp=cw&se=2026-01-01&sig=abc%2Bdef%3D"
    assert redact(url) == (
        "https://acct.blob.core.windows.net/c/outputs/j/v.mp4?sv=2024&sp=cw&se=2026-01-01&sig=REDACTED"
    )
    assert redact("AccountName=a;AccountKey=k3y==;EndpointSuffix=x") == (
        "AccountName=a;AccountKey=REDACTED;EndpointSuffix=x"
    )
    assert redact("Authorization: Bearer cy_abc.def") == "Authorization: Bearer REDACTED"
    assert redact("postgresql://app:pw@db/x") == "postgresql://app:REDACTED@db/x"


def test_structlog_output_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    structlog.get_logger("test").info(
        "container launched", url="https://a/b?sp=r&sig=SECRET", token="cy_tok"
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["url"] == "https://a/b?sp=r&sig=REDACTED"
    assert line["token"] == "REDACTED"
    assert "SECRET" not in json.dumps(line)


def test_standard_library_records_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("some.library").warning("GET https://a/b?sp=r&sig=SECRET failed")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "GET https://a/b?sp=r&sig=REDACTED failed"
