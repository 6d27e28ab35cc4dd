"""`failcat import aiid DIR`: the AI Incident Database's incidents as cases, its CSETv1 and GMF
taxonomies as they are, CSETv1's per-annotator classifications as submitted annotations and its
final classifications as adjudicated values. Idempotent: a second run stores nothing new.

DIR holds the files by their published names (aiid_incidents.jsonl, aiid_taxa.jsonl,
aiid_classifications_CSETv1.jsonl, aiid_classifications_CSETv1_Annotator-N.jsonl).

Cases: data_source `aiid`, external_id `AIID-<incident id>`, the title, the description as
summary, the date as occurred_at. AIID names the parties, not the model: every case gets the
placeholder model PLACEHOLDER_MODEL (`aiid-unnamed-system`, version `unknown`), and the
alleged deployer and developer go to its environment.

The classification files are spreadsheet exports (every value a string): each is converted to
the field's type (a multi-enum's values matched against its permitted values, since some
contain commas); a value the taxonomy does not permit is left out and counted, never guessed.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.annotation import service
from services.annotation.schemas import FieldType, TaxonomyField
from services.annotation.search_state import requeue
from services.catalog import service as catalog
from services.catalog.limits import MAX_ENV_VALUE
from services.governance.redaction import service as redaction
from shared.audit import audit
from shared.errors import BadUserInput
from shared.security import Principal

PLACEHOLDER_MODEL = {"name": "aiid-unnamed-system", "version": "unknown"}
DATA_SOURCE = "aiid"
TAXONOMIES = ("CSETv1", "GMF")
ADJUDICATED = "CSETv1"
ANNOTATOR_FILES = re.compile(r"^aiid_classifications_(CSETv1_Annotator-\d+)\.jsonl$")
BATCH = 500

_TYPES = {
    "enum": FieldType.ENUM,
    "multi": FieldType.MULTI_ENUM,
    "bool": FieldType.BOOL,
    "int": FieldType.INT,
    "float": FieldType.FLOAT,
    "string": FieldType.STRING,
    "long_string": FieldType.STRING,
    "date": FieldType.DATE,
    "object-list": FieldType.OBJECT_LIST,
}


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Each line's object; a line that is not one stops the import naming file and line
    (the import is one transaction: nothing is stored)."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadUserInput(
                    f"{path}:{number}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at column "
                    f"{len(raw[: exc.start].decode('utf-8', 'replace')) + 1} (save the file as "
                    "UTF-8)"
                ) from None
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadUserInput(
                    f"{path}:{number}: not JSON: {exc.msg} at column {exc.colno}"
                ) from None
            if not isinstance(record, dict):
                raise BadUserInput(f"{path}:{number}: not a JSON object")
            yield record


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def taxonomy_fields(field_list: list[dict[str, Any]]) -> list[TaxonomyField]:
    """AIID field definitions as failcat's. A repeated short name gets " (2)", as the
    classification exports key the second "AI System"."""
    out: list[TaxonomyField] = []
    seen: dict[str, int] = {}
    for f in field_list:
        name = f["short_name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        permitted = [str(v) for v in f.get("permitted_values") or []]
        display = f.get("display_type", "string")
        if display == "list":
            kind = FieldType.MULTI_ENUM if permitted else FieldType.LIST
        else:
            kind = _TYPES.get(display, FieldType.STRING)
        out.append(
            TaxonomyField(
                name=name,
                number=f.get("field_number"),
                type=kind,
                permitted_values=permitted,
                required=_flag(f.get("required")),
                description=f.get("short_description") or f.get("long_name") or "",
                subfields=taxonomy_fields(f.get("subfields") or []),
            )
        )
    return out


def _split_permitted(text: str, permitted: list[str]) -> list[str] | None:
    """ "a, b, c" into permitted values, rejoining pieces of values that contain ", "."""
    allowed = set(permitted)
    out, pending = [], ""
    for piece in text.split(", "):
        pending = f"{pending}, {piece}" if pending else piece
        if pending.strip() in allowed:
            out.append(pending.strip())
            pending = ""
    return out if not pending else None


def convert(f: TaxonomyField, raw: Any) -> tuple[Any, bool]:
    """A spreadsheet string as the field's value: (value or None, whether it was refused)."""
    if not isinstance(raw, str):
        return raw, False
    text = raw.strip()
    if not text:
        return None, False
    t = f.type
    if t == FieldType.ENUM:
        return (
            (text, False) if not f.permitted_values or text in f.permitted_values else (None, True)
        )
    if t == FieldType.MULTI_ENUM:
        values = _split_permitted(text, f.permitted_values)
        return (values, False) if values is not None else (None, True)
    if t == FieldType.LIST:
        return [v.strip() for v in text.split(",") if v.strip()], False
    if t == FieldType.BOOL:
        lowered = text.lower()
        if lowered in ("true", "yes"):
            return True, False
        return (False, False) if lowered in ("false", "no") else (None, True)
    if t == FieldType.INT:
        return (int(text), False) if re.fullmatch(r"-?\d+", text) else (None, True)
    if t == FieldType.FLOAT:
        try:
            return float(text), False
        except ValueError:
            return None, True
    if t == FieldType.OBJECT_LIST:
        # The export flattens the objects to their first subfield's values.
        key = f.subfields[0].name if f.subfields else "value"
        return [{key: v.strip()} for v in text.split(",") if v.strip()], False
    return text, False


