"""The export's reads, in pages: what a bundle costs per case is decided here.

- Ids come from the search (the query's meaning and the reader's visibility), a page of 500
  at a time, fetched by a task ahead of the writer (a few pages queued, never the whole set),
  so the index, the database and this process work at once.
- Cases are read in batches of BATCH ids as plain rows of the case table (attribute access
  as on the ORM object, without building one per row), with their model, version and source
  names joined in the same statement, under the catalog's visibility rule; links in one more
  query. Review trails (adjudications) are read beside them on a second connection.
Each batch is its own short transaction, as before: an export is not a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from shared import redaction
from shared.jsonutil import iso
from shared.security import Principal

BATCH = 2_000  # ids per database read: four search pages
AHEAD = 8  # search pages queued ahead of the writer (4,000 ids at most)


async def id_batches(search: Any, request: Any) -> AsyncIterator[tuple[list[str], int | None]]:
    """The ids the search finds, in batches of about BATCH, with the search's total."""
    from services.search.request import decode_cursor

    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=AHEAD)

    async def produce() -> None:
        try:
            result = await search.execute(request)
            while True:
                await queue.put(([h.id for h in result.hits], result.total))
                if not result.next_cursor:
                    break
                after = decode_cursor(result.next_cursor, request.sort)
                result = await search.execute(replace(request, after=after))
            await queue.put(None)
        except Exception as exc:  # handed to the reader, which raises it
            await queue.put(exc)

    producer = asyncio.ensure_future(produce())
    try:
        batch: list[str] = []
        total: int | None = None
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            if item is None:
                if batch or total is None:
                    yield batch, total
                return
            ids, total = item
            batch += ids
            if len(batch) >= BATCH:
                yield batch, total
                batch = []
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


def _ids_clause(column: Any, ids: list[str], dialect: str) -> Any:
    """`column IN ids`: on Postgres one array parameter (`= ANY($1)`), not BATCH expanded
    ones, whose compilation alone costs more than the rows."""
    from sqlalchemy import String, any_, bindparam
    from sqlalchemy.dialects.postgresql import ARRAY

    if dialect == "postgresql":
        return column == any_(bindparam("ids", value=ids, type_=ARRAY(String)))
    return column.in_(ids)


# The case columns an exported case shows, read as the driver gives them (no SQLAlchemy
# result processing, the bulk of a row's cost): JSON text decoded by orjson, times made the
# wire's ISO text directly.
JSON_COLUMNS = (
    "environment",
    "input",
    "prediction",
    "expected",
    "signals",
    "provenance",
    "tags",
    "writeup",
    "pii_findings",
)
TIME_COLUMNS = ("occurred_at", "captured_at", "received_at", "updated_at")
PLAIN_COLUMNS = (
    "id",
    "model_id",
    "model_version_id",
    "data_source_id",
    "confidence",
    "latency_ms",
    "external_id",
    "fingerprint",
    "content_hash",
    "group_id",
    "title",
    "summary",
    "failure_mode",
    "taxonomy_version",
    "severity",
    "impact",
    "status",
    "sensitivity",
    "team",
    "merged_into_id",
    "revision",
    "payload_sensitivity",
)
REF_COLUMNS = ("ref_model_name", "ref_version_name", "ref_source_name")


