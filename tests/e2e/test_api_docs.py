"""The API reference at /api/docs renders the OpenAPI 3.1 document in headless Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, expect

from tests.e2e.conftest import Stack, screenshot

pytestmark = pytest.mark.e2e


def test_api_docs_show_the_jobs_operations(page: Page, stack: Stack) -> None:
    """Swagger UI 4 answered "Unable to render this definition" to a 3.1 document."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A script or style the page's CSP refuses is reported on the console.
    page.on("console", lambda message: _keep_errors(message, errors))
    elsewhere: list[str] = []
    page.on("request", lambda request: _keep_foreign(request, stack.base_url, elsewhere))

    page.goto("/api/docs")
    expect(page.get_by_role("heading", name="clipyard API")).to_be_visible()
    submit = page.locator(".opblock-post").filter(has_text="Submit a job")
    expect(submit).to_be_visible()
    expect(submit.locator(".opblock-summary-path")).to_have_text("/api/v1/jobs")
    expect(page.get_by_text("List jobs")).to_be_visible()
    expect(page.get_by_text("Unable to render")).to_have_count(0)

    # Opening an operation renders its schemas, written in 3.1 (`type: null`, not `nullable`).
    submit.locator(".opblock-summary").click()
    request_body = submit.locator(".opblock-section-request-body")
    expect(request_body).to_contain_text("Request body")
    expect(request_body).to_contain_text('"upload_id"')  # JobIn, resolved from its $ref
    expect(page.get_by_text("Unable to render")).to_have_count(0)
    screenshot(page, "api-docs", full_page=False)

    assert not errors, errors
    assert not elsewhere, f"the docs page fetched from another origin: {elsewhere}"


def _keep_errors(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


def _keep_foreign(request: Request, origin: str, elsewhere: list[str]) -> None:
    if not request.url.startswith((origin, "data:", "blob:")):
        elsewhere.append(request.url)
