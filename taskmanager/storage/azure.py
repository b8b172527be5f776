"""Blob storage in an Azure storage account (or Azurite), via ``azure-storage-blob``.

URLs are service SAS URLs scoped to one blob: read-only (``r``) for inputs and
create/write-only (``cw``) for outputs, expiring in minutes. With an account key
(a connection string) the SAS is signed with the key; with Entra ID credentials
(managed identity in production) it is a user delegation SAS, so no account key is
ever needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)

from taskmanager.storage.base import BlobNotFound, StorageError, StorageUnavailable
from taskmanager.storage.keys import validate_key

Clock = Callable[[], datetime]

# SAS start times are set this far in the past, so a container whose clock runs a
# little behind Azure's can still use a URL minted a moment ago.
_CLOCK_SKEW = timedelta(minutes=5)
# A user delegation key is valid for at most 7 days; ask for a day and renew early.
_DELEGATION_KEY_LIFETIME = timedelta(days=1)
_DELEGATION_KEY_RENEW_BEFORE = timedelta(hours=2)


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class AzureBlobStorage:
    """A ``Storage`` backed by one blob container."""

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        clock: Clock = utc_now,
        max_concurrency: int = 4,
    ) -> None:
        self._service = service
        self._container = service.get_container_client(container)
        self.container = container
        self._clock = clock
        self._max_concurrency = max_concurrency
        self._account_key: str | None = getattr(service.credential, "account_key", None)
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry = datetime.min.replace(tzinfo=UTC)
        self._delegation_lock = threading.Lock()

    @classmethod
    def from_connection_string(cls, connection_string: str, container: str) -> AzureBlobStorage:
        """Create a store signed with the account key in ``connection_string``."""
        return cls(BlobServiceClient.from_connection_string(connection_string), container)

    @classmethod
    def from_account_url(
        cls, account_url: str, container: str, credential: Any
    ) -> AzureBlobStorage:
        """Create a store that uses Entra ID ``credential`` and user delegation SAS."""
        return cls(BlobServiceClient(account_url, credential=credential), container)

    def ensure_container(self) -> None:
        """Create the blob container if it does not exist yet."""
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise _domain_error(exc, self.container) from exc

    def upload(self, key: str, source: BinaryIO, *, content_type: str | None = None) -> None:
        """Store everything ``source`` yields under ``key`` (in blocks), replacing any old blob."""
        blob = self._container.get_blob_client(validate_key(key))
        settings = ContentSettings(content_type=content_type) if content_type else None
        try:
            blob.upload_blob(
                source,
                overwrite=True,
                content_settings=settings,
                max_concurrency=self._max_concurrency,
            )
        except AzureError as exc:
            raise _domain_error(exc, key) from exc

    def download(self, key: str, destination: BinaryIO) -> None:
        """Write the blob's bytes to ``destination``; raise ``BlobNotFound`` if missing."""
        blob = self._container.get_blob_client(validate_key(key))
        # Parallel ranges write out of order, which only a seekable destination allows.
        is_seekable = getattr(destination, "seekable", lambda: False)()
        concurrency = self._max_concurrency if is_seekable else 1
        try:
            blob.download_blob(max_concurrency=concurrency).readinto(destination)
        except AzureError as exc:
            raise _domain_error(exc, key) from exc

    def iter_bytes(self, key: str, *, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the blob's bytes from ``start`` (``length`` of them, or to the end)."""
        blob = self._container.get_blob_client(validate_key(key))
        try:
            yield from blob.download_blob(offset=start, length=length).chunks()
        except AzureError as exc:
            raise _domain_error(exc, key) from exc

    def size(self, key: str) -> int:
        """Return the blob's size in bytes; raise ``BlobNotFound`` if missing."""
        blob = self._container.get_blob_client(validate_key(key))
        try:
            return int(blob.get_blob_properties().size)
        except AzureError as exc:
            raise _domain_error(exc, key) from exc

    def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""
        try:
            return bool(self._container.get_blob_client(validate_key(key)).exists())
        except AzureError as exc:
            raise _domain_error(exc, key) from exc

    def delete(self, key: str) -> None:
        """Delete the blob; succeed quietly if it is already gone."""
        try:
            self._container.get_blob_client(validate_key(key)).delete_blob()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _domain_error(exc, key) from exc

    def read_url(self, key: str, ttl: timedelta, *, download_name: str | None = None) -> str:
        """Return a read-only SAS URL for the blob, valid for ``ttl``."""
        disposition = None
        if download_name is not None:
            safe_name = "".join(c for c in download_name if c.isalnum() or c in "._-") or "download"
            disposition = f'attachment; filename="{safe_name}"'
        return self._sas_url(
            key, BlobSasPermissions(read=True), ttl, content_disposition=disposition
        )

    def write_url(self, key: str, ttl: timedelta) -> str:
        """Return a create/write-only SAS URL for the blob (it cannot read), valid for ``ttl``."""
        return self._sas_url(key, BlobSasPermissions(create=True, write=True), ttl)

    def _sas_url(
        self,
        key: str,
        permission: BlobSasPermissions,
        ttl: timedelta,
        *,
        content_disposition: str | None = None,
    ) -> str:
        blob = self._container.get_blob_client(validate_key(key))
        now = self._clock()
        signing: dict[str, Any] = (
            {"account_key": self._account_key}
            if self._account_key
            else {"user_delegation_key": self._user_delegation_key(now)}
        )
        token = generate_blob_sas(
            account_name=str(blob.account_name),
            container_name=self.container,
            blob_name=blob.blob_name,
            permission=permission,
            start=now - _CLOCK_SKEW,
            expiry=now + ttl,
            protocol="https" if blob.url.startswith("https://") else None,
            content_disposition=content_disposition,
            **signing,
        )
        return f"{blob.url}?{token}"

    def _user_delegation_key(self, now: datetime) -> UserDelegationKey:
        with self._delegation_lock:
            if self._delegation_key is None or now >= self._delegation_key_expiry - (
                _DELEGATION_KEY_RENEW_BEFORE
            ):
                expiry = now + _DELEGATION_KEY_LIFETIME
                try:
                    self._delegation_key = self._service.get_user_delegation_key(
                        now - _CLOCK_SKEW, expiry
                    )
                except AzureError as exc:
                    raise _domain_error(exc, "user delegation key") from exc
                self._delegation_key_expiry = expiry
            return self._delegation_key


def _domain_error(exc: AzureError, what: str) -> StorageError:
    """Turn an SDK error into a storage error an operator can act on."""
    if isinstance(exc, ResourceNotFoundError):
        return BlobNotFound(what)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StorageUnavailable(f"blob storage unreachable while handling {what}: {exc}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status >= 500 or status in (408, 429):
            return StorageUnavailable(f"blob storage answered {status} for {what}; try again")
        if status in (401, 403):
            return StorageError(
                f"blob storage refused access to {what} ({status}): check the account key"
                " or the identity's 'Storage Blob Data Contributor' role"
            )
        return StorageError(f"blob storage answered {status} for {what}: {exc.reason}")
    return StorageUnavailable(f"blob storage error while handling {what}: {exc}")