class CaseRow(dict[str, Any]):
    """A case row by column name; attributes too, for the shared redaction rule."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _json(value: Any) -> Any:
    # SQLite gives a top-level JSON number back as a number (NUMERIC affinity), as
    # shared.db's deserializer knows.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _time(value: Any) -> str | None:
    """A stored time (SQLite: naive UTC text; Postgres: an aware datetime) as the wire
    writes it (shared.jsonutil.iso of shared.db.UTCDateTime's value)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return iso(value)


async def case_page(db: Any, ids: list[str], principal: Principal) -> tuple[list[CaseRow], Any]:
    """The cases among `ids` that `principal` may see, as CaseRows, and their
    PageRelations."""
    from sqlalchemy import Text, select, type_coerce

    from services.catalog import service as catalog
    from services.catalog.models import DataSource, FailureCase, Model, ModelVersion
    from services.catalog.views import PageRelations

    case = FailureCase.__table__
    model, version, source = Model.__table__, ModelVersion.__table__, DataSource.__table__
    names = (*PLAIN_COLUMNS, *JSON_COLUMNS, *TIME_COLUMNS, *REF_COLUMNS)
    async with db.transaction() as session:
        stmt = (
            select(
                *(case.c[n] for n in PLAIN_COLUMNS),
                *(type_coerce(case.c[n], Text()) for n in (*JSON_COLUMNS, *TIME_COLUMNS)),
                model.c.name,
                version.c.version,
                source.c.name,
            )
            .select_from(
                case.outerjoin(model, model.c.id == case.c.model_id)
                .outerjoin(version, version.c.id == case.c.model_version_id)
                .outerjoin(source, source.c.id == case.c.data_source_id)
            )
            .where(
                _ids_clause(case.c.id, ids, session.bind.dialect.name),
                catalog.visible_cases_clause(principal),
            )
        )
        rows = [CaseRow(zip(names, r, strict=True)) for r in await session.execute(stmt)]
        links = await catalog.links_of(session, [r["id"] for r in rows]) if rows else []
    refs = PageRelations()
    for r in rows:
        for name in JSON_COLUMNS:
            r[name] = _json(r[name])
        for name in TIME_COLUMNS:
            r[name] = _time(r[name])
        refs.models[r["model_id"]] = r.pop("ref_model_name")
        refs.versions[r["model_version_id"]] = r.pop("ref_version_name")
        refs.sources[r["data_source_id"]] = r.pop("ref_source_name")
    for link in links:  # as catalog.page_relations renders them
        refs.links.setdefault(link.case_id, []).append(
            {"kind": link.kind, "url": link.url, "title": link.title}
        )
    return rows, refs


async def trails_page(db: Any, ids: list[str], principal: Principal) -> dict[str, Any]:
    """The review trails of `ids` as `principal` reads them (blind-read rule included)."""
    from services.annotation import service as annotations

    async with db.transaction() as session:
        return await annotations.review_trails(session, ids, principal)


def wire_row(row: CaseRow, refs: Any, viewer: Principal) -> dict[str, Any]:
    """A case row in the wire format with `_meta`, as `wire_case(case_json(case, refs,
    viewer=viewer))` renders the ORM object (the catalog's redaction rule applied the same
    way), built in one pass: an export's per-case cost. tests/sharing/test_bundle.py
    compares the two on every exported case."""
    hidden = redaction.redacted_fields(viewer, row)
    provenance, writeup = row["provenance"], row["writeup"]
    return {
        "external_id": row["external_id"],
        "title": row["title"],
        "summary": row["summary"],
        "model": {
            "name": refs.models.get(row["model_id"]),
            "version": refs.versions.get(row["model_version_id"]),
        },
        "data_source": refs.sources.get(row["data_source_id"]),
        "occurred_at": row["occurred_at"],
        "captured_at": row["captured_at"],
        "environment": None if "environment" in hidden else row["environment"],
        "input": None if "input" in hidden else row["input"],
        "prediction": None if "prediction" in hidden else row["prediction"],
        "expected": None if "expected" in hidden else row["expected"],
        "confidence": row["confidence"],
        "latency_ms": row["latency_ms"],
        "failure_mode": row["failure_mode"],
        "severity": row["severity"],
        "impact": row["impact"],
        "signals": None if "signals" in hidden else row["signals"],
        "tags": row["tags"] or [],
        "sensitivity": row["sensitivity"],
        "payload_sensitivity": row["payload_sensitivity"],
        "team": row["team"],
        "links": refs.links.get(row["id"], []),
        "writeup": _present(writeup),
        "provenance": _present(provenance),
        "fingerprint": row["fingerprint"],
        "_meta": {
            "id": row["id"],
            "revision": row["revision"],
            "status": row["status"],
            "content_hash": row["content_hash"],
            "group_id": row["group_id"],
            "merged_into_id": row["merged_into_id"],
            "taxonomy_version": row["taxonomy_version"],
            "received_at": row["received_at"],
            "updated_at": row["updated_at"],
            "redacted_fields": list(hidden),
            "pii_findings": row["pii_findings"] or [],
        },
    }


def _present(value: Any) -> Any:
    # Stored with every sub-field; exported as sent (absent sub-fields stay absent).
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
