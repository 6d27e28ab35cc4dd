"""Bulk ingestion: validate, hash, de-duplicate, group and store a batch in set-based writes.

The REST bulk route and `Mutation.ingestCases` both call `ingest`. Per item the work is one
pydantic validation, one canonical-JSON hash and a few dicts; no ORM object is built per case.
A batch is stored in chunks, the next chunk validated while the previous one is written (see
`ingest`); what several chunks share (group counts) is written once at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from services.catalog import limits as L
from services.catalog.capture_policies import BatchPolicies
from services.catalog.models import CaseLink, CaseRevision
from services.catalog.repository import CatalogRepository
from services.catalog.sampling import sample
from services.catalog.schemas import CaseIn, GroupStatus, ItemResult
from services.catalog.versions import is_newer
from services.governance.redaction import service as redaction
from shared.db import utcnow
from shared.errors import FieldError, validation_errors
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
    # The stored columns redaction rewrites (services/governance/redaction): applied before
    # anything is stored, so detected values never reach the database.
    redacted: dict[str, Any] = field(default_factory=dict)
    capture_policy_version: int | None = None


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    return validation_errors(exc, prefix.rstrip("."))


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
    if case.occurred_at is not None and case.occurred_at == _exported_received_at(raw):
        del facts["occurred_at"]  # the exporting server's default: not part of it there either
    if case.provenance is not None:
        facts["provenance"] = {k: v for k, v in case.provenance.__dict__.items() if v is not None}
    if facts.keys().isdisjoint(CAPTURED_BLOBS):
        reported = case.model_dump(mode="json", include=set(REPORTED_FIELDS), exclude_none=True)
        if reported.get("fingerprint") == derive_fingerprint(case):
            del reported["fingerprint"]  # sending the derived one is not sending one
        facts["reported"] = {k: v for k, v in reported.items() if v != []}
    return facts


def _exported_received_at(raw: dict[str, Any]) -> datetime | None:
    """When the item is an export's row (services/catalog/export.py), the time the exporting
    instance received it: an `occurred_at` equal to it was that instance's default."""
    meta = raw.get("_meta")
    received = meta.get("received_at") if isinstance(meta, dict) else None
    if not isinstance(received, str):
        return None
    try:
        at = datetime.fromisoformat(received)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _blob_errors(raw: dict[str, Any]) -> list[FieldError]:
    """The size and nesting limits of each free-form blob."""
    errors: list[FieldError] = []
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
    return errors


NUL_MESSAGE = "contains U+0000 (NUL), which cannot be stored"


def _nul_errors(raw: dict[str, Any]) -> list[FieldError]:
    """Text holding U+0000, anywhere in the item: Postgres stores it in neither text nor
    JSONB, so such an item is invalid on both backends (on Postgres it failed its whole
    batch). Walked only when the item's JSON has an escaped NUL (`prepare`)."""
    return [FieldError(path or "$", NUL_MESSAGE) for path in _nul_paths(raw, "")]


def _nul_paths(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, dict):
        found = [f"{path}.{k}" if path else k for k in value if "\x00" in k]
        for k, v in value.items():
            found += _nul_paths(v, f"{path}.{k}" if path else k)
        return found
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nul_paths(v, f"{path}.{i}")]
    return []


def prepare(
    index: int, raw: Any, modes: dict[str, str | None], now: datetime
) -> Prepared | list[FieldError]:
    if not isinstance(raw, dict):
        return [FieldError("$", f"expected a JSON object, got {type(raw).__name__}")]
    errors: list[FieldError] = []
    # Only free-form blobs can nest arbitrarily; every other field has a fixed schema.
    # The whole item is serialized once: within both limits as a whole (nearly every case),
    # no blob in it can be over either alone, and the per-blob checks (a serialization
    # each) are skipped. A value orjson cannot write (an integer past 64 bits) takes them
    # too. The same bytes tell whether any text holds a NUL (`_nul_errors`).
    try:
        whole = orjson.dumps(raw)
    except orjson.JSONEncodeError:
        whole = None
    if (
        whole is None
        or len(whole) > L.MAX_BLOB_BYTES
        or whole.count(b"{") + whole.count(b"[") >= L.MAX_JSON_DEPTH
    ):
        errors = _blob_errors(raw)
    if whole is not None and b"\\u0000" in whole:
        errors += _nul_errors(raw)
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


# Items per pipeline stage: small enough that a 1,000-item request has a few stages to
# overlap, large enough that each stage's statements carry many rows.
CHUNK = 250
# Items prepared between two yields to the event loop: the store in flight gets the loop
# back (to send its next statement) within a few milliseconds.
SLICE = 25


