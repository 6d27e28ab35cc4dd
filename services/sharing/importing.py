"""The one import loop of public records (AVID reports, ATLAS case studies): each batch stored
as cases through the catalog's ingest, and each stored case's original kept as a submitted
annotation of the record's own taxonomy (unchanged ones are not stored again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import service as annotations
from services.annotation.schemas import validate_values
from services.catalog import service as catalog
from services.governance.redaction import service as redaction
from shared.errors import BadUserInput
from shared.security import Principal

# A summary lists this many error lines and counts the rest, so a file of thousands of bad
# records still prints a readable summary that says it is not the whole list.
MAX_LISTED_ERRORS = 20


def listed_errors(errors: list[str]) -> dict[str, Any]:
    """`errors`, the first MAX_LISTED_ERRORS of them, and `errors_left_off`: how many more."""
    return {
        "errors": errors[:MAX_LISTED_ERRORS],
        "errors_left_off": max(0, len(errors) - MAX_LISTED_ERRORS),
    }


BATCH = 500
Progress = Callable[[str], None]


async def import_records(
    session: AsyncSession,
    records: list[dict[str, Any]],
    actor: Principal,
    *,
    taxonomy: Any,
    annotator: str,
    to_case: Callable[[dict[str, Any], set[str]], dict[str, Any]],
    to_values: Callable[[dict[str, Any]], dict[str, Any]],
    record_id: Callable[[dict[str, Any]], Any],
    label: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """`to_case(record, known failure modes)` maps a record to a case, `to_values` to its
    annotation; the answer counts statuses, annotations and mapped failure modes."""
    _, modes = await catalog.taxonomy(session)
    known = {m.code for m in modes}
    # The annotation values are free text from outside: the source's redaction policy applies
    # to them as to the cases (one read of the policies for the whole import).
    redactor = await redaction.redactor_for(session)
    fields = annotations.fields_of(taxonomy)
    counts: dict[str, int] = {}
    annotated = unchanged = mapped = 0
    errors: list[str] = []
    for start in range(0, len(records), BATCH):
        batch, cases = [], []
        for record in records[start : start + BATCH]:
            try:
                case = to_case(record, known)
                # Checked before the case is stored: a refusal later would end the import.
                validate_values(taxonomy.name, fields, to_values(record), require=False)
            except BadUserInput as exc:
                counts["invalid"] = counts.get("invalid", 0) + 1
                fields_wrong = "; ".join(f"{e.path}: {e.message}" for e in exc.errors)
                errors.append(f"{record_id(record)}: {fields_wrong or exc.message}")
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # A record of the right kind (its id was checked on reading) with a part not
                # shaped as its schema says: refused on its own line, the others imported.
                counts["invalid"] = counts.get("invalid", 0) + 1
                errors.append(f"{record_id(record)}: not read as a case ({_reason(exc)})")
            else:
                cases.append(case)
                batch.append(record)
        results = await catalog.ingest_cases(session, cases, actor) if cases else []
        for record, case, result in zip(batch, cases, results, strict=True):
            counts[result.status] = counts.get(result.status, 0) + 1
            if result.status == "invalid":
                errors.append(f"{record_id(record)}: {result.errors}")
                continue
            if result.status not in ("created", "duplicate") or result.id is None:
                continue
            mapped += case["failure_mode"] is not None
            changed = await annotations.record_submitted(
                session,
                result.id,
                annotator,
                taxonomy,
                to_values(record),
                actor,
                redactor=redactor,
            )
            annotated += changed
            unchanged += not changed
        if progress:
            progress(f"{label} {min(start + BATCH, len(records))}/{len(records)}")
    return {
        "cases": counts,
        "annotations": annotated,
        "unchanged": unchanged,
        "failure_mode_mapped": mapped,
        **listed_errors(errors),
    }


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r}"
    return str(exc) or type(exc).__name__
