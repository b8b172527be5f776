"""``clipyard batch`` as operators run it: a real CLI process against a real API server.

The CLI talks HTTP only (a bearer token, never the database); the tests look at the
database to check what it did.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image
from sqlalchemy import func, select

from jobimages.builder import build_templates
from jobimages.template import TemplateInfo
from taskmanager.accounts import create_token, create_user
from taskmanager.batches.jobs import BatchRow, submit_rows
from taskmanager.batches.service import BatchRequest, create_batch
from taskmanager.models import ApiToken, Batch, Job, Upload, User
from taskmanager.settings import Settings
from taskmanager.supervision.runtime import Runtime
from taskmanager.templates import load_templates
from tests.services import REPO_ROOT, run_api, wait_until
from tests.taskmanager.conftest import WorkerPool, settings_env
from tests.taskmanager.factories import make_owner_upload_template

CLIPYARD = str(Path(sys.executable).parent / "clipyard")


@pytest.fixture
def api(manager_settings: Settings, tmp_path: Path) -> Iterator[str]:
    """Run the API for this test's database; return its URL."""
    with run_api(settings_env(manager_settings), tmp_path / "api.log") as url:
        yield url


@pytest.fixture
def operator_env(runtime: Runtime, api: str, tmp_path: Path) -> dict[str, str]:
    """Return the CLI's environment: the API's URL and an operator's token."""
    user = create_user(
        runtime.sessions, "ops@example.com", "correct horse battery", role="operator"
    )
    _, token = create_token(runtime.sessions, user.id, "cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPYARD_")}
    return {
        **env,
        "CLIPYARD_API_URL": api,
        "CLIPYARD_TOKEN": token,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "200",
    }


def clipyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``clipyard`` command."""
    return subprocess.run(
        [CLIPYARD, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def photos(folder: Path, count: int) -> list[Path]:
    """Write ``count`` distinct small JPEG photos; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"photo-{index}.jpg"
        Image.new("RGB", (320, 240), (40 * index % 256, 120, 200)).save(path, "JPEG")
        paths.append(path)
    return paths


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write a JSON Lines manifest."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _batch_jobs(runtime: Runtime, name: str) -> list[Job]:
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(Job).join(Batch, Batch.id == Job.batch_id).where(Batch.name == name)
            )
        )


def test_plan_reports_every_bad_row_and_submit_refuses_until_fixed(
    runtime: Runtime,
    operator_env: dict[str, str],
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
    tmp_path: Path,
) -> None:
    good = photos(tmp_path / "photos", 2)
    manifest = tmp_path / "spring.csv"
    manifest.write_text(
        "row_id,template,photo,crop,cpu\n"
        f"a,frame,{good[0].name},,\n"  # photos are relative to the manifest's folder
        "b,frame,photos/missing.jpg,,\n"
        f'c,frame,{good[1]},"0,0,100,80",\n'
        "d,nosuch,{p},,\n"
        f'e,frame,{good[1]},"0,0,-5",9\n'
        f"a,frame,{good[0]},,\n"
        f"f,frame,{good[0]},,0.5\n".replace("{p}", str(good[0]))
    )
    (tmp_path / good[0].name).write_bytes(good[0].read_bytes())

    plan = clipyard(operator_env, "batch", "plan", str(manifest), "--max-concurrent", "2")
    assert plan.returncode == 2, plan.stderr
    errors = [line.strip() for line in plan.stderr.splitlines() if line.startswith("  line")]
    assert errors == [
        "line 3 (row b): photo 'photos/missing.jpg' is neither a readable file nor an upload id",
        "line 5 (row d): no template named 'nosuch' (have: frame)",
        "line 6 (row e): crop must be four whole numbers: x,y,width,height; "
        "cpu must be between 0.25 and 4",
        "line 7 (row a): row_id 'a' repeats line 2",
    ]
    assert "jobs: 3" in plan.stdout
    assert "default figures" in plan.stdout
    as_json = json.loads(clipyard(operator_env, "batch", "--json", "plan", str(manifest)).stdout)
    assert [e["line"] for e in as_json["errors"]] == [3, 5, 6, 7]
    assert as_json["estimate"]["jobs"] == 3
    assert as_json["estimate"]["model"] == "default"

    refused = clipyard(operator_env, "batch", "submit", str(manifest), "--budget", "5")
    assert refused.returncode == 2
    assert "4 invalid row(s)" in refused.stderr
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0

    done = clipyard(
        operator_env, "batch", "submit", str(manifest), "--budget", "5", "--skip-invalid"
    )
    assert done.returncode == 0, done.stderr
    jobs = _batch_jobs(runtime, "spring")
    assert sorted(j.row_id for j in jobs) == ["a", "c", "f"]
    assert next(j for j in jobs if j.row_id == "c").params["crop"] == [0, 0, 100, 80]
    assert next(j for j in jobs if j.row_id == "f").cpu == Decimal("0.5")


def test_submit_killed_midway_resumes_without_duplicates(
    runtime: Runtime,
    operator_env: dict[str, str],
    owner_and_upload: tuple[uuid.UUID, uuid.UUID, str],
    tmp_path: Path,
) -> None:
    pictures = photos(tmp_path / "photos", 4)
    rows = [
        {
            "row_id": f"r{i:03}",
            "template": "frame",
            "photo": str(pictures[i % 4]),
            "fake": {"seconds": 0.1},
        }
        for i in range(60)
    ]
    manifest = write_jsonl(tmp_path / "autumn.jsonl", rows)
    args = [CLIPYARD, "batch", "submit", str(manifest), "--budget", "1", "--rows-per-request", "1"]
    first = subprocess.Popen(
        args,
        env=operator_env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: len(_batch_jobs(runtime, "autumn")) >= 3, 60, "the first jobs")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    made = len(_batch_jobs(runtime, "autumn"))
    assert 3 <= made < 60, "the kill should land midway"

    again = clipyard(operator_env, "batch", "--json", "submit", str(manifest), "--budget", "1")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["created"] == 60 - made
    jobs = _batch_jobs(runtime, "autumn")
    assert sorted(j.row_id for j in jobs) == [row["row_id"] for row in rows]
    with runtime.sessions() as session:
        batches = session.scalar(select(func.count()).select_from(Batch))
        uploads = session.scalar(
            select(func.count()).select_from(Upload).where(Upload.owner_id == jobs[0].owner_id)
        )
    assert (batches, uploads) == (1, 4)


