"""Batch manifests: one row per job, as CSV or JSON Lines, checked all at once.

Every row is validated and every problem reported with its line number, so an operator
fixes a manifest in one pass instead of one error per run. Columns (CSV header, or JSON
keys): ``row_id``, ``template``, ``photo`` (a path, relative to the manifest, or the id
of an upload already made), optional ``crop`` (``x,y,width,height`` in pixels; or the
columns ``crop_x crop_y crop_width crop_height``), ``cpu``, ``memory_gb``,
``max_runtime_s``, and ``fake`` (the test stand-in's script, where the server allows it).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from taskmanager.limits import CPU, MAX_RUNTIME_S, MEMORY_GB, Bound, is_decimal_number

MAX_ROW_ID = 200
_CROP_COLUMNS = ("crop_x", "crop_y", "crop_width", "crop_height")
KNOWN_COLUMNS = frozenset(
    {
        "row_id",
        "template",
        "photo",
        "crop",
        "cpu",
        "memory_gb",
        "max_runtime_s",
        "fake",
        *_CROP_COLUMNS,
    }
)


class ManifestUnreadable(Exception):
    """The manifest cannot be read at all (missing, wrong format, no header)."""


@dataclass(frozen=True)
class ManifestRow:
    """A valid row: exactly one of ``photo_path`` and ``upload_id`` is set."""

    line: int
    row_id: str
    template: str
    photo_path: Path | None
    upload_id: str | None
    crop: tuple[int, int, int, int] | None = None
    cpu: Decimal | None = None
    memory_gb: Decimal | None = None
    max_runtime_s: int | None = None
    fake: dict[str, Any] | None = None

    def body(self, upload_id: str) -> dict[str, Any]:
        """Return the API's row body, with the photo resolved to ``upload_id``."""
        body: dict[str, Any] = {
            "row_id": self.row_id,
            "template": self.template,
            "upload_id": upload_id,
        }
        if self.crop is not None:
            x, y, width, height = self.crop
            body["crop"] = {"x": x, "y": y, "width": width, "height": height}
        for name in ("cpu", "memory_gb"):
            value = getattr(self, name)
            if value is not None:
                body[name] = str(value)
        if self.max_runtime_s is not None:
            body["max_runtime_s"] = self.max_runtime_s
        if self.fake is not None:
            body["fake"] = self.fake
        return body


@dataclass(frozen=True)
class RowError:
    """Everything wrong with one line."""

    line: int
    row_id: str | None
    reasons: list[str]

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (row {self.row_id})" if self.row_id else "")
        return f"{where}: " + "; ".join(self.reasons)


