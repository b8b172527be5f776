"""infra/healthcheck.py: the containers' health checks, against a real HTTP server."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.infra.infrafiles import INFRA

WORKER = "taskmanager.supervision.worker"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clipyard_healthcheck", INFRA / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_check_wants_a_2xx(server: str) -> None:
    assert healthcheck.main(["http", f"{server}/healthz"]) == 0
    assert healthcheck.main(["http", f"{server}/readyz"]) == 1


def test_http_check_fails_when_nothing_listens(server: str) -> None:
    assert healthcheck.main(["http", "http://127.0.0.1:9/healthz"]) == 1


def _fake_proc(root: Path, commands: dict[int, list[str]]) -> Path:
    for pid, argv in commands.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (root / "self").mkdir(parents=True)
    return root


def test_counts_task_managers_by_their_command_line(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {
            1: ["/usr/local/bin/python", "/usr/local/bin/clipyard", "worker"],
            7: [
                "/usr/local/bin/python",
                "-m",
                "taskmanager.supervision.worker",
                "--queues",
                "batch",
            ],
            9: [
                "/usr/local/bin/python",
                "-m",
                "taskmanager.supervision.worker",
                "--queues",
                "batch",
            ],
            12: ["grep", "taskmanager.supervision.worker.py"],
        },
    )
    assert healthcheck.count_managers(proc) == 2
    assert healthcheck.count_managers(_fake_proc(tmp_path / "empty", {})) == 0


def test_bad_usage_exits_2() -> None:
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["tcp", "x"]) == 2
