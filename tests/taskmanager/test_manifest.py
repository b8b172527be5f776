"""Manifests: every bad row reported with its line, in both formats; the API client's basics."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from taskmanager.batches.manifest import ManifestUnreadable, read_manifest
from taskmanager.cli.apiclient import ApiError, Credentials, load_credentials
from taskmanager.cli.login import api_error_exit


def test_jsonl_rows_and_every_error_with_its_line(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    upload_id = "3f2c7a3e-2f7e-4a51-9c1e-0d6f3f9b2a10"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "row_id": "1",
                        "template": "frame",
                        "photo": "a.jpg",
                        "crop": {"x": 1, "y": 2, "width": 3, "height": 4},
                        "memory_gb": "2",
                    }
                ),
                "",
                "# a comment",
                json.dumps(
                    {
                        "row_id": "2",
                        "template": "frame",
                        "photo": upload_id,
                        "crop": [0, 0, 5, 5],
                        "max_runtime_s": 60,
                        "fake": {"seconds": 1},
                    }
                ),
                "{not json",
                "[1, 2]",
                json.dumps(
                    {
                        "row_id": "3",
                        "template": "frame",
                        "photo": "a.jpg",
                        "colour": "red",
                        "max_runtime_s": "0",
                    }
                ),
            ]
        )
        + "\n"
    )
    found = read_manifest(manifest, ["frame"])
    assert [(r.line, r.row_id) for r in found.rows] == [(1, "1"), (4, "2")]
    first, second = found.rows
    assert (first.photo_path, first.crop, first.memory_gb) == (photo, (1, 2, 3, 4), Decimal(2))
    assert (second.upload_id, second.max_runtime_s, second.fake) == (upload_id, 60, {"seconds": 1})
    assert second.body(upload_id)["crop"] == {"x": 0, "y": 0, "width": 5, "height": 5}
    assert [e.line for e in found.errors] == [5, 6, 7]
    assert "not valid JSON" in found.errors[0].reasons[0]
    assert found.errors[1].reasons == ["each line must be a JSON object"]
    assert found.errors[2].reasons == [
        "unknown field(s): colour",
        "max_runtime_s must be a whole number of seconds from 1 to 21600",
    ]


def test_csv_crop_columns_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "p.png").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "row_id,template,photo,crop_x,crop_y,crop_width,crop_height\n"
        "a,frame,p.png,1,2,3,4\n"
        "b,frame,p.png,1,2,3\n"
        "c,frame,p.png,1,2,3,4,extra\n"
    )
    found = read_manifest(manifest)
    assert [r.crop for r in found.rows] == [(1, 2, 3, 4)]
    assert [(e.line, e.reasons) for e in found.errors] == [
        (3, ["crop must be four whole numbers: x,y,width,height"]),
        (4, ["more values than the header has columns"]),
    ]
    (tmp_path / "bad.csv").write_text("row_id,photo\nx,y\n")
    with pytest.raises(ManifestUnreadable, match="no 'template' column"):
        read_manifest(tmp_path / "bad.csv")
    with pytest.raises(ManifestUnreadable, match="no such file"):
        read_manifest(tmp_path / "missing.csv")


def test_credentials_are_private_and_explicit_values_win(tmp_path: Path) -> None:
    path = tmp_path / "clipyard" / "credentials.json"
    Credentials("http://saved:1", "cy_saved", "id-1").save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_credentials(None, None, path) == Credentials("http://saved:1", "cy_saved", "id-1")
    assert load_credentials("http://other:2/", "cy_env", path).token == "cy_env"
    assert load_credentials("http://other:2/", None, path).api_url == "http://other:2"
    assert [
        api_error_exit(ApiError("x", status=s)).exit_code for s in (None, 503, 422, 401, 500)
    ] == [3, 3, 2, 2, 1]
