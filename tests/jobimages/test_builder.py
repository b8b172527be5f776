"""The template builder's command: the small postcard on request, unknown names refused."""

from __future__ import annotations

import json
from pathlib import Path

from jobimages.template import read_templates
from tests.jobimages.conftest import run_cli


def test_only_builds_the_named_templates(tmp_path: Path) -> None:
    result = run_cli("build-templates", str(tmp_path), "--only", "postcard")
    assert result.code == 0, result.stderr
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["templates"] == ["postcard"]
    (postcard,) = read_templates(tmp_path)
    assert (postcard.width, postcard.height, postcard.frame_count) == (320, 240, 30)


def test_an_unknown_template_name_is_bad_input(tmp_path: Path) -> None:
    result = run_cli("build-templates", str(tmp_path), "--only", "nope")
    assert result.code == 2
    assert "no template named nope" in result.stderr
    assert not (tmp_path / "index.json").exists()
