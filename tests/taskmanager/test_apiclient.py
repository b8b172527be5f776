"""The CLI's API client waits out an upload refused while others of ours are checked."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from taskmanager.cli.apiclient import ApiClient, ApiError, Credentials

API = "http://api.test"


class _BusyApi(BaseAdapter):
    """Answers uploads 429 (``Retry-After``) ``busy`` times, then 201; keeps each body."""

    def __init__(self, busy: int, retry_after: str = "0") -> None:
        super().__init__()
        self.busy = busy
        self.retry_after = retry_after
        self.bodies: list[bytes] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Answer one request."""
        assert isinstance(request.body, bytes)
        self.bodies.append(request.body)
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        if len(self.bodies) <= self.busy:
            response.status_code = 429
            response.headers = CaseInsensitiveDict(
                {"Content-Type": "application/problem+json", "Retry-After": self.retry_after}
            )
            body = {"title": "Too many uploads", "status": 429, "detail": "at most 2 photos"}
        else:
            response.status_code = 201
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
            body = {"id": "5b0e4a1e-8a57-4d2b-a3c4-3f1e0c3b9a10"}
        response.raw = io.BytesIO(json.dumps(body).encode())
        return response

    def close(self) -> None:
        """Nothing to close."""


def _client(api: _BusyApi) -> ApiClient:
    session = requests.Session()
    session.mount(API, api)
    return ApiClient(Credentials(API, "token"), http=session)


def test_an_upload_refused_as_busy_is_sent_again_whole(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 the photo's bytes \xff\xd9")
    api = _BusyApi(busy=2)
    assert _client(api).post_upload(photo)["id"].startswith("5b0e")
    assert len(api.bodies) == 3
    assert all(b"the photo's bytes" in body for body in api.bodies)


def test_a_long_retry_after_is_not_waited_out(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"bytes")
    api = _BusyApi(busy=1, retry_after="3600")
    with pytest.raises(ApiError) as refused:
        _client(api).post_upload(photo)
    assert refused.value.status == 429
    assert refused.value.retry_after_s == 3600
    assert len(api.bodies) == 1
