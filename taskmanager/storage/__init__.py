"""Blob storage: one interface, a local-directory and an Azure Blob implementation."""

from __future__ import annotations

from taskmanager.settings import Settings
from taskmanager.storage.base import (
    BlobNotFound,
    InvalidKey,
    Storage,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "BlobNotFound",
    "InvalidKey",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "create_storage",
]


def create_storage(settings: Settings) -> Storage:
    """Build the store the settings choose (local directory unless configured for Azure)."""
    if settings.storage_backend == "local":
        from taskmanager.storage.local import LocalStorage

        return LocalStorage(settings.blob_dir)
    from taskmanager.storage.azure import AzureBlobStorage

    if settings.azure_storage_connection_string is not None:
        store = AzureBlobStorage.from_connection_string(
            settings.azure_storage_connection_string.get_secret_value(),
            settings.azure_storage_container,
        )
    elif settings.azure_storage_account_url:
        from azure.identity import DefaultAzureCredential

        store = AzureBlobStorage.from_account_url(
            settings.azure_storage_account_url,
            settings.azure_storage_container,
            DefaultAzureCredential(),
        )
    else:
        raise StorageError(
            "CLIPYARD_STORAGE_BACKEND=azure needs CLIPYARD_AZURE_STORAGE_CONNECTION_STRING"
            " or CLIPYARD_AZURE_STORAGE_ACCOUNT_URL"
        )
    store.ensure_container()
    return store
