"""Bulk ingestion: validate, hash, de-duplicate, group and store a batch in set-based writes.

The REST bulk route and `Mutation.ingestCases` both call `ingest`. Per item the work is one
pydantic validation, one canonical-JSON hash and a few dicts; no ORM object is built per case.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from services.catalog import limits as L
from services.catalog.models import CaseLink, CaseRevision
from services.catalog.repository import CatalogRepository
from services.catalog.sampling import sample
from services.catalog.schemas import CaseIn, GroupStatus, ItemResult
from services.catalog.versions import is_newer
from shared.db import utcnow
from shared.errors import FieldError
from shared.ids import new_id, stable_id
from shared.jsonutil import canonical_json, iso, json_depth, sha256_hex
from shared.security import Principal

CAPTURED_BLOBS = ("input", "prediction", "expected", "signals")
FACT_BLOBS = ("environment", *CAPTURED_BLOBS)
_DIGITS = re.compile(r"\d+")


@dataclass(slots=True)
class Prepared:
    index: int
    case: CaseIn
    content_hash: str
    fingerprint: str
    source_key: str
    occurred_at: datetime
    failure_mode_parent: str | None
    id: str = field(default_factory=new_id)
    reservoir_key: str | None = None


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(prefix + ".".join(str(p) for p in e["loc"]) or "$", e["msg"])
        for e in exc.errors(include_url=False)
    ]


def unknown_mode_error(code: str, modes: dict[str, str | None]) -> FieldError:
    close = difflib.get_close_matches(code, list(modes), n=5, cutoff=0.5)
    hint = close or sorted(m for m in modes if "." not in m)
    return FieldError(
        "failure_mode", f"unknown failure mode {code!r}; valid codes close to it: {', '.join(hint)}"
    )


def error_signature(prediction: Any, expected: Any) -> str:
    """What was predicted versus expected, with numbers masked, so similar errors collide."""

    def label(v: Any) -> str:
        if isinstance(v, dict):
            v = v.get("label", v.get("class", v.get("error", "")))
        return _DIGITS.sub("#", str(v).strip().lower())[:200] if v is not None else ""

    return f"{label(prediction)}->{label(expected)}"


def derive_fingerprint(case: CaseIn) -> str:
    sig = error_signature(case.prediction, case.expected)
    return sha256_hex(f"{case.model.name}|{case.failure_mode or ''}|{sig}".encode())[:32]


# What a producer reports besides the captured payload: it identifies the report when no
# payload was sent (two incidents told only by their title and summary are two cases).
REPORTED_FIELDS = (
    "title",
    "summary",
    "failure_mode",
    "severity",
    "impact",
    "tags",
    "team",
    "links",
    "writeup",
    "fingerprint",
)


def captured_facts(case: CaseIn, raw: dict[str, Any]) -> dict[str, Any]:
    """What the content hash covers: the captured facts, free-form JSON as sent and typed
    fields as validated (so a timestamp hashes alike whether it came as "...Z" over REST or
    "+00:00" over GraphQL). Without a captured payload (input, prediction, expected, signals)
    the facts alone cannot tell two reports apart, so the hash covers what the producer
    reported as well (title, summary, ...)."""
    facts: dict[str, Any] = {
        "model": {"name": case.model.name, "version": case.model.version},
        "data_source": case.data_source,
    }
    for key in FACT_BLOBS:
        value = raw.get(key)
        if value is not None:
            facts[key] = value
    for key in ("external_id", "confidence", "latency_ms"):
        value = getattr(case, key)
        if value is not None:
            facts[key] = value
    for key in ("occurred_at", "captured_at"):
        value = getattr(case, key)
        if value is not None:
            facts[key] = iso(value)
    if case.provenance is not None:
        facts["provenance"] = {k: v for k, v in case.provenance.__dict__.items() if v is not None}
    if facts.keys().isdisjoint(CAPTURED_BLOBS):
        reported = case.model_dump(mode="json", include=set(REPORTED_FIELDS), exclude_none=True)
        facts["reported"] = {k: v for k, v in reported.items() if v != []}
    return facts


def prepare(
    index: int, raw: Any, modes: dict[str, str | None], now: datetime
) -> Prepared | list[FieldError]:
    if not isinstance(raw, dict):
        return [FieldError("$", f"expected a JSON object, got {type(raw).__name__}")]
    errors: list[FieldError] = []
    # Only free-form blobs can nest arbitrarily; every other field has a fixed schema.
    for key in CAPTURED_BLOBS:
        blob = raw.get(key)
        if not isinstance(blob, dict | list):
            continue
        data = orjson.dumps(blob)
        if len(data) > L.MAX_BLOB_BYTES:
            errors.append(FieldError(key, f"larger than the limit of {L.MAX_BLOB_BYTES} bytes"))
        # Depth cannot exceed the number of opening brackets: count them at C speed and
        # walk the value only when that bound is over the limit.
        elif (
            data.count(b"{") + data.count(b"[") >= L.MAX_JSON_DEPTH
            and json_depth(blob, L.MAX_JSON_DEPTH - 1) >= L.MAX_JSON_DEPTH
        ):
            errors.append(
                FieldError(key, f"JSON nesting deeper than the limit of {L.MAX_JSON_DEPTH}")
            )
    # Every error of the item at once: the blob limits, the schema, the taxonomy.
    try:
        case = CaseIn.model_validate(raw)
    except ValidationError as exc:
        errors.extend(pydantic_errors(exc))
        case = None
    mode = raw.get("failure_mode")
    if (
        isinstance(mode, str)
        and mode not in modes
        and not any(e.path == "failure_mode" for e in errors)  # too long, say: one error
    ):
        errors.append(unknown_mode_error(mode, modes))
    if errors or case is None:
        return errors
    parent = None
    if case.failure_mode is not None:
        parent = modes[case.failure_mode] or case.failure_mode
    provenance_source = case.provenance.source if case.provenance else None
    return Prepared(
        index=index,
        case=case,
        content_hash=sha256_hex(canonical_json(captured_facts(case, raw))),
        fingerprint=case.fingerprint or derive_fingerprint(case),
        source_key=provenance_source or case.data_source,
        occurred_at=case.occurred_at or now,
        failure_mode_parent=parent,
    )


CURATED_COLUMNS = (
    "title",
    "summary",
    "failure_mode",
    "taxonomy_version",
    "severity",
    "impact",
    "status",
    "sensitivity",
    "team",
    "writeup",
    "merged_into_id",
)


async def ingest(
    session: Any, items: list[Any], actor: Principal, rng: random.Random | None = None
) -> list[ItemResult]:
    repo = CatalogRepository(session)
    now = utcnow()
    taxonomy_version = await repo.current_taxonomy_version()
    modes = await repo.failure_modes(taxonomy_version)
    results: list[ItemResult | None] = [None] * len(items)

    valid: list[Prepared] = []
    for i, raw in enumerate(items):
        p = prepare(i, raw, modes, now)
        if isinstance(p, list):
            results[i] = ItemResult(index=i, status="invalid", errors=[e.as_dict() for e in p])
        else:
            valid.append(p)

    # Known already: stored (one query by content hash, one by (source, external_id)), or an
    # earlier item of this batch (id by hash, (id, hash) by key).
    stored_hash = await repo.ids_by_hash(list({p.content_hash for p in valid}))
    stored_ext = await repo.cases_by_external(_ext_keys(valid))
    by_hash: dict[str, str] = {}
    by_ext: dict[tuple[str, str], tuple[str, str]] = {}
    new: list[Prepared] = []
    for p in valid:
        seen = _seen(p, stored_ext, stored_hash) or _seen(p, by_ext, by_hash)
        if seen is not None:
            results[p.index] = seen
            continue
        by_hash[p.content_hash] = p.id
        if p.case.external_id:
            by_ext[(p.source_key, p.case.external_id)] = (p.id, p.content_hash)
        new.append(p)

    if new:
        stored, sampled_out = await _store(
            repo, new, actor, now, taxonomy_version, rng or random.Random()
        )
        lost = [p for p in new if p.id not in stored and p.index not in sampled_out]
        again: dict[str, str] = {}
        again_ext: dict[tuple[str, str], tuple[str, str]] = {}
        if lost:  # a concurrent writer stored the same case between our check and insert
            again = await repo.ids_by_hash([p.content_hash for p in lost])
            again_ext = await repo.cases_by_external(_ext_keys(lost))
        for p in new:
            if p.id in stored:
                results[p.index] = ItemResult(index=p.index, status="created", id=p.id)
            elif p.index in sampled_out:
                results[p.index] = ItemResult(index=p.index, status="sampled_out")
            else:
                results[p.index] = _seen(p, again_ext, again) or ItemResult(
                    index=p.index, status="duplicate"
                )
    return [r for r in results if r is not None]


def _ext_keys(prepared: list[Prepared]) -> list[tuple[str, str]]:
    return [(p.source_key, p.case.external_id) for p in prepared if p.case.external_id]


def _seen(
    p: Prepared,
    by_ext: dict[tuple[str, str], tuple[str, str]],
    by_hash: dict[str, str],
) -> ItemResult | None:
    """The answer for an item already known by its idempotency key or its content, else None.

    A key already used with the same content is a retry (`duplicate`); with different content
    it is a `conflict`, as payment APIs answer a reused idempotency key: the new report is
    not stored and not silently dropped either, the producer is told to send a new key."""
    key = (p.source_key, p.case.external_id) if p.case.external_id else None
    earlier = by_ext.get(key) if key else None
    if earlier is not None:
        earlier_id, earlier_hash = earlier
        if earlier_hash == p.content_hash:
            return ItemResult(index=p.index, status="duplicate", id=earlier_id)
        return ItemResult(
            index=p.index,
            status="conflict",
            id=earlier_id,
            errors=[
                {
                    "path": "external_id",
                    "message": f"external_id {p.case.external_id!r} of source "
                    f"{p.source_key!r} was already used by case {earlier_id} with different "
                    "content; send a new external_id for a different report",
                }
            ],
        )
    earlier_id = by_hash.get(p.content_hash)
    if earlier_id is not None:
        return ItemResult(index=p.index, status="duplicate", id=earlier_id)
    return None


def group_id_of(fingerprint: str) -> str:
    """Groups are keyed by fingerprint: every batch derives the same id without a lookup."""
    return stable_id(f"failure-group:{fingerprint}")


async def _store(
    repo: CatalogRepository,
    new: list[Prepared],
    actor: Principal,
    now: datetime,
    taxonomy_version: int,
    rng: random.Random,
) -> tuple[set[str], set[int]]:
    """Store the new cases; returns the ids stored and the indexes sampled out."""
    outcome = await sample(repo, new, rng)
    models = await repo.ensure_models({p.case.model.name for p in new}, now)
    # Read (no lock) only to notice resolved groups coming back.
    known = await repo.groups_by_id(list({group_id_of(p.fingerprint) for p in new}))
    kept = outcome.kept
    sources = await repo.ensure_sources({p.case.data_source for p in kept}, now)
    versions = await repo.ensure_versions(
        {(models[p.case.model.name], p.case.model.version) for p in kept}, now
    )
    rows = [_case_row(p, actor, now, taxonomy_version, models, versions, sources) for p in kept]
    stored = await repo.insert_cases(rows)

    revision_rows, link_rows = [], []
    tallies: dict[str, dict[str, Any]] = {}
    regressions: dict[str, str] = {}
    for p in kept:
        if p.id not in stored:
            continue
        links = [lk.model_dump(mode="json") for lk in p.case.links]
        revision_rows.append(
            {
                "case_id": p.id,
                "revision": 1,
                "actor": actor.subject,
                "actor_name": actor.name,
                "created_at": now,
                "reason": "ingested",
                "changes": {},
            }
        )
        link_rows.extend({"id": new_id(), "case_id": p.id, **lk} for lk in links)
        gid = _tally(tallies, p, models, added=1)
        group = known.get(gid)
        if (
            group is not None
            and group.status == GroupStatus.RESOLVED
            and is_newer(p.case.model.version, group.resolved_in_version)
        ):
            regressions[gid] = p.case.model.version
    for p in outcome.sampled_out:
        _tally(tallies, p, models, sampled=1)
    await repo.insert_rows(CaseRevision, revision_rows)
    await repo.insert_rows(CaseLink, link_rows)
    await repo.add_outbox([(cid, 1) for cid in stored], now)
    await repo.upsert_groups(list(tallies.values()))
    await _evict(repo, outcome.evicted, now)
    await repo.save_sampling_counters(outcome.counters)
    for gid, version in regressions.items():
        await repo.mark_regressed(gid, version, now)
    return stored, {p.index for p in outcome.sampled_out}


def _tally(
    tallies: dict[str, dict[str, Any]],
    p: Prepared,
    models: dict[str, str],
    added: int = 0,
    sampled: int = 0,
) -> str:
    """Count a case on its group's row-to-be: created if new, added to if it exists."""
    gid = group_id_of(p.fingerprint)
    t = tallies.get(gid)
    if t is None:
        t = tallies[gid] = {
            "id": gid,
            "fingerprint": p.fingerprint,
            "model_id": models[p.case.model.name],
            "failure_mode": p.case.failure_mode,
            "first_seen": p.occurred_at,
            "last_seen": p.occurred_at,
            "case_count": 0,
            "sampled_out_count": 0,
            "status": GroupStatus.OPEN.value,
        }
    t["case_count"] += added
    t["sampled_out_count"] += sampled
    t["first_seen"] = min(t["first_seen"], p.occurred_at)
    t["last_seen"] = max(t["last_seen"], p.occurred_at)
    return gid


