"""Templates: the loader (idempotent), the CLI commands and the listing."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from jobimages.template import TemplateInfo
from taskmanager.cli import main
from taskmanager.settings import Settings
from taskmanager.templates import load_templates
from tests.backend.conftest import Identity, png_bytes
from tests.taskmanager.conftest import settings_env


def _template_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "video.mp4").write_bytes(b"\0" * 100)
    (folder / "track.json").write_text("{}")
    (folder / "poster.png").write_bytes(png_bytes(16, 9))
    info = TemplateInfo(
        name="beach",
        title="Beach",
        width=1280,
        height=720,
        fps=Fraction(25),
        frame_count=125,
        duration_s=5.0,
        aspect=1.5,
        has_audio=False,
        video=folder / "video.mp4",
        track=folder / "track.json",
        poster=folder / "poster.png",
    )
    (folder / "beach.json").write_text(json.dumps(info.to_json()))
    (folder / "index.json").write_text(json.dumps({"templates": ["beach"]}))
    return folder


def test_load_is_idempotent_and_listed(
    app: Flask, client: FlaskClient, alice: Identity, tmp_path: Path
) -> None:
    services = app.extensions["clipyard"]
    folder = _template_folder(tmp_path / "tpl")
    first = load_templates(services.sessions, services.storage, folder)
    assert [(t.name, t.created, t.files_uploaded) for t in first] == [("beach", True, 3)]
    again = load_templates(services.sessions, services.storage, folder)
    assert [(t.created, t.files_uploaded) for t in again] == [(False, 0)]
    listed = client.get("/api/v1/templates", headers=alice.headers).json["items"]
    assert listed == [
        {
            "name": "beach",
            "title": "Beach",
            "duration_s": 5.0,
            "fps": 25.0,
            "width": 1280,
            "height": 720,
            "placement_aspect": 1.5,
            "poster_url": "/api/v1/templates/beach/poster",
            "preview_url": "/api/v1/templates/beach/video",
        }
    ]
    poster = client.get("/api/v1/templates/beach/poster", headers=alice.headers)
    assert poster.status_code == 200
    assert poster.mimetype == "image/png"
    assert poster.data.startswith(b"\x89PNG")
    assert client.get("/api/v1/templates/nope/poster", headers=alice.headers).status_code == 404
    # The preview is the template's own video, seekable like a result.
    video = client.get(
        "/api/v1/templates/beach/video", headers={**alice.headers, "Range": "bytes=0-9"}
    )
    assert (video.status_code, video.mimetype, video.data) == (206, "video/mp4", b"\0" * 10)
    assert client.get("/api/v1/templates/nope/video", headers=alice.headers).status_code == 404
    assert client.get("/api/v1/templates/beach/video").status_code == 401


def test_cli_creates_operator_and_loads_templates(
    app: Flask, client: FlaskClient, api_settings: Settings, tmp_path: Path, monkeypatch: object
) -> None:
    env = settings_env(api_settings)
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["user", "create", "boss@example.com", "--operator", "--token", "cli"],
        env={**env, "CLIPYARD_NEW_USER_PASSWORD": "a long password"},
    )
    assert created.exit_code == 0, created.output
    token = created.output.split("token: ")[1].strip()
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json["user"]["role"] == "operator"
    duplicate = runner.invoke(
        main, ["user", "create", "boss@example.com", "--password", "a long password"], env=env
    )
    assert duplicate.exit_code == 2
    assert "already exists" in duplicate.output
    demoted = runner.invoke(main, ["user", "set-role", "boss@example.com", "user"], env=env)
    assert demoted.exit_code == 0, demoted.output
    folder = _template_folder(tmp_path / "tpl")
    loaded = runner.invoke(main, ["templates", "load", str(folder)], env=env)
    assert loaded.exit_code == 0, loaded.output
    assert "beach: created, 3 files uploaded" in loaded.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(main, ["templates", "load", str(empty)], env=env).exit_code == 2
