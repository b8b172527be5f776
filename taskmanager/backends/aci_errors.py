"""Turn Azure SDK errors into ``BackendError``s an operator can act on.

Classification: quota, capacity, throttling (429) and server errors (5xx) are worth
retrying later, honouring ``Retry-After``; a bad image, an invalid spec or missing
permissions never get better by themselves.
"""

from __future__ import annotations

import email.utils
import time

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from taskmanager.backends.base import BackendError
from taskmanager.logs import redact

QUOTA_CODES = frozenset(
    {
        "ContainerGroupQuotaReached",
        "QuotaExceeded",
        "StandardCoresQuotaReached",
        "SpotCoresQuotaReached",
        "MaxContainerGroupCountExceeded",
        "OperationNotAllowed",  # ARM's answer when a request would exceed a core quota
    }
)
CAPACITY_CODES = frozenset(
    {"ServiceUnavailable", "SkuNotAvailable", "ResourceUnavailable", "ZonalAllocationFailed"}
)
IMAGE_CODES = frozenset(
    {"InaccessibleImage", "RegistryErrorResponse", "ImageNotFound", "InvalidImage"}
)
# Conflicts that pass: the group is between states (being deleted, stopped, updated).
TRANSIENT_CONFLICT_CODES = frozenset(
    {"ContainerGroupTransitioning", "Conflict", "AnotherOperationInProgress"}
)


def retry_after(exc: HttpResponseError) -> float | None:
    """Return the error's Retry-After in seconds, if it has one."""
    response = exc.response
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - time.time())


def error_code(exc: HttpResponseError) -> str:
    """Return ARM's error code ("" when the body had none)."""
    return str(getattr(exc.error, "code", None) or "")


def error_message(exc: AzureError) -> str:
    """Return ARM's error message, secrets redacted."""
    message = getattr(getattr(exc, "error", None), "message", None) or exc.message or str(exc)
    return redact(str(message).splitlines()[0] if message else type(exc).__name__)


def to_backend_error(exc: AzureError, action: str, name: str, *, location: str) -> BackendError:
    """Classify an SDK error raised while doing ``action`` to the group ``name``."""
    if isinstance(exc, ClientAuthenticationError):
        return BackendError(
            f"cannot {action} container group {name}: Azure refused our credentials "
            f"({error_message(exc)}); give the manager's identity Contributor on the "
            "resource group (CLIPYARD_ACI_RESOURCE_GROUP)",
            is_retryable=False,
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return BackendError(
            f"cannot {action} container group {name}: ARM unreachable ({type(exc).__name__})",
            is_retryable=True,
        )
    if not isinstance(exc, HttpResponseError):
        return BackendError(f"cannot {action} container group {name}: {exc}", is_retryable=True)
    status = exc.status_code or 0
    code = error_code(exc)
    message = error_message(exc)
    after = retry_after(exc)
    if code in QUOTA_CODES:
        return BackendError(
            f"ACI quota reached while trying to {action} {name} ({code}: {message}); "
            "request a higher Container Instances quota for the subscription in the Azure "
            "portal (Quotas), or lower CLIPYARD_MAX_CONCURRENT_CONTAINERS / "
            "CLIPYARD_MAX_TOTAL_CPU",
            is_retryable=True,
            retry_after_s=after,
        )
    # Capacity is a create's problem; for a read, a listing or a delete a 503 (or a code
    # that would mean capacity on a create) is a server-side error like any 5xx (below).
    if action == "create" and (code in CAPACITY_CODES or status == 503):
        return BackendError(
            f"ACI has no capacity in {location} right now for {name} ({code or status}: "
            f"{message}); retrying later; if this persists, choose another region "
            "(CLIPYARD_ACI_LOCATION) or smaller CPU/memory",
            is_retryable=True,
            retry_after_s=after,
        )
    if code in IMAGE_CODES:
        return BackendError(
            f"ACI cannot pull the image for {name} ({code}: {message}); check "
            "CLIPYARD_COMPOSITOR_IMAGE and the registry settings "
            "(CLIPYARD_ACI_REGISTRY_SERVER and _IDENTITY or _USERNAME/_PASSWORD)",
            is_retryable=False,
        )
    if status == 429:
        return BackendError(
            f"ARM throttled the {action} of {name}; retry after {after or 0:g} s",
            is_retryable=True,
            retry_after_s=after,
        )
    if status >= 500 or status == 408 or code in TRANSIENT_CONFLICT_CODES:
        return BackendError(
            f"ARM failed to {action} {name} ({status} {code}: {message}); retrying later",
            is_retryable=True,
            retry_after_s=after,
        )
    if status in (401, 403):
        return BackendError(
            f"not allowed to {action} container group {name} ({code}: {message}); give the "
            "manager's identity Contributor on CLIPYARD_ACI_RESOURCE_GROUP",
            is_retryable=False,
        )
    return BackendError(
        f"ACI refused to {action} {name} ({status} {code}: {message}); the container group "
        "spec is invalid and retrying will not help",
        is_retryable=False,
    )
