"""The web app in headless Chromium against a real stack: what a person and an operator do."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import (
    PASSWORD,
    TEMPLATE,
    Stack,
    api_call,
    new_email,
    screenshot,
    sign_in,
    sign_up,
)

pytestmark = pytest.mark.e2e
# A real composite of the smallest template on two busy cores takes seconds, not minutes.
JOB_TIMEOUT_MS = 150_000
# A fake job slow enough to be seen running (it is cancelled before the test ends).
SLOW_FAKE = {"seconds": 120, "steps": 120}


@pytest.fixture(autouse=True)
def _no_console_errors(page: Page) -> Any:
    """Fail a test whose page logged a JavaScript error."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield
    assert not errors, errors


def photo_file(tmp_path: Path, name: str = "photo.jpg") -> Path:
    """Write a small landscape photo with some structure to crop."""
    image = Image.new("RGB", (900, 600), (40, 90, 160))
    for x in range(0, 900, 60):
        for y in range(0, 600, 60):
            if (x + y) // 60 % 2:
                image.paste((230, 180, 40), (x, y, x + 30, y + 30))
    path = tmp_path / name
    image.save(path, "JPEG", quality=90)
    return path


def png_bytes() -> bytes:
    """Return a tiny PNG for uploads made through the API."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def submit_fake_job(page: Page, **fields: Any) -> dict[str, Any]:
    """Upload a photo and submit a slow fake job with the page's session; return the job."""
    upload = api_call(
        page,
        "POST",
        "/api/v1/uploads",
        multipart={"file": {"name": "p.png", "mimeType": "image/png", "buffer": png_bytes()}},
    )
    body = {"template": TEMPLATE, "upload_id": upload["id"], "fake": SLOW_FAKE, **fields}
    job: dict[str, Any] = api_call(page, "POST", "/api/v1/jobs", data=body)
    return job


