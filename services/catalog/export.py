"""Exports that re-import: cases in the wire format, as NDJSON or CSV, streamed in pages.

Each exported case is what the bulk route takes (DESIGN.md "Wire format of a captured case")
plus the read-only facts the catalog added (id, revision, status, content hash ...) under
`_meta`, which the bulk route ignores. So `export | ingest` into another instance stores the
same captured facts (the same content hash) and the same curated fields; status and history
are the target's own.

The query is resolved to ids by the search service (with the reader's visibility) one page at
a time; each page of cases is loaded by the catalog service (visibility again) in its own
short transaction, so neither side ever holds the whole set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from services.governance.redaction.service import mask_text
from shared.audit import audit
from shared.errors import BadUserInput, FieldError
from shared.security import Principal

META_KEY = "_meta"
FORMATS = ("ndjson", "csv")
PAGE_SIZE = 500

# The wire format's keys, in DESIGN.md's order.
WIRE_KEYS = (
    "external_id",
    "title",
    "summary",
    "model",
    "data_source",
    "occurred_at",
    "captured_at",
    "environment",
    "input",
    "prediction",
    "expected",
    "confidence",
    "latency_ms",
    "failure_mode",
    "severity",
    "impact",
    "signals",
    "tags",
    "sensitivity",
    "payload_sensitivity",
    "team",
    "links",
    "writeup",
    "provenance",
    "fingerprint",
)
META_KEYS = (
    "id",
    "revision",
    "status",
    "content_hash",
    "group_id",
    "merged_into_id",
    "taxonomy_version",
    "received_at",
    "updated_at",
    "redacted_fields",  # payload fields the reader's clearance did not cover (null here)
    "pii_findings",  # kinds and paths ingest redacted
)

# CSV: one column per scalar, JSON text for structured values, model split in two.
JSON_COLUMNS = frozenset(
    {
        "environment",
        "input",
        "prediction",
        "expected",
        "signals",
        "tags",
        "links",
        "writeup",
        "provenance",
    }
)
NUMBER_COLUMNS = frozenset({"confidence", "latency_ms"})
# Parquet (CLI only, the `parquet` extra): a column per wire key plus _meta; tags stay a list
# of strings, every other structured value (model and _meta too) is JSON text, so any shape
# of input/prediction fits one column type and `failcat ingest` parses it back.
PARQUET_COLUMNS = (*WIRE_KEYS, META_KEY)
PARQUET_JSON_COLUMNS = (JSON_COLUMNS - {"tags"}) | {"model", META_KEY}
CSV_COLUMNS = (
    *(k for k in WIRE_KEYS if k != "model"),
    "model.name",
    "model.version",
    *(f"{META_KEY}.{k}" for k in META_KEYS),
)


def wire_case(view: dict[str, Any]) -> dict[str, Any]:
    """A case as the REST views render it -> the wire format with `_meta`."""
    out = {k: view.get(k) for k in WIRE_KEYS}
    for key in ("provenance", "writeup"):
        # Stored with every sub-field; exported as sent (absent sub-fields stay absent).
        if isinstance(out[key], dict):
            out[key] = {k: v for k, v in out[key].items() if v is not None}
    model = view.get("model") or {}
    out["model"] = {"name": model.get("name"), "version": model.get("version")}
    out[META_KEY] = {k: view.get(k) for k in META_KEYS}
    return out


def csv_row(case: dict[str, Any]) -> list[str]:
    def cell(name: str) -> str:
        if name.startswith(META_KEY + "."):
            value = case[META_KEY].get(name.split(".", 1)[1])
        elif name.startswith("model."):
            value = case["model"].get(name.split(".", 1)[1])
        else:
            value = case.get(name)
        if value is None:
            return ""
        if name in JSON_COLUMNS or isinstance(value, list | dict):  # _meta's lists too
            return orjson.dumps(value).decode()
        return str(value)

    return [cell(name) for name in CSV_COLUMNS]


def row_to_case(row: dict[str, str | None]) -> dict[str, Any]:
    """A CSV record (header = CSV_COLUMNS, any order, unknown columns refused) -> wire format.

    Raises ValueError naming the column, for the CLI to report with the line."""
    unknown = [c for c in row if c is not None and c not in CSV_COLUMNS]
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown column")
    case: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for name, text in row.items():
        if name is None or name.startswith(META_KEY + ".") or text in (None, ""):
            continue
        value: Any = text
        if name in JSON_COLUMNS:
            try:
                value = orjson.loads(text)  # type: ignore[arg-type]
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{name}: invalid JSON at column {exc.colno}: {exc.msg}") from None
        elif name in NUMBER_COLUMNS:
            try:
                value = float(text)  # type: ignore[arg-type]
            except ValueError:
                raise ValueError(f"{name}: not a number: {text!r}") from None
        if name.startswith("model."):
            model[name.split(".", 1)[1]] = value
        else:
            case[name] = value
    if model:
        case["model"] = model
    return case


def csv_line(values: list[str] | tuple[str, ...]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode()


def encode(case: dict[str, Any], fmt: str) -> bytes:
    return orjson.dumps(case) + b"\n" if fmt == "ndjson" else csv_line(csv_row(case))


@dataclass
class Export:
    """A started export: the total the search reported, and the stream to send."""

    total: int
    total_is_lower_bound: bool
    chunks: AsyncIterator[bytes]


def media_type(fmt: str) -> str:
    return "application/x-ndjson" if fmt == "ndjson" else "text/csv; charset=utf-8"


async def start_export(
    search: Any,
    db: Any,
    principal: Principal,
    query: str,
    fmt: str,
    progress: Callable[[int, int], None] | None = None,
    page_size: int = PAGE_SIZE,
) -> Export:
    """Validate the query and run its first page; the rest is read as the stream is consumed.

    `search` is the SearchService and `db` the Database. A bad query raises here, before the
    first byte, so it is a 400 and not a broken stream."""
    if fmt not in FORMATS:
        raise BadUserInput(
            "unknown export format", [FieldError("format", f"one of {', '.join(FORMATS)}")]
        )
    request = replace(
        search.build_request(principal, query, first=page_size, sort="occurred_at"),
        highlight=False,
    )
    first = await search.execute(request)
    chunks = _stream(search, db, principal, request, first, fmt, progress, query)
    return Export(first.total, first.total_is_lower_bound, chunks)


async def _stream(
    search: Any,
    db: Any,
    principal: Principal,
    request: Any,
    result: Any,
    fmt: str,
    progress: Callable[[int, int], None] | None,
    query: str = "",
) -> AsyncIterator[bytes]:
    from services.catalog import service as catalog
    from services.catalog.views import case_json
    from services.search.request import decode_cursor

    if fmt == "csv":
        yield csv_line(CSV_COLUMNS)
    done = 0
    while True:
        ids = [h.id for h in result.hits]
        # A short transaction per page: a long export holds no connection or snapshot.
        async with db.transaction() as session:
            cases = await catalog.get_cases(session, ids, principal)
            refs = await catalog.page_relations(session, cases)
            # Each page's entry commits with its transaction, before its bytes are sent.
            audit(
                session,
                principal,
                "cases.export",
                None,
                details={
                    "query": mask_text(query) if query else query,
                    "format": fmt,
                    "ids": [c.id for c in cases],
                },
                read=True,
            )
        by_id = {c.id: c for c in cases}
        # Search order (occurred_at, id); a case deleted since it was indexed is skipped.
        chunk = [
            encode(wire_case(case_json(by_id[i], refs, viewer=principal)), fmt)
            for i in ids
            if i in by_id
        ]
        done += len(chunk)
        if chunk:
            yield b"".join(chunk)
        if progress:
            progress(done, result.total)
        if not result.next_cursor:
            return
        after = decode_cursor(result.next_cursor, request.sort)
        result = await search.execute(replace(request, after=after))
