"""Build the ACI management client: credential, endpoint, TLS trust and retry policy."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.containerinstance import ContainerInstanceManagementClient

from taskmanager.settings import Settings

ARM_SCOPE = "https://management.azure.com/.default"


class AciConfigurationError(RuntimeError):
    """The settings cannot reach ACI; the message names the setting to fix."""


class StaticTokenCredential:
    """A credential that hands out one fixed bearer token (the ARM emulator's)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """Return the fixed token, valid for an hour from now."""
        return AccessToken(self._token, int(time.time()) + 3600)


class CappedRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """Retry briefly inside the SDK; hand long ``Retry-After`` waits back to the caller.

    A manager blocked in a 60-second SDK sleep cannot renew its lease; the supervisor
    reschedules instead when told how long to wait.
    """

    def __init__(self, max_inline_retry_after_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_inline_retry_after_s = max_inline_retry_after_s

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        """Refuse to retry when the server asks for a longer wait than we sit out."""
        after = self.get_retry_after(response)
        if after is not None and after > self._max_inline_retry_after_s:
            return False
        return bool(super().is_retry(settings, response))


def require(settings: Settings) -> tuple[str, str]:
    """Return the subscription id and resource group, naming whichever is missing."""
    missing = [
        env
        for env, value in (
            ("CLIPYARD_ACI_SUBSCRIPTION_ID", settings.aci_subscription_id),
            ("CLIPYARD_ACI_RESOURCE_GROUP", settings.aci_resource_group),
        )
        if not value
    ]
    if missing:
        raise AciConfigurationError(
            f"container_backend is 'aci' but {' and '.join(missing)} is not set"
        )
    return str(settings.aci_subscription_id), str(settings.aci_resource_group)


def create_credential(settings: Settings) -> TokenCredential:
    """Return the credential the settings choose: static token, managed identity or default."""
    if settings.aci_static_token is not None:
        return StaticTokenCredential(settings.aci_static_token.get_secret_value())
    if settings.aci_managed_identity_client_id:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.aci_managed_identity_client_id)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def check_credential(credential: TokenCredential) -> None:
    """Get one ARM token now, so a manager without working credentials fails at start-up."""
    try:
        credential.get_token(ARM_SCOPE)
    except ClientAuthenticationError as exc:
        raise AciConfigurationError(
            "no Azure credential works for ACI: set CLIPYARD_ACI_MANAGED_IDENTITY_CLIENT_ID "
            "(user-assigned managed identity) or the AZURE_CLIENT_ID / AZURE_TENANT_ID / "
            "AZURE_CLIENT_SECRET environment variables DefaultAzureCredential reads "
            f"({type(exc).__name__})"
        ) from exc


def create_client(
    settings: Settings, credential: TokenCredential
) -> ContainerInstanceManagementClient:
    """Build the management client against Azure or the endpoint the settings override."""
    subscription_id, _ = require(settings)
    kwargs: dict[str, Any] = {
        "retry_policy": CappedRetryPolicy(
            settings.aci_max_inline_retry_after_s,
            retry_total=settings.aci_sdk_retries,
            retry_backoff_factor=settings.aci_sdk_backoff_s,
            retry_backoff_max=max(settings.aci_sdk_backoff_s * 8, 1.0),
        ),
        "polling_interval": settings.aci_lro_poll_interval_s,
    }
    if settings.aci_arm_endpoint:
        kwargs["base_url"] = settings.aci_arm_endpoint.rstrip("/")
    if settings.aci_ca_bundle is not None:
        kwargs["connection_verify"] = str(settings.aci_ca_bundle)
    return ContainerInstanceManagementClient(credential, subscription_id, **kwargs)
