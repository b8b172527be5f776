"""A real clipyard stack on the local backend, and headless Debian Chromium to drive it.

One stack serves the whole e2e session (each test signs up its own user, so tests own
their data): a database cloned from the session's migrated template, the session's
Redis, local storage in a temporary folder, the ``frame`` template built and loaded,
the API under gunicorn (``python -m backend``) serving ``frontend/dist``, and two real
task-manager processes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from pydantic import SecretStr

from jobimages.builder import build_templates
from taskmanager.accounts import create_user
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.localservices import EmbeddedRedis
from taskmanager.settings import Settings
from taskmanager.storage import create_storage
from taskmanager.templates import load_templates
from tests.services import REPO_ROOT, ThrowawayDatabases, run_api
from tests.taskmanager.conftest import FAST, WorkerPool, settings_env

CHROMIUM = Path("/usr/bin/chromium")
DIST = REPO_ROOT / "frontend" / "dist"
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
# The smallest built-in template (720p, 8 s): the fastest real composite.
TEMPLATE = "frame"
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Stack:
    """Where the running stack answers, and what it was loaded with."""

    base_url: str
    settings: Settings
    template_duration_s: float
    operator_email: str


@pytest.fixture(scope="session")
def stack(
    test_databases: ThrowawayDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Run the API (with the built web app) and two task managers for the session.

    The stack has a Redis of its own: its managers live as long as the session, and on
    the shared one they would take other tests' tasks (and those tests flush it).
    """
    if not (DIST / "index.html").is_file():
        pytest.fail(f"{DIST} has no built web app: run `make frontend` (or `make test`)")
    root = tmp_path_factory.mktemp("e2e")
    redis_server = EmbeddedRedis(root / "redis", is_throwaway=True)
    database_url = test_databases.create()
    settings = Settings(
        data_dir=root / "data",
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_server.url),
        static_dir=DIST,
        # Every browser of the suite signs up from 127.0.0.1: no per-address limit here.
        login_rate_per_minute=0,
        **FAST,  # type: ignore[arg-type]
    )
    engine = create_db_engine(database_url)
    sessions = create_session_factory(engine)
    built = build_templates(root / "templates", names=[TEMPLATE])
    load_templates(sessions, create_storage(settings), root / "templates")
    operator_email = "operator@example.com"
    create_user(sessions, operator_email, PASSWORD, role="operator")
    engine.dispose()

    workers = WorkerPool(settings, root)
    try:
        workers.start(2)
        with run_api(settings_env(settings), root / "api.log", threads=16) as base_url:
            yield Stack(base_url, settings, built[0].duration_s, operator_email)
    finally:
        workers.stop()
        test_databases.drop(database_url)
        redis_server.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Start Playwright's driver (it never downloads a browser here)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Launch Debian's chromium headless; fail (never skip) when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium"
            " (`apt-get install -y --no-install-recommends chromium`; `make test` does it)"
        )
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        # Let a muted result video play without a user gesture.
        args=["--autoplay-policy=no-user-gesture-required"],
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) for one test."""
    fresh = browser.new_context(
        base_url=stack.base_url, viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    fresh.set_default_timeout(15_000)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page in the test's own browser profile."""
    return context.new_page()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot of the page under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def new_email() -> str:
    """Return an address no other test uses."""
    return f"e2e-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(page: Page, email: str | None = None) -> str:
    """Create an account through the sign-up page; return its email."""
    email = email or new_email()
    page.goto("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/new$"))
    return email


def sign_in(page: Page, email: str) -> None:
    """Sign in through the sign-in page."""
    page.goto("/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/videos$"))


def api_call(page: Page, method: str, path: str, **options: Any) -> Any:
    """Call the API with the page's session cookie and CSRF token; return the JSON body."""
    me = page.request.get("/api/v1/auth/me")
    assert me.ok, me.text()
    headers = {"X-CSRF-Token": me.json()["csrf_token"], **options.pop("headers", {})}
    answer = page.request.fetch(path, method=method, headers=headers, **options)
    assert answer.ok, f"{method} {path}: {answer.status} {answer.text()}"
    return answer.json() if answer.body() else None