@dataclass
class Manifest:
    """The valid rows and the errors of the invalid ones, in file order."""

    path: Path
    rows: list[ManifestRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        """Tell whether every row is valid."""
        return not self.errors


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _decimal(raw: Any, limit: Bound[Decimal], reasons: list[str]) -> Decimal | None:
    if _text(raw) == "":
        return None
    try:
        value = Decimal(_text(raw))
    except InvalidOperation:
        reasons.append(f"{limit.field} {raw!r} is not a number")
        return None
    if not value.is_finite() or not limit.low <= value <= limit.high:
        reasons.append(f"{limit.field} must be between {limit.low} and {limit.high}")
        return None
    return value


def _runtime(raw: Any, reasons: list[str]) -> int | None:
    text = _text(raw)
    if text == "":
        return None
    if not is_decimal_number(text) or not MAX_RUNTIME_S.low <= int(text) <= MAX_RUNTIME_S.high:
        low, high = MAX_RUNTIME_S.low, MAX_RUNTIME_S.high
        reasons.append(f"max_runtime_s must be a whole number of seconds from {low} to {high}")
        return None
    return int(text)


def parse_crop(record: dict[str, Any], reasons: list[str]) -> tuple[int, int, int, int] | None:
    """Read a row's crop (text, list, object or four columns); append why it is bad."""
    raw = record.get("crop")
    parts: list[Any]
    if isinstance(raw, dict):
        parts = [raw.get(k) for k in ("x", "y", "width", "height")]
    elif isinstance(raw, list):
        parts = raw
    elif _text(raw):
        parts = _text(raw).replace(" ", ",").split(",")
        parts = [p for p in parts if p != ""]
    elif any(_text(record.get(c)) for c in _CROP_COLUMNS):
        parts = [record.get(c) for c in _CROP_COLUMNS]
    else:
        return None
    try:
        numbers = [int(_text(p)) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        reasons.append("crop must be four whole numbers: x,y,width,height")
        return None
    x, y, width, height = numbers
    if x < 0 or y < 0 or width <= 0 or height <= 0:
        reasons.append("crop x and y must be >= 0, width and height > 0")
        return None
    return x, y, width, height


def _photo(raw: Any, base: Path, reasons: list[str]) -> tuple[Path | None, str | None]:
    text = _text(raw)
    if not text:
        reasons.append("photo is missing")
        return None, None
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if path.is_file():
        return path, None
    try:
        return None, str(uuid.UUID(text))
    except ValueError:
        pass
    reasons.append(f"photo {text!r} is neither a readable file nor an upload id")
    return None, None


def _fake(raw: Any, reasons: list[str]) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = None
    if not isinstance(value, dict):
        reasons.append("fake must be a JSON object")
        return None
    return value


def parse_row(
    line: int, record: dict[str, Any], base: Path, templates: set[str] | None
) -> ManifestRow | RowError:
    """Check one record; return the row, or every reason it is invalid."""
    reasons: list[str] = []
    unknown = sorted(set(record) - KNOWN_COLUMNS)
    if unknown:
        reasons.append(f"unknown field(s): {', '.join(unknown)}")
    row_id = _text(record.get("row_id"))
    if not row_id:
        reasons.append("row_id is missing")
    elif len(row_id) > MAX_ROW_ID or not row_id.isprintable():
        reasons.append(f"row_id must be 1 to {MAX_ROW_ID} printable characters")
    template = _text(record.get("template"))
    if not template:
        reasons.append("template is missing")
    elif templates is not None and template not in templates:
        reasons.append(f"no template named {template!r} (have: {', '.join(sorted(templates))})")
    photo_path, upload_id = _photo(record.get("photo"), base, reasons)
    crop = parse_crop(record, reasons)
    cpu = _decimal(record.get("cpu"), CPU, reasons)
    memory = _decimal(record.get("memory_gb"), MEMORY_GB, reasons)
    runtime = _runtime(record.get("max_runtime_s"), reasons)
    fake = _fake(record.get("fake"), reasons)
    if reasons:
        return RowError(line, row_id or None, reasons)
    return ManifestRow(
        line, row_id, template, photo_path, upload_id, crop, cpu, memory, runtime, fake
    )


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(newline="", encoding="utf-8-sig") as source:
        reader = csv.DictReader(source)
        if not reader.fieldnames:
            raise ManifestUnreadable(f"{path}: empty, or no header line")
        fields = [name.strip() for name in reader.fieldnames]
        for name in ("row_id", "template", "photo"):
            if name not in fields:
                raise ManifestUnreadable(f"{path}: the header has no {name!r} column")
        reader.fieldnames = fields
        for record in reader:
            if None in record:
                yield reader.line_num, "more values than the header has columns"
                continue
            if not any(_text(v) for v in record.values()):
                continue  # a blank line
            yield reader.line_num, {k: v for k, v in record.items() if _text(v) != ""}


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding="utf-8-sig") as source:
        for number, text in enumerate(source, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield number, f"not valid JSON ({exc})"
                continue
            yield number, value if isinstance(value, dict) else "each line must be a JSON object"


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl_records(path)
    if suffix == ".csv":
        return _csv_records(path)
    with path.open(encoding="utf-8-sig") as source:
        head = source.read(256).lstrip()
    return _jsonl_records(path) if head.startswith("{") else _csv_records(path)


def read_manifest(path: Path, templates: Iterable[str] | None = None) -> Manifest:
    """Read and check every row of a CSV or JSON Lines manifest.

    ``templates`` (the server's names), when given, are checked too. Row ids must be
    unique: they make a resubmission idempotent.
    """
    if not path.is_file():
        raise ManifestUnreadable(f"{path}: no such file")
    known = set(templates) if templates is not None else None
    manifest = Manifest(path)
    first_line: dict[str, int] = {}
    try:
        for line, record in _records(path):
            if isinstance(record, str):
                manifest.errors.append(RowError(line, None, [record]))
                continue
            parsed = parse_row(line, record, path.parent, known)
            row_id = parsed.row_id
            if row_id and row_id in first_line:
                reason = f"row_id {row_id!r} repeats line {first_line[row_id]}"
                reasons = parsed.reasons if isinstance(parsed, RowError) else []
                manifest.errors.append(RowError(line, row_id, [*reasons, reason]))
                continue
            if row_id:
                first_line[row_id] = line
            if isinstance(parsed, RowError):
                manifest.errors.append(parsed)
            else:
                manifest.rows.append(parsed)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestUnreadable(f"{path}: {exc}") from exc
    if not manifest.rows and not manifest.errors:
        raise ManifestUnreadable(f"{path}: no rows")
    return manifest