def test_sign_up_upload_crop_submit_watch_play_download(
    page: Page, stack: Stack, tmp_path: Path
) -> None:
    page.goto("/signup")
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("email-error")).to_be_visible()
    expect(page.get_by_test_id("password-error")).to_contain_text("8 characters")
    screenshot(page, "signup-errors")
    sign_up(page)

    expect(page.get_by_test_id(f"template-{TEMPLATE}")).to_be_visible()
    # The gallery loops the template's own video (its poster shows until it loads).
    preview = page.get_by_test_id(f"template-{TEMPLATE}").locator("video")
    expect(preview).to_have_js_property("loop", True)
    preview.evaluate(
        "v => v.readyState >= 1 || new Promise(r => v.addEventListener('loadedmetadata', r))"
    )
    assert abs(preview.evaluate("v => v.duration") - stack.template_duration_s) < 0.25
    page.get_by_test_id(f"template-{TEMPLATE}").click()
    page.get_by_test_id("file-input").set_input_files(str(photo_file(tmp_path)))
    expect(page.locator(".cropper-container")).to_be_visible()
    page.get_by_role("button", name="Zoom in").click()
    expect(page.get_by_test_id("submit")).to_be_enabled()
    screenshot(page, "new-video")
    page.get_by_test_id("submit").click()

    expect(page).to_have_url(re.compile(r"/videos/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[-1]
    expect(page.get_by_test_id("job-state")).to_have_text("Ready", timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("job-progress")).to_have_text("100%")
    expect(page.get_by_test_id("timeline")).to_contain_text("Progress")

    video = page.get_by_test_id("result-video")
    page.wait_for_function(
        "v => v.readyState >= 1 && Number.isFinite(v.duration)", arg=video.element_handle()
    )
    duration = video.evaluate("v => v.duration")
    assert abs(duration - stack.template_duration_s) < 0.25, duration
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0.3 && !v.error", arg=video.element_handle())
    screenshot(page, "job-detail")

    with page.expect_download() as download_info:
        page.get_by_test_id("download").click()
    saved = download_info.value.path()
    head = saved.read_bytes()[:12]
    assert head[4:8] == b"ftyp", head

    job = api_call(page, "GET", f"/api/v1/jobs/{job_id}")
    assert job["state"] == "succeeded"
    assert job["crop"] is not None  # the cropper's rectangle went with the job

    page.get_by_role("link", name="My videos", exact=True).click()
    card = page.get_by_test_id(f"job-{job_id}")
    expect(card.get_by_test_id("job-state")).to_have_text("Ready")
    expect(card.locator("img.job-thumb")).to_be_visible()
    screenshot(page, "my-videos")

    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "my-videos-phone")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin"))
    page.goto("/videos")
    expect(page).to_have_url(re.compile(r"/signin\?next=(/|%2F)videos"))
    screenshot(page, "signin")


def test_refused_upload_shows_the_servers_message(page: Page, stack: Stack, tmp_path: Path) -> None:
    sign_up(page)
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_bytes(b"this is text, not a picture\n" * 10)
    expected = page.request.post(
        "/api/v1/uploads",
        headers={"X-CSRF-Token": page.request.get("/api/v1/auth/me").json()["csrf_token"]},
        multipart={
            "file": {
                "name": "notes.png",
                "mimeType": "image/png",
                "buffer": not_a_photo.read_bytes(),
            }
        },
    )
    assert expected.status in (415, 422), expected.status
    page.get_by_test_id("file-input").set_input_files(str(not_a_photo))
    expect(page.get_by_test_id("upload-error")).to_have_text(expected.json()["detail"])
    expect(page.get_by_test_id("submit")).to_be_disabled()
    screenshot(page, "upload-refused")


def test_cancel_stops_a_running_job(page: Page, stack: Stack) -> None:
    sign_up(page)
    job = submit_fake_job(page)
    page.goto(f"/videos/{job['id']}")
    expect(page.get_by_test_id("job-state")).to_have_text("Running", timeout=30_000)
    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("job-state")).to_have_text("Cancelled", timeout=30_000)
    expect(page.get_by_test_id("timeline")).to_contain_text("Cancellation requested")
    expect(page.get_by_test_id("retry")).to_be_visible()
    screenshot(page, "job-cancelled")


def test_a_plain_user_cannot_open_operations(page: Page, stack: Stack) -> None:
    sign_up(page)
    expect(page.get_by_role("link", name="Operations")).to_have_count(0)
    page.goto("/ops")
    expect(page.get_by_test_id("forbidden")).to_be_visible()
    expect(page.get_by_text("Queue depths")).to_have_count(0)
    assert page.request.get("/api/v1/ops/summary").status == 403
    screenshot(page, "operations-forbidden")


def test_operations_shows_a_running_batch(page: Page, stack: Stack) -> None:
    sign_in(page, stack.operator_email)
    name = f"e2e-{new_email()[4:14]}"
    batch = api_call(
        page,
        "POST",
        "/api/v1/batches",
        data={"name": name, "budget_usd": "5", "max_concurrent": 2},
    )
    job = submit_fake_job(page, batch_id=batch["id"])
    try:
        page.get_by_role("link", name="Operations").click()
        row = page.get_by_test_id(f"batch-{name}")
        expect(row).to_be_visible()
        expect(row.get_by_test_id("batch-running")).to_have_text("1 running", timeout=30_000)
        by_state = page.get_by_role("table", name="Jobs by state")
        expect(by_state.get_by_role("row", name="running 1", exact=True)).to_be_visible(
            timeout=30_000
        )
        expect(page.get_by_text("Running containers")).to_be_visible()
        screenshot(page, "operations")
    finally:
        api_call(page, "POST", f"/api/v1/jobs/{job['id']}/cancel")


def test_sign_in_shows_a_wrong_password_next_to_the_form(page: Page, stack: Stack) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(stack.operator_email)
    page.get_by_label("Password").fill(PASSWORD + "x")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("form-error")).to_be_visible()
    assert "/signin" in page.url