async def _evict(repo: CatalogRepository, ids: list[str], now: datetime) -> None:
    """Reservoir evictions: the case goes, its group counts it as sampled out, and the
    outbox tells the indexer to drop the document."""
    removed = await repo.delete_cases(ids)
    per_group: dict[str, int] = {}
    for _, gid, _ in removed:
        per_group[gid] = per_group.get(gid, 0) + 1
    await repo.count_evictions(per_group)
    await repo.add_outbox([(cid, rev + 1) for cid, _, rev in removed], now)


def _case_row(
    p: Prepared,
    actor: Principal,
    now: datetime,
    taxonomy_version: int,
    models: dict[str, str],
    versions: dict[tuple[str, str], str],
    sources: dict[str, str],
) -> dict[str, Any]:
    c = p.case
    model_id = models[c.model.name]
    return {
        "id": p.id,
        "model_id": model_id,
        "model_version_id": versions[(model_id, c.model.version)],
        "data_source_id": sources[c.data_source],
        "occurred_at": p.occurred_at,
        "captured_at": c.captured_at,
        "received_at": now,
        "environment": c.environment,
        "input": c.input,
        "prediction": c.prediction,
        "expected": c.expected,
        "confidence": c.confidence,
        "latency_ms": c.latency_ms,
        "signals": c.signals,
        "provenance": c.provenance.model_dump(mode="json") if c.provenance else None,
        "source_key": p.source_key,
        "external_id": c.external_id,
        "fingerprint": p.fingerprint,
        "content_hash": p.content_hash,
        "group_id": group_id_of(p.fingerprint),
        "title": c.title,
        "summary": c.summary,
        "failure_mode": c.failure_mode,
        "failure_mode_parent": p.failure_mode_parent,
        "taxonomy_version": taxonomy_version if c.failure_mode else None,
        "severity": c.severity,
        "impact": c.impact,
        "status": "new",
        "tags": c.tags,
        "sensitivity": c.sensitivity.value,
        "team": c.team or actor.team,
        "writeup": c.writeup.model_dump(mode="json") if c.writeup else None,
        "merged_into_id": None,
        "reservoir_key": p.reservoir_key,
        "revision": 1,
        "updated_at": now,
    }
