"""The OpenAPI document matches behaviour: schemathesis fuzzes every operation (bounded)."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import ignored_auth, positive_data_acceptance, use_after_free

from backend.openapi import openapi_document
from backend.operations import OPERATIONS
from taskmanager.settings import Settings
from tests.backend.conftest import make_identity


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(app: Flask) -> None:
    operator = make_identity(app, "fuzz@example.com", role="operator")
    api_schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: object) -> None:
            response = case.call(headers=operator.headers)  # type: ignore[attr-defined]
            assert response.status_code < 500, (case, response.status_code)
            # Rules the schema cannot express (the template exists, the crop lies inside
            # the photo) rightly refuse some schema-valid bodies with a 422. The cookie jar
            # the in-process client keeps (after sign-in) defeats the unauthenticated
            # probe; test_authz_matrix covers authentication instead.
            case.validate_response(  # type: ignore[attr-defined]
                response,
                excluded_checks=[positive_data_acceptance, use_after_free, ignored_auth],
            )

        check()
        checked += 1
    assert checked == len(OPERATIONS)


def test_every_route_is_documented(app: Flask) -> None:
    documented = {(op.method.upper(), op.path) for op in OPERATIONS}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("frontend.", "docs.")) or rule.endpoint == "static":
            continue
        path = rule.rule.replace("<uuid:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
            assert (method, path) in documented, (method, path)


def test_document_and_docs_page_are_served_locally(
    client: FlaskClient, api_settings: Settings
) -> None:
    doc = client.get("/api/openapi.json")
    assert doc.status_code == 200
    assert doc.json == openapi_document()
    not_built = client.get("/api/docs")
    assert not_built.status_code == 404
    assert "make frontend" in not_built.json["detail"]

    static = api_settings.static_dir
    assert isinstance(static, Path)
    viewer = static / "api-docs"  # what the web app's build copies from swagger-ui-dist
    viewer.mkdir(parents=True)
    (viewer / "swagger-ui-bundle.js").write_text("window.SwaggerUIBundle = () => null;")
    (viewer / "swagger-ui.css").write_text("body {}")
    (static / "secret.txt").write_text("not for you")
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "//" not in html  # no CDN: every asset is a path on this server
    assert "<script>" not in html  # the CSP allows no inline script
    assets = (
        "/api/docs/assets/swagger-ui-bundle.js",
        "/api/docs/assets/swagger-ui.css",
        "/api/docs/init.js",
    )
    for asset in assets:
        assert asset in html
        assert client.get(asset).status_code == 200, asset
    init = client.get("/api/docs/init.js").get_data(as_text=True)
    assert '"/api/openapi.json"' in init
    assert "validatorUrl: null" in init  # no badge fetched from validator.swagger.io
    assert client.get("/api/docs/assets/..%2fsecret.txt").status_code == 404
