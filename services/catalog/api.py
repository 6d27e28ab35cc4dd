"""REST routes of the catalog: the bulk ingestion route, plain case reads, context events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.annotation import service as blind_read
from services.catalog import limits as L
from services.catalog import openapi as doc
from services.catalog import service
from services.catalog.cursor import CASES, EVENTS, decode_keyset, encode_keyset
from services.catalog.hydration import case_answers
from services.catalog.schemas import INGEST_STATUSES, CaseFilter, ContextEventKind
from services.catalog.templates import TEMPLATES, Template, template_for
from services.catalog.views import case_json, revision_json
from shared import redaction
from shared.audit import audit, entry, stage
from shared.errors import BadUserInput, FieldError, NotFound, PayloadTooLarge
from shared.security import Principal, Scope
from shared.web import (
    InsufficientScope,
    Session,
    current_principal,
    json_response,
    problem_responses,
    require,
)

router = APIRouter(prefix="/catalog/v1", tags=["catalog"])


async def read_limited_body(request: Request, limit: int = L.MAX_REQUEST_BYTES) -> bytes:
    """The body, refusing past `limit` before reading it all into memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body is larger than the limit of {limit} bytes",
            [FieldError("$", f"max_request_bytes={limit}")],
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body is larger than the limit of {limit} bytes",
                [FieldError("$", f"max_request_bytes={limit}")],
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_items(body: bytes, content_type: str) -> tuple[list[Any], list[int] | None]:
    """A JSON array, or NDJSON (one item a line) with each item's line: 1-based in the body
    as a reader counts it, blank lines included. A bad NDJSON line becomes an invalid item."""
    if "ndjson" in content_type or "jsonlines" in content_type:
        items: list[Any] = []
        lines: list[int] = []
        # Lines end at \n only (a \r\n's \r is stripped as whitespace), as the CLI and an
        # editor count them: bytes.splitlines also splits at a lone \r, which is JSON
        # whitespace inside an item, and so broke such an item in two.
        for n, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            lines.append(n)
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                # orjson's message says "line 1" (of the one line it was given): the column only.
                items.append(_BadLine(n, f"invalid JSON at column {exc.colno}: {exc.msg}"))
        return items, lines
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadUserInput("body is not valid JSON", [FieldError("$", str(exc))]) from None
    if not isinstance(value, list):
        raise BadUserInput(
            "body must be a JSON array of cases (or NDJSON)",
            [FieldError("$", f"expected an array, got {type(value).__name__}")],
        )
    return value, None


class _BadLine:
    __slots__ = ("line", "message")

    def __init__(self, line: int, message: str) -> None:
        self.line, self.message = line, message


def check_item_count(n: int) -> None:
    if n > L.MAX_ITEMS_PER_REQUEST:
        raise PayloadTooLarge(
            f"{n} items is more than the limit of {L.MAX_ITEMS_PER_REQUEST} per request",
            [FieldError("$", f"max_items_per_request={L.MAX_ITEMS_PER_REQUEST}")],
        )


@router.post(
    "/cases:bulk",
    summary="Ingest captured cases (JSON array or NDJSON)",
    openapi_extra=doc.BULK_REQUEST,
    responses={
        200: {
            "model": doc.BulkAnswer,
            "content": {"application/json": {"example": doc.BULK_ANSWER_EXAMPLE}},
        },
        **problem_responses(400, 403, 413),
    },
)
async def bulk_ingest(
    request: Request,
    session: Session,
    principal: Principal = Depends(require(Scope.CASES_INGEST)),
) -> Response:
    body = await read_limited_body(request)
    items, lines = parse_items(body, request.headers.get("content-type", ""))
    check_item_count(len(items))
    bad = {i: it for i, it in enumerate(items) if isinstance(it, _BadLine)}
    good_index = [i for i in range(len(items)) if i not in bad]
    results = await service.ingest_cases(session, [items[i] for i in good_index], principal)
    out: list[dict[str, Any]] = [{}] * len(items)
    for r, original in zip(results, good_index, strict=True):
        # ItemResult as JSON without None fields, built by hand: a model_dump per item
        # would cost as much as a tenth of the item's whole validation.
        item: dict[str, Any] = {"index": original, "status": r.status}
        if r.id is not None:
            item["id"] = r.id
        if r.errors is not None:
            item["errors"] = r.errors
        out[original] = item
    for i, b in bad.items():
        out[i] = {
            "index": i,
            "status": "invalid",
            "errors": [{"path": "$", "message": f"line {b.line}: {b.message}"}],
        }
    if lines is not None:
        # An NDJSON item is named by its line too: its index skips the blank lines.
        for r, n in zip(out, lines, strict=True):
            r["line"] = n
    counts = dict.fromkeys(INGEST_STATUSES, 0)
    for r in out:
        counts[r["status"]] += 1
    return json_response({"results": out, "counts": counts})