async def ingest(
    session: Any, items: list[Any], actor: Principal, rng: random.Random | None = None
) -> list[ItemResult]:
    """Validate, hash and store `items` in one transaction; one result per item, in order.

    A pipeline over chunks: while Postgres stores chunk k (COPY in flight on the session's
    connection), the CPU work of chunk k+1 (validation, hashing) runs on the event loop in
    slices. Only the store task uses the session, one statement at a time (an AsyncSession
    must not run two at once); the preparation never touches it. Group counts, sampling
    counters and regressions are written once at the end, in key order, so concurrent
    batches lock shared rows in one order and never deadlock."""
    repo = CatalogRepository(session)
    batch = _Batch(repo, actor, utcnow(), rng or random.Random(), len(items))
    batch.taxonomy_version = await repo.current_taxonomy_version()
    batch.redactor = await redaction.redactor_for(session)
    modes = await repo.failure_modes(batch.taxonomy_version)
    # A reservoir decides in arrival order and may drop an earlier item of the same batch
    # (answered sampled_out): under sampling rules the batch is stored in one piece.
    batch.sampling = any(r.enabled for r in await repo.sampling_rules())
    # Capture policies: the current version of each (model, data source) the batch names,
    # read and compiled once for the whole batch (capture_policies.py, CAPTURE.md).
    batch.policies = await BatchPolicies.load(repo, items)
    size = max(len(items), 1) if batch.sampling else CHUNK
    pieces = [range(i, min(i + size, len(items))) for i in range(0, len(items), size)]

    store: asyncio.Task[None] | None = None
    try:
        for piece in pieces:
            valid = await _prepare_piece(batch, items, piece, modes)
            if store is not None:
                await store
            store = asyncio.create_task(batch.store(valid))
        if store is not None:
            await store
    finally:
        if store is not None and not store.done():
            # An error (or cancellation) while preparing: the statement in flight must end
            # before the request's rollback uses the connection.
            store.cancel()
            with contextlib.suppress(BaseException):
                await store
    await batch.finish()
    return [r for r in batch.results if r is not None]


async def _prepare_piece(
    batch: _Batch, items: list[Any], piece: range, modes: dict[str, str | None]
) -> list[Prepared]:
    valid: list[Prepared] = []
    for n, i in enumerate(piece, start=1):
        p = prepare(i, items[i], modes, batch.now)
        if batch.policies is not None and not isinstance(p, list):
            p = _held_to_policy(batch.policies, p, items[i])
        if isinstance(p, list):
            batch.results[i] = ItemResult(
                index=i, status="invalid", errors=[e.as_dict() for e in p]
            )
        else:
            p.redacted = batch.redactor.apply(p.case)
            valid.append(p)
        if n % SLICE == 0:
            await asyncio.sleep(0)  # let the store in flight send its next statement
    return valid


def _held_to_policy(
    policies: BatchPolicies, p: Prepared, raw: dict[str, Any]
) -> Prepared | list[FieldError]:
    """The policy hook: a valid item lacking what its key's policy requires (or not
    qualifying under it) is invalid, its errors naming the policy; else it records the
    version it met."""
    version, errors = policies.check(p.case, raw)
    if errors:
        return errors
    p.capture_policy_version = version
    return p


