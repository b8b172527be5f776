"""Walk every operation of the OpenAPI route table with three identities.

Anonymous callers get 401 on everything but public routes; users get 403 on operator
routes; a user reaching for another user's resource gets 404, as if it did not exist.
"""

from __future__ import annotations

import io
import uuid

import pytest
from flask.testing import FlaskClient

from backend.operations import OPERATIONS
from taskmanager.models import Template
from tests.backend.conftest import Identity, submit, upload_photo


@pytest.fixture
def bobs_resources(
    client: FlaskClient, bob: Identity, operator: Identity, template: Template
) -> dict[str, str]:
    """Create one of everything, owned by Bob (or, for batches, by the operator)."""
    upload_id = upload_photo(client, bob)
    job_id = submit(client, bob, upload_id).json["id"]
    token_id = client.post("/api/v1/tokens", json={"name": "x"}, headers=bob.headers).json["id"]
    batch = client.post(
        "/api/v1/batches", json={"name": "b", "budget_usd": "1.5"}, headers=operator.headers
    )
    return {
        "job_id": job_id,
        "upload_id": upload_id,
        "token_id": token_id,
        "batch_id": batch.json["id"],
        "name": "frame",
    }


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> int:
    if path == "/api/v1/uploads":
        data = {"file": (io.BytesIO(b"x"), "x.png")}
        return client.post(
            path, data=data, headers=headers, content_type="multipart/form-data"
        ).status_code
    if method in ("post",):
        return client.post(path, json={}, headers=headers).status_code
    return client.open(path, method=method.upper(), headers=headers).status_code


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op.method} {op.path}")
def test_authorization_matrix(
    client: FlaskClient,
    alice: Identity,
    operator: Identity,
    bobs_resources: dict[str, str],
    op: object,
) -> None:
    method, template_path, auth = op.method, op.path, op.auth  # type: ignore[attr-defined]
    path = template_path.format(**bobs_resources)
    anonymous = _call(client, method, path, {})
    as_alice = _call(client, method, path, alice.headers)
    as_operator = _call(client, method, path, operator.headers)
    if auth == "none":
        assert anonymous not in (401, 403)
        return
    assert anonymous == 401
    if auth == "operator":
        assert as_alice == 403
        assert as_operator not in (401, 403, 404)
        return
    if "{" in template_path and "{name}" not in template_path:  # templates are shared
        # Bob's resource: Alice must not learn it exists. Tokens are personal even to operators.
        assert as_alice == 404
        if "token" not in template_path:
            assert as_operator not in (401, 403, 404)
    else:
        assert as_alice not in (401, 403, 404)
        assert as_operator not in (401, 403, 404)


def test_unknown_ids_are_404_for_everyone(client: FlaskClient, operator: Identity) -> None:
    for path in ("jobs", "batches", "uploads"):
        response = client.get(f"/api/v1/{path}/{uuid.uuid4()}", headers=operator.headers)
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