@router.get(
    "/cases/{case_id}",
    summary="Read a case (as it was at `asOf`, if given)",
    responses={
        200: {
            "model": doc.CaseOut,
            "content": {"application/json": {"example": doc.CASE_OUT_EXAMPLE}},
        },
        **problem_responses(400, 403, 404),
    },
)
async def get_case(
    case_id: str,
    session: Session,
    as_of: datetime | None = Query(default=None, alias="asOf"),
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    # Session commits before the response is sent: the read is stored first.
    read = entry(principal, "case.read", f"case:{case_id}", read=True)
    if as_of is not None:
        body = await service.case_as_json(session, case_id, principal, as_of)
        await blind_read.hide_blinded_views(session, [body], principal)  # as GraphQL answers
        stage(session, read)
        return json_response(body)
    # The case, its relations, its blind-read flag and (on SQLite) its entry: one statement.
    found = await case_answers(session, [case_id], principal, read_entry=read)
    if not found:
        raise NotFound(f"case {case_id} not found")
    return json_response(found[case_id])


@router.get("/cases/{case_id}/revisions")
async def case_history(
    case_id: str,
    session: Session,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    """The case's history, oldest first: who (id and name), when, why, what changed."""
    revisions = await service.case_history(session, case_id, principal)
    audit(session, principal, "case.history", f"case:{case_id}", read=True)
    views = [revision_json(r) for r in revisions]
    if await blind_read.curated_blinded(session, [case_id], principal):  # as GraphQL's
        views = [{**v, "changes": redaction.without_blinded(v["changes"])} for v in views]
    return json_response({"revisions": views})


@router.get(
    "/cases",
    summary="List visible cases, newest first",
    responses={200: {"model": doc.CasePage}, **problem_responses(400, 403)},
)
async def list_cases(
    session: Session,
    first: int = Query(default=50, ge=1, le=L.MAX_PAGE_SIZE),
    after: str | None = None,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    """A plain listing (also the baseline the GraphQL benchmark compares against)."""
    cases = await service.list_cases(
        session, CaseFilter(), principal, first + 1, decode_keyset(CASES, after) if after else None
    )
    page = cases[:first]
    refs = await service.page_relations(session, page)
    audit(session, principal, "cases.list", None, details={"ids": [c.id for c in page]}, read=True)
    views = [case_json(c, refs, viewer=principal) for c in page]
    await blind_read.hide_blinded_views(session, views, principal)
    return json_response(
        {
            "cases": views,
            "next": encode_keyset(CASES, page[-1].occurred_at, page[-1].id)
            if len(cases) > first
            else None,
        }
    )


@router.get("/writeup-templates")
async def writeup_templates(
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    """Every family's write-up template (the sections offered when a case is curated)."""
    return json_response([_template_json(t) for t in TEMPLATES.values()])


@router.get("/writeup-templates/{failure_mode}")
async def writeup_template(
    failure_mode: str,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    """The template of a failure mode's family: `safety.hallucination` gives `safety`'s."""
    return json_response(_template_json(template_for(failure_mode)))


def _template_json(t: Template) -> dict[str, Any]:
    return {
        "family": t.family,
        "title": t.title,
        "summary_outline": list(t.summary_outline),
        "prompts": t.prompts,
        "evidence": list(t.evidence),
        "markdown": t.as_markdown(),
    }


@router.get("/cases:export")
async def export_cases(
    request: Request,
    q: str = Query("", description="Query language: services/search/QUERY.md"),
    format: str = Query("ndjson", description="ndjson or csv"),
    principal: Principal = Depends(require(Scope.EXPORTS_CREATE)),
) -> Response:
    """Every case the query finds that the caller may see, streamed in the wire format (with
    read-only facts under `_meta`, which the bulk route ignores): export -> import round-trips.
    X-Total-Count is the search's total (a lower bound past 10,000 when it ends with +)."""
    from fastapi.responses import StreamingResponse

    from services.catalog.export import media_type, start_export

    export = await start_export(
        request.app.state.search, request.app.state.db, principal, q, format
    )
    total = f"{export.total}{'+' if export.total_is_lower_bound else ''}"
    return StreamingResponse(
        export.chunks,
        media_type=media_type(format),
        headers={
            "X-Total-Count": total,
            "Content-Disposition": f'attachment; filename="cases.{format}"',
        },
    )


async def may_record_events(principal: Principal = Depends(current_principal)) -> Principal:
    """Recording a context event takes either ingest (a producer's client) or write (a
    curator): producers post deploys and drift alerts beside their cases, people add the
    rest."""
    if not (principal.has(Scope.CASES_INGEST) or principal.has(Scope.CASES_WRITE)):
        raise InsufficientScope([f"{Scope.CASES_INGEST} or {Scope.CASES_WRITE}"])
    return principal


@router.post("/events")
async def record_events(
    request: Request,
    session: Session,
    principal: Principal = Depends(may_record_events),
) -> Response:
    """Context events (deploys, feature changes, drift alerts, environment shifts): one JSON
    object or a JSON array of them. Answered like the bulk case route: one result per item
    (created | duplicate | invalid with its errors) and the counts; the valid ones are stored
    even when others are not."""
    body = await read_limited_body(request)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadUserInput("body is not valid JSON", [FieldError("$", str(exc))]) from None
    items = value if isinstance(value, list) else [value]
    if len(items) > service.MAX_EVENTS_PER_REQUEST:
        raise PayloadTooLarge(
            f"{len(items)} events is more than the limit of {service.MAX_EVENTS_PER_REQUEST}",
            [FieldError("$", f"max_events_per_request={service.MAX_EVENTS_PER_REQUEST}")],
        )
    results = await service.record_events(session, items, principal)
    counts = dict.fromkeys(service.EVENT_STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    return json_response({"results": [r.as_json() for r in results], "counts": counts})


@router.get("/events")
async def list_events(
    session: Session,
    kind: list[ContextEventKind] | None = Query(default=None),
    model: str | None = None,
    version: str | None = None,
    data_source: str | None = None,
    first: int = Query(default=50, ge=1, le=L.MAX_PAGE_SIZE),
    after: str | None = None,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    """Context events, newest first; a scope filter also lists events whose scope leaves that
    part open (an event for every model concerns each model)."""
    rows = await service.list_events(
        session,
        kinds=kind,
        model=model,
        model_version=version,
        data_source=data_source,
        first=first + 1,
        after=decode_keyset(EVENTS, after) if after else None,
    )
    page = rows[:first]
    return json_response(
        {
            "events": [service.event_json(e) for e in page],
            "next": encode_keyset(EVENTS, page[-1].occurred_at, page[-1].id)
            if len(rows) > first
            else None,
        }
    )


async def may_read_capture_policies(principal: Principal = Depends(current_principal)) -> Principal:
    """A producer's client (ingest) reads the policy it is held to; a reader (cases:read) may
    see what the team agreed."""
    if not (principal.has(Scope.CASES_INGEST) or principal.has(Scope.CASES_READ)):
        raise InsufficientScope([f"{Scope.CASES_INGEST} or {Scope.CASES_READ}"])
    return principal


@router.get("/capture-policies", responses=problem_responses(400, 403))
async def capture_policies(
    session: Session,
    model: str | None = Query(default=None, max_length=200),
    data_source: str | None = Query(default=None, max_length=200),
    principal: Principal = Depends(may_read_capture_policies),
) -> Response:
    """The current version of each capture policy matching `model` and `data_source` (both
    optional): `{"policies": [...]}`, empty when none applies. failcat-client reads its
    (model, data source)'s here and evaluates it before sending (CAPTURE.md)."""
    rows = await service.list_capture_policies(
        session,
        model.strip() if model else None,
        data_source.strip() if data_source else None,
    )
    return json_response({"policies": [service.capture_policy_json(r) for r in rows]})
