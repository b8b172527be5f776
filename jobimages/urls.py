"""Tell URLs apart by kind and keep their secrets (SAS query strings) out of every output."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

# A SAS signature may also hide in text we did not build ourselves (an SDK message, a
# traceback), so besides the query strings we know about we strip anything shaped like one.
_SIGNATURE = re.compile(r"(?i)\b(sig|signature)=[^&\s\"'<>]+")


def is_remote(url: str) -> bool:
    """Tell whether the URL is fetched over HTTP(S) rather than read from the file system."""
    return urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")


def local_path(url: str) -> Path:
    """Return the file-system path a `file://` URL or a plain path names."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file:// URLs on another host are not supported")
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url)


def redact_url(url: str) -> str:
    """Return the URL without its query string or user info, safe to print."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


class Redactor:
    """Remove the secrets of a set of URLs from any text about to be printed."""

    def __init__(self, urls: list[str] | None = None) -> None:
        self._secrets: set[str] = set()
        for url in urls or []:
            self.add(url)

    def add(self, url: str) -> None:
        """Remember the secret parts of one URL."""
        parts = urllib.parse.urlsplit(url)
        if parts.query:
            self._secrets.add(parts.query)
            # Percent-decoded forms show up in some error messages.
            self._secrets.add(urllib.parse.unquote(parts.query))
        if parts.password:
            self._secrets.add(parts.password)

    def scrub(self, text: str) -> str:
        """Return the text with every known secret and anything signature-shaped removed."""
        # Longest first, so a secret that contains another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "<redacted>")
        return _SIGNATURE.sub(r"\1=<redacted>", text)