class _Batch:
    """What one request's chunks share: answers so far, ids of this batch's cases (by hash
    and by idempotency key), the model/source/version ids resolved, group tallies."""

    def __init__(
        self, repo: CatalogRepository, actor: Principal, now: datetime, rng: random.Random, n: int
    ) -> None:
        self.repo, self.actor, self.now, self.rng = repo, actor, now, rng
        self.results: list[ItemResult | None] = [None] * n
        self.taxonomy_version = 0
        self.sampling = False
        self.redactor: redaction.Redactor
        self.policies: BatchPolicies | None = None
        self.by_hash: dict[str, str] = {}
        self.by_ext: dict[tuple[str, str], tuple[str, str]] = {}
        self.models: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self.versions: dict[tuple[str, str], str] = {}
        self.tallies: dict[str, dict[str, Any]] = {}
        self.stored: list[Prepared] = []
        self.evicted: list[str] = []
        self.counters: list[dict[str, object]] = []

    async def store(self, valid: list[Prepared]) -> None:
        """Answer a chunk's items: duplicates and conflicts of stored cases or of earlier
        items, else store them (or sample them out)."""
        repo = self.repo
        # Known already: stored (one query by content hash, one by (source, external_id)),
        # or an earlier item of this batch. Earlier chunks are stored by now, in this
        # transaction, so they answer from the first lookup with the same id.
        stored_hash = await repo.ids_by_hash(list({p.content_hash for p in valid}))
        stored_ext = await repo.cases_by_external(_ext_keys(valid))
        new: list[Prepared] = []
        for p in valid:
            seen = _seen(p, stored_ext, stored_hash) or _seen(p, self.by_ext, self.by_hash)
            if seen is not None:
                self.results[p.index] = seen
                continue
            self.by_hash[p.content_hash] = p.id
            if p.case.external_id:
                self.by_ext[(p.source_key, p.case.external_id)] = (p.id, p.content_hash)
            new.append(p)
        if not new:
            return
        stored, sampled_out = await self._insert(new)
        lost = [p for p in new if p.id not in stored and p.index not in sampled_out]
        again: dict[str, str] = {}
        again_ext: dict[tuple[str, str], tuple[str, str]] = {}
        if lost:  # a concurrent writer stored the same case between our check and insert
            again = await repo.ids_by_hash([p.content_hash for p in lost])
            again_ext = await repo.cases_by_external(_ext_keys(lost))
        for p in new:
            if p.id in stored:
                # Built unvalidated: the one answer of nearly every item, from our own values
                # (validating them again cost a pydantic call per case).
                self.results[p.index] = ItemResult.model_construct(
                    index=p.index, status="created", id=p.id
                )
            elif p.index in sampled_out:
                self.results[p.index] = ItemResult(index=p.index, status="sampled_out")
            else:
                self.results[p.index] = _seen(p, again_ext, again) or ItemResult(
                    index=p.index, status="duplicate"
                )

    async def _insert(self, new: list[Prepared]) -> tuple[set[str], set[int]]:
        """Store the new cases with their first revision, links and outbox entries; returns
        the ids stored and the indexes sampled out."""
        repo, now = self.repo, self.now
        if self.sampling:
            outcome = await sample(repo, new, self.rng)
            kept, out = outcome.kept, outcome.sampled_out
            self.evicted, self.counters = outcome.evicted, outcome.counters
        else:
            kept, out = new, []
        await self._resolve_references(new, kept)
        rows = [self._case_row(p) for p in kept]
        stored = await repo.insert_cases(rows)

        revision_rows, link_rows = [], []
        for p in kept:
            if p.id not in stored:
                continue
            revision_rows.append(
                {
                    "case_id": p.id,
                    "revision": 1,
                    "actor": self.actor.subject,
                    "actor_name": self.actor.name,
                    "created_at": now,
                    "reason": "ingested",
                    "changes": {},
                }
            )
            for lk in p.case.links:
                link_rows.append({"id": new_id(), "case_id": p.id, **lk.model_dump(mode="json")})
            _tally(self.tallies, p, self.models, added=1)
            self.stored.append(p)
        for p in out:
            _tally(self.tallies, p, self.models, sampled=1)
        await repo.insert_rows(CaseRevision, revision_rows)
        await repo.insert_rows(CaseLink, link_rows)
        await repo.add_outbox([(r["case_id"], 1) for r in revision_rows], now)
        return stored, {p.index for p in out}

    async def _resolve_references(self, new: list[Prepared], kept: list[Prepared]) -> None:
        """Ids of models, data sources and model versions, created when first seen; each is
        asked for once per batch."""
        repo, now = self.repo, self.now
        names = {p.case.model.name for p in new} - self.models.keys()
        if names:
            self.models.update(await repo.ensure_models(names, now))
        names = {p.case.data_source for p in kept} - self.sources.keys()
        if names:
            self.sources.update(await repo.ensure_sources(names, now))
        pairs = {(self.models[p.case.model.name], p.case.model.version) for p in kept}
        if pairs - self.versions.keys():
            self.versions.update(await repo.ensure_versions(pairs - self.versions.keys(), now))

    def _case_row(self, p: Prepared) -> dict[str, Any]:
        return _case_row(
            p,
            self.actor,
            self.now,
            self.taxonomy_version,
            self.models,
            self.versions,
            self.sources,
        )

    async def finish(self) -> None:
        """What the whole batch changes once: group counts (one upsert in id order),
        regressions, sampling evictions and counters."""
        repo, now = self.repo, self.now
        if not self.tallies:
            return
        # Read (no lock) only to notice resolved groups coming back.
        known = await repo.groups_by_id(sorted(self.tallies))
        regressions: dict[str, str] = {}
        for p in self.stored:
            gid = group_id_of(p.fingerprint)
            group = known.get(gid)
            if (
                group is not None
                and group.status == GroupStatus.RESOLVED
                and is_newer(p.case.model.version, group.resolved_in_version)
            ):
                regressions[gid] = p.case.model.version
        await repo.upsert_groups(list(self.tallies.values()))
        await _evict(repo, self.evicted, now)
        await repo.save_sampling_counters(self.counters)
        for gid, version in sorted(regressions.items()):
            await repo.mark_regressed(gid, version, now)


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


@functools.lru_cache(maxsize=65536)
def group_id_of(fingerprint: str) -> str:
    """Groups are keyed by fingerprint: every batch derives the same id without a lookup.
    Cached: a batch asks for each case's group three times, and fingerprints repeat."""
    return stable_id(f"failure-group:{fingerprint}")


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
        "capture_policy_version": p.capture_policy_version,
        "revision": 1,
        "updated_at": now,
        # Every column, so COPY takes the fast path (repository.base.copy_records).
        "payload_purged_at": None,
        "purged_at": None,
        **p.redacted,
    }
