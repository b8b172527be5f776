"""The HTTP side of the emulator: ARM routes for container groups over HTTPS."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tests.armemulator.emulator import ArmEmulator

_PREFIX = (
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ContainerInstance/containerGroups"
)
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_PREFIX + r"/?$", re.IGNORECASE), "list"),
    ("PUT", re.compile(_PREFIX + r"/(?P<name>[^/]+)$", re.IGNORECASE), "create"),
    ("GET", re.compile(_PREFIX + r"/(?P<name>[^/]+)$", re.IGNORECASE), "get"),
    ("DELETE", re.compile(_PREFIX + r"/(?P<name>[^/]+)$", re.IGNORECASE), "delete"),
    ("POST", re.compile(_PREFIX + r"/(?P<name>[^/]+)/stop$", re.IGNORECASE), "stop"),
    (
        "GET",
        re.compile(_PREFIX + r"/(?P<name>[^/]+)/containers/(?P<container>[^/]+)/logs$", re.I),
        "logs",
    ),
    ("GET", re.compile(r"^/emulator/operations/(?P<op>[^/]+)$"), "operation"),
]


class Answer:
    """An HTTP answer: status, JSON body (or none), headers."""

    def __init__(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    """Return an ARM error answer."""
    return Answer(status, {"error": {"code": code, "message": message}}, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK pools its connections
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read counters, not access logs."""

    def _serve(self) -> None:
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = self._route(split.path, query, raw)
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        if answer.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self, path: str, query: dict[str, str], raw: bytes) -> Answer:
        emulator = self.server.emulator
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            return error(401, "AuthenticationFailed", "no bearer token")
        for method, pattern, kind in _ROUTES:
            match = pattern.match(path)
            if method != self.command or match is None:
                continue
            params = match.groupdict()
            if "sub" in params and (params["sub"], params["rg"]) != (
                emulator.subscription_id,
                emulator.resource_group,
            ):
                return error(
                    404, "ResourceGroupNotFound", f"resource group {params['rg']} not found"
                )
            emulator.count(kind)
            fault = emulator.faults.take(kind)
            if fault is not None:
                return Answer(fault.status, fault.body(), fault.headers())
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return error(400, "InvalidRequestContent", "the request body is not JSON")
            headers = {key.lower(): value for key, value in self.headers.items()}
            return emulator.handle(kind, params, query, body, headers)
        return error(404, "NotFound", f"no route for {self.command} {path}")

    do_GET = do_PUT = do_POST = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, emulator: ArmEmulator) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.emulator = emulator


def make_server(emulator: ArmEmulator) -> ThreadingHTTPServer:
    """Build the (not yet TLS-wrapped, not yet serving) server on a free port."""
    return _Server(emulator)
