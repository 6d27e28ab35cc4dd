"""REST routes of the safeguards: the suite export (JSONL, streamed), runs and the gate."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from services.catalog.api import read_limited_body
from services.safeguards import gate, service
from services.safeguards.schemas import RunIn
from shared.errors import BadUserInput, validation_errors
from shared.security import Principal, Scope
from shared.web import Session, json_response, require

router = APIRouter(prefix="/safeguards/v1", tags=["safeguards"])

# A full suite's outcomes (MAX_OUTCOMES, each with a small prediction) do not fit the 1 MiB of
# a GraphQL request: the pytest plugin sends such a run here.
MAX_RUN_BYTES = 64 * 1024 * 1024


@router.get("/suites/{name}/{version}.jsonl")
async def export_suite(
    request: Request,
    name: str,
    version: str,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> StreamingResponse:
    """One line per case the caller may see: input, expected, case id, failure mode, severity."""
    snapshot, lines = await service.export_suite(
        request.app.state.db, name, service.parse_suite_version(version), principal
    )
    filename = f"{snapshot.name}-{snapshot.version}.jsonl"  # names are [A-Za-z0-9._-]
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Failcat-Suite-Version": str(snapshot.version),
        },
    )


@router.post("/runs")
async def record_run(
    request: Request,
    session: Session,
    principal: Principal = Depends(require(Scope.EVALS_WRITE, Scope.CASES_READ)),
) -> Response:
    """The body of `recordEvaluationRun` in snake_case (what a CI job posts)."""
    from pydantic import ValidationError

    body = await read_limited_body(request, MAX_RUN_BYTES)
    try:
        data = RunIn.model_validate_json(body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise BadUserInput(f"invalid run: {errors[0].message}", errors[:100]) from None
    run = await service.record_run(session, data, principal)
    proposals = await service.proposals_of(session, run)
    return json_response(
        {
            "id": run.id,
            "total": run.total,
            "passed": run.passed,
            "failed": run.failed,
            "errored": run.errored,
            "not_run": run.not_run,
            "proposals": [{"id": p.id, "group_id": p.group_id} for p in proposals],
        },
        201,
    )


@router.get("/gate")
async def release_gate(
    session: Session,
    model: str,
    version: str,
    principal: Principal = Depends(require(Scope.CASES_READ)),
) -> Response:
    """The gate with the default policy; a CI job with its own policy uses `failcat gate`."""
    result = await gate.release_gate(session, model, version, gate.parse_policy(None), principal)
    return json_response(result.as_json())
