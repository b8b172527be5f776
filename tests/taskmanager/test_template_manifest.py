"""The domain reads template folders without the compositor, and agrees with its schema.

``taskmanager.templates`` checks metadata with a pydantic model so the API installs
without jsonschema; ``jobimages/schemas/template-v1.json`` stays the format's contract.
These tests hold the two to the same verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from jobimages.builder import build_templates
from jobimages.template import read_templates as read_with_schema
from jobimages.template import template_schema
from taskmanager.templates import InvalidTemplateFolder, read_template, read_templates


@pytest.fixture(scope="module")
def postcard_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the small real template once for this module."""
    folder = tmp_path_factory.mktemp("postcard")
    build_templates(folder, names=["postcard"])
    return folder


def _metadata(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "postcard.json").read_text())
    return document


def test_a_built_folder_reads_the_same_in_both(postcard_folder: Path) -> None:
    (ours,) = read_templates(postcard_folder)
    (theirs,) = read_with_schema(postcard_folder)
    manifest = ours.manifest
    assert (manifest.name, manifest.title) == (theirs.name, theirs.title)
    assert (manifest.width, manifest.height) == (theirs.width, theirs.height)
    assert manifest.fps_value == pytest.approx(float(theirs.fps))
    assert manifest.frame_count == theirs.frame_count
    assert manifest.aspect == pytest.approx(theirs.aspect)
    assert ours.path(manifest.files.video) == theirs.video
    assert ours.path(manifest.files.track) == theirs.track
    assert ours.path(manifest.files.poster) == theirs.poster


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": "something.else"}, "format"),
        ({"version": 2}, "version"),
        ({"name": "Has Capitals"}, "name"),
        ({"width": 8}, "width"),
        ({"fps": "25"}, "fps"),
        ({"frame_count": 0}, "frame_count"),
        ({"duration_s": 0}, "duration_s"),
        ({"has_audio": "no"}, "has_audio"),
        ({"unexpected": 1}, "unexpected"),
        ({"files": {"video": "v.mp4"}}, "files"),
    ],
)
def test_both_refuse_the_same_bad_metadata(
    postcard_folder: Path, tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    document = _metadata(postcard_folder) | change
    path = tmp_path / "postcard.json"
    path.write_text(json.dumps(document))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, template_schema())
    with pytest.raises(InvalidTemplateFolder, match=r"postcard\.json") as refused:
        read_template(path)
    assert reason in str(refused.value)


def test_a_missing_or_malformed_index_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidTemplateFolder, match=r"index\.json"):
        read_templates(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"templates": "postcard"}))
    with pytest.raises(InvalidTemplateFolder, match="list of names"):
        read_templates(tmp_path)
