"""Corpus cases for retention tests, and reads of what a purge leaves behind."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from services.audit.models import AuditEntry
from services.catalog import service as catalog
from services.catalog.models import Outbox
from services.search.request import SearchFilter
from shared.db import utcnow
from shared.security import SYSTEM
from tests.catalog.builders import ingest, unique
from tests.corpus import aiid_cases

DAY = timedelta(days=1)


def corpus_cases(n: int, **overrides: Any) -> list[dict[str, Any]]:
    """n AIID incidents of one data source unique to the test, each in a group of its own:
    the raw payload is the incident's harmed parties (real corpus text)."""
    cases = unique(aiid_cases(n))
    salt = secrets.token_hex(3)
    for i, c in enumerate(cases):
        c["fingerprint"] = f"ret-{salt}-{i}"
        c["signals"] = {"drift_score": 0.4, "reports": c["input"]["parties"]}
        c.update(overrides)
    return cases


async def ingest_cases(db: Any, cases: list[dict[str, Any]]) -> list[str]:
    async with db.transaction() as s:
        return await ingest(s, cases)


def party_word(case: dict[str, Any]) -> str:
    """A word of the case's raw input (its harmed parties), to search the payload by."""
    words = [w for p in case["input"]["parties"] for w in re.findall(r"[a-z]{3,}", p.lower())]
    return max(words, key=len)


async def payload_hits(stack: Any, case: dict[str, Any]) -> set[str]:
    """Cases of the case's data source whose raw input matches a word of its input."""
    answer = await stack.search.search(
        SYSTEM,
        f"input:{party_word(case)}",
        filter=SearchFilter(data_source=[case["data_source"]]),
        first=100,
    )
    return {h.id for h in answer.hits}


async def source_hits(stack: Any, source: str, query: str = "") -> set[str]:
    answer = await stack.search.search(
        SYSTEM, query, filter=SearchFilter(data_source=[source]), first=100
    )
    return {h.id for h in answer.hits}


async def cases_by_id(db: Any, ids: list[str]) -> dict[str, Any]:
    async with db.transaction() as s:
        return {c.id: c for c in await catalog.get_cases(s, ids, SYSTEM, tombstones=True)}


async def revisions(db: Any, case_id: str) -> list[Any]:
    async with db.transaction() as s:
        return await catalog.revisions_of(s, [case_id])


async def audit_entries(db: Any, action_prefix: str = "retention.") -> list[AuditEntry]:
    async with db.transaction() as s:
        rows = await s.execute(
            select(AuditEntry)
            .where(AuditEntry.action.startswith(action_prefix))
            .order_by(AuditEntry.seq)
        )
        return list(rows.scalars())


async def state(db: Any, ids: list[str]) -> tuple[Any, ...]:
    """Everything a purge would change: the cases, their history, the outbox, the audit."""
    cases = await cases_by_id(db, ids)
    async with db.transaction() as s:
        outbox = (await s.execute(select(func.count()).select_from(Outbox))).scalar()
        audited = (await s.execute(select(func.count()).select_from(AuditEntry))).scalar()
        history = await catalog.revisions_of(s, ids)
    return (
        sorted(c.model_dump_json() for c in cases.values()),
        sorted((r.case_id, r.revision, str(r.changes)) for r in history),
        outbox,
        audited,
    )


def later(days: int) -> Any:
    return utcnow() + days * DAY
