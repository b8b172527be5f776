"""Blob storage on both implementations: streaming round trips and SAS permissions."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest

from taskmanager.storage import BlobNotFound, InvalidKey, Storage
from taskmanager.storage.azure import AzureBlobStorage
from taskmanager.storage.local import LocalStorage
from tests.services import Azurite

MIB = 1024 * 1024


class PatternStream(io.RawIOBase):
    """A readable stream of ``size`` deterministic bytes, never held in memory at once."""

    def __init__(self, size: int) -> None:
        self._remaining = size
        self._block = hashlib.sha256(b"clipyard").digest() * 2048  # 64 KiB
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._remaining, len(self._block))
        buffer[:count] = self._block[:count]
        self.digest.update(self._block[:count])
        self._remaining -= count
        return count


class DigestSink(io.RawIOBase):
    """A writable stream that only hashes what it is given."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        self.size += len(data)
        return len(data)


@pytest.fixture
def azure_storage(azurite: Azurite, request: pytest.FixtureRequest) -> AzureBlobStorage:
    container = f"t{abs(hash(request.node.nodeid)) % 10**12}"
    store = AzureBlobStorage.from_connection_string(azurite.connection_string, container)
    store.ensure_container()
    return store


@pytest.fixture(params=["local", "azure"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "blobs")
    else:
        yield request.getfixturevalue("azure_storage")


def test_large_blob_round_trips_by_streaming(storage: Storage) -> None:
    source = PatternStream(9 * MIB + 123)  # more than two Azure blocks
    storage.upload("outputs/job/video.mp4", source, content_type="video/mp4")
    sink = DigestSink()
    storage.download("outputs/job/video.mp4", sink)
    assert sink.size == 9 * MIB + 123
    assert sink.digest.hexdigest() == source.digest.hexdigest()
    assert storage.size("outputs/job/video.mp4") == 9 * MIB + 123


def test_byte_ranges(storage: Storage) -> None:
    storage.upload("uploads/u/1", io.BytesIO(b"0123456789"))
    assert b"".join(storage.iter_bytes("uploads/u/1", start=3, length=4)) == b"3456"
    assert b"".join(storage.iter_bytes("uploads/u/1", start=7)) == b"789"


def test_overwrite_exists_and_quiet_delete(storage: Storage) -> None:
    storage.upload("logs/j/1.log", io.BytesIO(b"first"))
    storage.upload("logs/j/1.log", io.BytesIO(b"second"))
    assert b"".join(storage.iter_bytes("logs/j/1.log")) == b"second"
    assert storage.exists("logs/j/1.log")
    storage.delete("logs/j/1.log")
    storage.delete("logs/j/1.log")
    assert not storage.exists("logs/j/1.log")


def test_missing_blob_raises_blob_not_found(storage: Storage) -> None:
    with pytest.raises(BlobNotFound):
        storage.size("outputs/nothing/here.mp4")
    with pytest.raises(BlobNotFound):
        storage.download("outputs/nothing/here.mp4", io.BytesIO())


@pytest.mark.parametrize(
    "key", ["", "../etc/passwd", "/abs", "a//b", "a/../b", "a/b.", "a b", "a\\b"]
)
def test_unsafe_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        storage.upload(key, io.BytesIO(b"x"))


def test_local_urls_point_at_the_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "blobs")
    store.upload("templates/frame/video.mp4", io.BytesIO(b"video"))
    read_path = Path(
        urlparse(store.read_url("templates/frame/video.mp4", timedelta(minutes=5))).path
    )
    assert read_path.read_bytes() == b"video"
    write_path = Path(urlparse(store.write_url("outputs/j/out.mp4", timedelta(minutes=5))).path)
    assert write_path.parent.is_dir()
    write_path.write_bytes(b"result")
    assert b"".join(store.iter_bytes("outputs/j/out.mp4")) == b"result"


def _http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_read_only_url_reads_but_refuses_writes(azure_storage: AzureBlobStorage) -> None:
    azure_storage.upload("templates/frame/track.json", io.BytesIO(b'{"v": 1}'))
    url = azure_storage.read_url("templates/frame/track.json", timedelta(minutes=5))
    assert "sp=r&" in url
    assert _http("GET", url) == (200, b'{"v": 1}')
    status, _ = _http("PUT", url, b"overwritten")
    assert status == 403
    assert b"".join(azure_storage.iter_bytes("templates/frame/track.json")) == b'{"v": 1}'


def test_write_only_url_writes_but_refuses_reads(azure_storage: AzureBlobStorage) -> None:
    url = azure_storage.write_url("outputs/job1/video.mp4", timedelta(minutes=5))
    assert "sp=cw&" in url
    status, _ = _http("PUT", url, b"the video")
    assert status == 201
    assert b"".join(azure_storage.iter_bytes("outputs/job1/video.mp4")) == b"the video"
    status, body = _http("GET", url)
    assert status == 403
    assert b"the video" not in body


def test_expired_url_is_refused(azurite: Azurite) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    store = AzureBlobStorage.from_connection_string(azurite.connection_string, "expiry")
    store.ensure_container()
    store.upload("uploads/u/photo", io.BytesIO(b"photo"))
    stale = AzureBlobStorage.from_connection_string(azurite.connection_string, "expiry")
    stale._clock = lambda: past  # minted an hour ago, valid for five minutes
    read = stale.read_url("uploads/u/photo", timedelta(minutes=5))
    write = stale.write_url("outputs/j/video.mp4", timedelta(minutes=5))
    assert _http("GET", read)[0] == 403
    assert _http("PUT", write, b"late")[0] == 403
    assert not store.exists("outputs/j/video.mp4")


def test_url_for_one_blob_cannot_reach_another(azure_storage: AzureBlobStorage) -> None:
    azure_storage.upload("uploads/a/1", io.BytesIO(b"alice"))
    azure_storage.upload("uploads/b/1", io.BytesIO(b"bob"))
    url = azure_storage.read_url("uploads/a/1", timedelta(minutes=5))
    other = url.replace("uploads/a/1", "uploads/b/1")
    assert _http("GET", other)[0] == 403


def test_download_name_sets_content_disposition(azure_storage: AzureBlobStorage) -> None:
    azure_storage.upload("outputs/j/video.mp4", io.BytesIO(b"v"))
    url = azure_storage.read_url(
        "outputs/j/video.mp4", timedelta(minutes=5), download_name="my video.mp4"
    )
    request = urllib.request.Request(url, headers={"x-ms-version": "2021-08-06"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Disposition"] == 'attachment; filename="myvideo.mp4"'


def test_unreachable_account_is_storage_unavailable() -> None:
    from taskmanager.storage import StorageUnavailable

    port = 9  # discard port on loopback: nothing listens there in these sandboxes
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        + "a" * 88
        + f";BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    store = AzureBlobStorage.from_connection_string(connection, "c")
    store._service._config.retry_policy.total_retries = 0  # fail fast in the test
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.exists("uploads/u/1")
    assert os.environ.get("AZURE_STORAGE_KEY") is None