def classification_values(
    fields: dict[str, TaxonomyField], record: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    values, refused = {}, []
    for key, raw in record.items():
        f = fields.get(key)
        if f is None:
            continue  # Namespace, Incident ID, Published: the record's, not the taxonomy's
        value, bad = convert(f, raw)
        if bad:
            refused.append(key)
        elif value is not None:
            values[key] = value
    return values, refused


def incident_case(rec: dict[str, Any]) -> dict[str, Any]:
    def parties(key: str) -> str:
        try:
            # The catalog's own limit: a shorter cut dropped parties of long lists mid-name.
            return ", ".join(json.loads(rec.get(key) or "[]"))[:MAX_ENV_VALUE]
        except (TypeError, ValueError):
            return ""

    return {
        "external_id": f"AIID-{rec['incident_id']}",
        "title": (rec.get("title") or "")[:500] or None,
        "summary": rec.get("description") or None,
        "model": PLACEHOLDER_MODEL,
        "data_source": DATA_SOURCE,
        "occurred_at": f"{rec['date']}T00:00:00Z" if rec.get("date") else None,
        "environment": {
            k: v
            for k, v in {
                "deployer": parties("Alleged deployer of AI system"),
                "developer": parties("Alleged developer of AI system"),
            }.items()
            if v
        },
        "provenance": {"source": "aiid"},
        "tags": ["aiid"],
    }


Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def import_cases(
    session: AsyncSession, directory: Path, actor: Principal, progress: Progress
) -> tuple[dict[str, str], dict[str, int]]:
    """Incident id -> case id, and counts by ingest status."""
    records = list(read_jsonl(directory / "aiid_incidents.jsonl"))
    ids: dict[str, str] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        results = await catalog.ingest_cases(session, [incident_case(r) for r in batch], actor)
        for rec, result in zip(batch, results, strict=True):
            counts[result.status] = counts.get(result.status, 0) + 1
            if result.id:
                ids[str(rec["incident_id"])] = result.id
            elif result.status == "invalid":
                progress(f"incident {rec['incident_id']}: {result.errors}")
        progress(f"cases {min(start + BATCH, len(records))}/{len(records)}")
    return ids, counts


async def import_aiid(
    session: AsyncSession,
    directory: Path,
    actor: Principal,
    progress: Progress = stderr_progress,
) -> dict[str, Any]:
    directory = Path(directory)
    case_ids, case_counts = await import_cases(session, directory, actor, progress)
    taxa = {r["namespace"]: r for r in read_jsonl(directory / "aiid_taxa.jsonl")}
    stored = {}
    for name in TAXONOMIES:
        rec = taxa[name]
        stored[name] = await service.import_taxonomy(
            session,
            name,
            taxonomy_fields(rec["field_list"]),
            description=rec.get("description") or "",
            source="aiid",
            actor=actor,
        )
        progress(f"taxonomy {name} version {stored[name].version}")
    cset = stored[ADJUDICATED]
    # Classification values are free text from outside: the source's redaction policy applies
    # to them as to the incidents (one read of the policies for the whole import).
    redactor = await redaction.redactor_for(session)
    fields = {f.name: f for f in service.fields_of(cset)}
    counts = {"annotations": 0, "unchanged": 0, "adjudicated": 0, "refused_values": 0}
    missing = 0
    files = sorted(p for p in directory.iterdir() if ANNOTATOR_FILES.match(p.name))
    for path in files:
        rows = list(read_jsonl(path))
        for i, rec in enumerate(rows, start=1):
            case_id = case_ids.get(str(rec["Incident ID"]))
            if case_id is None:
                missing += 1
                continue
            values, refused = classification_values(fields, rec)
            counts["refused_values"] += len(refused)
            changed = await service.record_submitted(
                session, case_id, rec["Namespace"], cset, values, actor, redactor=redactor
            )
            counts["annotations" if changed else "unchanged"] += 1
            if i % 100 == 0 or i == len(rows):
                progress(f"{path.name} {i}/{len(rows)}")
    final = list(read_jsonl(directory / f"aiid_classifications_{ADJUDICATED}.jsonl"))
    for rec in final:
        case_id = case_ids.get(str(rec["Incident ID"]))
        if case_id is None:
            missing += 1
            continue
        values, refused = classification_values(fields, rec)
        counts["refused_values"] += len(refused)
        if values and await service.record_adjudicated(
            session, case_id, cset, values, reviewer=ADJUDICATED, actor=actor, redactor=redactor
        ):
            counts["adjudicated"] += 1
    progress(f"adjudicated {counts['adjudicated']} of {len(final)} final classifications")
    # Every imported case's annotation state is in its search document: rebuild them all.
    await requeue(session, list(case_ids.values()))
    audit(
        session,
        actor,
        "annotation.import",
        "aiid",
        details={**counts, "cases": len(case_ids), "unknown_incidents": missing},
    )
    return {"cases": case_counts, **counts, "unknown_incidents": missing}
