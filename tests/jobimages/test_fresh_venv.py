"""The Dockerfile's install steps, repeated in a fresh virtual environment.

Docker is not available here, so this proves the `jobimage` extra alone is enough: the
CLI builds a template and composites into it without Flask or the rest of the server.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def test_jobimage_extra_alone_runs_the_cli(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["jobimage"]
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *extra], check=True, timeout=900)
    # A copy, so the install cannot lean on the working tree (the image deletes its source).
    source = tmp_path / "src"
    source.mkdir()
    (source / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    subprocess.run(["cp", "-r", str(REPO / "jobimages"), str(source / "jobimages")], check=True)
    for readme in REPO.glob("README*"):
        (source / readme.name).write_bytes(readme.read_bytes())
    subprocess.run([*pip, "--no-deps", str(source)], check=True, timeout=600)
    subprocess.run(["rm", "-rf", str(source)], check=True)

    cli = env_dir / "bin" / "clipyard-composite"
    probe = subprocess.run(
        [str(python), "-c", "import flask"], capture_output=True, check=False, cwd=tmp_path
    )
    assert probe.returncode != 0, "the job image must not carry the server's dependencies"
    templates = tmp_path / "templates"
    built = subprocess.run(
        [str(cli), "build-templates", str(templates), "--only", "frame"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    photo = tmp_path / "photo.png"
    Image.new("RGB", (400, 300), (0, 128, 255)).save(photo)
    ran = subprocess.run(
        [
            str(cli),
            "run",
            "--template-video",
            str(templates / "frame.mp4"),
            "--track",
            str(templates / "frame.track.json"),
            "--image",
            str(photo),
            "--output",
            str(tmp_path / "out.mp4"),
            "--preset",
            "ultrafast",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert '"event":"done"' in ran.stdout.splitlines()[-1]
    assert sys.executable != str(python)