@pytest.fixture(scope="session")
def postcard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TemplateInfo]:
    """Build the small real template once per session; return its folder and info."""
    folder = tmp_path_factory.mktemp("postcard-template")
    built = build_templates(folder, names=["postcard"])
    return folder, built[0]


def test_twenty_real_composites_end_to_end(
    runtime: Runtime,
    workers: WorkerPool,
    operator_env: dict[str, str],
    postcard: tuple[Path, TemplateInfo],
    tmp_path: Path,
) -> None:
    folder, info = postcard
    load_templates(runtime.sessions, runtime.storage, folder)
    pictures = photos(tmp_path / "photos", 5)
    manifest = tmp_path / "real.csv"
    with manifest.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["row_id", "template", "photo"])
        writer.writerows([f"job-{i:02}", "postcard", str(pictures[i % 5])] for i in range(20))
    workers.start(2, queues="batch")

    submitted = clipyard(
        operator_env, "batch", "submit", str(manifest), "--budget", "2", "--max-concurrent", "2"
    )
    assert submitted.returncode == 0, submitted.stderr
    watched = clipyard(operator_env, "batch", "--json", "watch", "real", "--interval", "0.5")
    assert watched.returncode == 0, watched.stdout[-2000:] + watched.stderr
    last = json.loads(watched.stdout.splitlines()[-1])
    assert last["jobs_by_state"] == {"succeeded": 20}

    report = clipyard(operator_env, "batch", "report", "real", "--format", "csv")
    assert report.returncode == 0, report.stderr
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert [r["row_id"] for r in rows] == [f"job-{i:02}" for i in range(20)]
    assert {r["state"] for r in rows} == {"succeeded"}
    with runtime.sessions() as session:
        batch = session.scalars(select(Batch).where(Batch.name == "real")).one()
    assert sum(Decimal(r["cost_usd"]) for r in rows) == batch.spent_usd > 0
    for job in _batch_jobs(runtime, "real"):
        assert job.output_key is not None
        with av.open(str(runtime.settings.blob_dir / job.output_key)) as video:
            stream = video.streams.video[0]
            frames = sum(1 for _ in video.decode(stream))
        assert frames == info.frame_count

    plan = clipyard(operator_env, "batch", "--json", "plan", str(manifest))
    assert json.loads(plan.stdout)["estimate"]["model"] == "calibrated"


def test_login_saves_a_private_token_and_logout_revokes_it(
    runtime: Runtime, operator_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in operator_env.items() if k != "CLIPYARD_TOKEN"}
    assert clipyard(env, "batch", "list").returncode == 2  # not logged in yet
    logged = clipyard(
        env, "login", "--email", "ops@example.com", "--password", "correct horse battery"
    )
    assert logged.returncode == 0, logged.stderr
    saved = tmp_path / "config" / "clipyard" / "credentials.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text())["api_url"] == env["CLIPYARD_API_URL"]
    listed = clipyard({k: v for k, v in env.items() if k != "CLIPYARD_API_URL"}, "batch", "list")
    assert listed.returncode == 0, listed.stderr
    wrong = clipyard(env, "login", "--email", "ops@example.com", "--password", "nope-nope-nope")
    assert wrong.returncode == 2
    assert "HTTP 401" in wrong.stderr
    assert clipyard(env, "logout").returncode == 0
    assert not saved.exists()
    with runtime.sessions() as session:
        tokens = session.scalars(select(ApiToken).where(ApiToken.name.like("clipyard CLI%"))).all()
    assert [t.revoked_at is not None for t in tokens] == [True]


def test_watch_exits_5_naming_the_fix_when_the_budget_paused_the_batch(
    runtime: Runtime, operator_env: dict[str, str]
) -> None:
    """A paused batch with nothing running waits for an operator: watch says so and stops."""
    with runtime.sessions.begin() as session:
        _, upload = make_owner_upload_template(session, "paused")
        operator = session.scalars(select(User).where(User.email == "ops@example.com")).one()
        session.get_one(Upload, upload).owner_id = operator.id
    batch = create_batch(
        runtime.sessions,
        runtime.settings,
        BatchRequest(
            owner_id=operator.id,
            name="spent",
            budget_usd=Decimal("0.01"),
            max_concurrent=2,
        ),
    )
    rows = [BatchRow(f"r{i}", "paused", upload, params={"fake": {"seconds": 1}}) for i in range(2)]
    submit_rows(runtime.sessions, runtime.enqueuer, runtime.settings, batch.id, operator.id, rows)
    with runtime.sessions.begin() as session:  # no managers here: pause it as admission would
        found = session.get_one(Batch, batch.id)
        found.state, found.paused_reason = "paused", "budget_exhausted"
    watched = clipyard(operator_env, "batch", "watch", "spent", "--interval", "0.2")
    assert watched.returncode == 5, watched.stdout[-2000:] + watched.stderr
    assert "paused (budget_exhausted)" in watched.stderr
    assert "clipyard batch budget spent --set USD" in watched.stderr
