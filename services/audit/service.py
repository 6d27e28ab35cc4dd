"""The audit trail's operations: verify the chain against its checkpoints, write checkpoints
(now, or every N entries / T seconds in the background), read and export entries.

Entries are appended by shared.audit (every service calls `audit(...)`); this service only
reads them. It runs several short transactions (one per keyset page), so it takes the
Database, never a request's session: a long verify or export holds no snapshot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import checkpoints
from services.audit.models import AuditEntry
from services.audit.repository import AuditRepository
from services.audit.schemas import AuditFilter, Verification
from shared.audit import FIELDS, GENESIS, at_text
from shared.db import Database, as_utc
from shared.errors import BadUserInput, FieldError
from shared.settings import Settings

log = logging.getLogger("failcat.audit")

# Rows per keyset page: large enough that round trips do not dominate, small enough that a
# page of wide entries stays a few tens of MB at most.
PAGE = 20_000
PREFETCH = 2
EXPORT_KEYS = (*FIELDS, "hash")


# ---- verify --------------------------------------------------------------------------------


async def verify(db: Database, settings: Settings, page: int = PAGE) -> Verification:
    """Recompute the chain from the genesis hash, page by page, and hold it against the head
    row and every signed checkpoint. Stops at the first entry that disagrees."""
    started = time.perf_counter()
    report = Verification()
    key = checkpoints.load_key(settings.audit_dir, create=False)
    marks, problems = checkpoints.read_all(settings.checkpoint_dir, key)
    for problem in problems:
        report.fail(None, problem)
    report.checkpoints = len(marks)
    at_mark = {c.seq: c for c in marks}
    async with db.transaction() as session:
        repo = AuditRepository(session)
        head_seq, head_hash = await repo.head()
        last = await repo.last_entry()
    report.head_seq = head_seq
    top = last[0] if last else 0

    prev, expected, last_seq = GENESIS, 1, 0
    sha256 = hashlib.sha256
    zero = at_mark.get(0)
    if zero is not None and zero.hash != GENESIS:
        report.fail(1, f"checkpoint {zero.path.name} does not hold the genesis hash")
    broken = False
    # Pages are seq ranges; the next PREFETCH are fetched (each on a connection of its own)
    # while this one is hashed.
    starts = iter(range(0, top, page))
    pending: deque[asyncio.Future[list[Any]]] = deque()

    def fetch_next() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append(asyncio.ensure_future(_raw_page(db, start, start + page)))

    for _ in range(PREFETCH):
        fetch_next()
    while pending and not broken:
        rows = await pending.popleft()
        fetch_next()
        for row in rows:
            seq = row[0]
            if seq != expected:
                if seq > expected:
                    report.fail(expected, f"seq {expected}: missing (the next entry is {seq})")
                else:
                    report.fail(seq, f"seq {seq}: out of order after {expected - 1}")
                broken = True
                break
            try:
                content = canonical_row(row)
            except (ValueError, TypeError) as exc:  # a column no append could have written
                report.fail(seq, f"seq {seq}: content unreadable, so edited ({exc})")
                broken = True
                break
            digest = sha256(prev.encode() + content).hexdigest()
            if digest != row[10]:
                report.fail(
                    seq,
                    f"seq {seq}: hash does not match its content and the entry before it "
                    "(edited, moved, or an entry before it replaced)",
                )
                broken = True
                break
            mark = at_mark.get(seq)
            if mark is not None and mark.hash != digest:
                report.fail(
                    seq,
                    f"seq {seq}: the chain disagrees with checkpoint {mark.path.name} "
                    "(rewritten at or before this entry)",
                )
                broken = True
                break
            prev, expected, last_seq = digest, expected + 1, seq
        report.entries = last_seq
    for future in pending:
        future.cancel()
    if broken:
        report.seconds = time.perf_counter() - started
        return report
    if marks and marks[-1].seq > last_seq:
        report.fail(
            last_seq + 1,
            f"seq {last_seq + 1}: missing; checkpoint {marks[-1].path.name} signed seq "
            f"{marks[-1].seq} (the tail was cut off)",
        )
    if head_seq > last_seq:
        report.fail(last_seq + 1, f"seq {last_seq + 1}: missing; the head row says seq {head_seq}")
    elif head_seq == last_seq and head_hash != prev:
        report.fail(last_seq, f"seq {last_seq}: the head row's hash disagrees with the chain")
    report.seconds = time.perf_counter() - started
    return report


async def _raw_page(db: Database, after_seq: int, until_seq: int) -> list[Any]:
    async with db.transaction() as session:
        return await AuditRepository(session).raw_page(after_seq, until_seq)


_dumps, _SORT = orjson.dumps, orjson.OPT_SORT_KEYS


def canonical_row(row: Any) -> bytes:
    """shared.audit.canonical_values of a row as the driver returned it (raw_page), without
    building datetimes or dicts on the way where the stored text already says it."""
    at, details = row[1], row[9]
    if isinstance(at, str):
        if len(at) == 26 and at[10] == " ":
            # SQLAlchemy's SQLite form "YYYY-MM-DD HH:MM:SS.ffffff" (always microseconds), UTC.
            at = f"{at[:10]}T{at[11:]}+00:00"
        elif len(at) != 32 or at[10] != "T":  # already at_text's form (Postgres), or odd
            moment = datetime.fromisoformat(at)
            at = at_text(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    else:
        at = at_text(at)
    if isinstance(details, str | bytes):
        details = orjson.loads(details)
    return _dumps(
        [row[0], at, row[2], row[3], row[4], row[5], row[6], row[7], row[8], details],
        option=_SORT,
    )


# ---- checkpoints ---------------------------------------------------------------------------


async def checkpoint_now(db: Database, settings: Settings) -> checkpoints.Checkpoint:
    """Sign the current head with the audit key and write it to the checkpoint directory."""
    key = checkpoints.load_key(settings.audit_dir, create=True)
    assert key is not None
    async with db.transaction() as session:
        seq, head_hash = await AuditRepository(session).head()
    return checkpoints.write(settings.checkpoint_dir, key, seq, head_hash)


async def run_checkpoints(db: Database, settings: Settings, poll_s: float = 1.0) -> None:
    """The background job: a checkpoint once `audit_checkpoint_entries` entries were appended
    since the last one, or `audit_checkpoint_interval_s` passed with any entry appended."""
    every, interval = settings.audit_checkpoint_entries, settings.audit_checkpoint_interval_s
    last_seq = checkpoints.latest_seq(settings.checkpoint_dir)
    last_at = time.monotonic()
    while True:
        await asyncio.sleep(min(poll_s, interval))
        try:
            async with db.transaction() as session:
                seq, _ = await AuditRepository(session).head()
            due = seq - last_seq >= every or (
                seq > last_seq and time.monotonic() - last_at >= interval
            )
            if due:
                mark = await checkpoint_now(db, settings)
                last_seq, last_at = mark.seq, time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A database blip or a full disk must not end the job: the next poll retries, and
            # `failcat audit verify` still checks the chain against the checkpoints written.
            log.exception("audit checkpoint failed; retrying at the next poll")


# ---- reading -------------------------------------------------------------------------------


# A seq is a signed 64-bit integer on both backends: a bound past it can only come from a
# forged cursor or a typo, and the drivers raise on it (SQLite's with an OverflowError).
MAX_SEQ = 2**63 - 1
# Actions, targets and actors are short names and ids; a longer filter matches nothing, and
# SQLite refuses a LIKE pattern past 50,000 bytes with an error of its own.
MAX_FILTER_TEXT = 500


def _utc(at: datetime | None, path: str, errors: list[FieldError]) -> datetime | None:
    """`at` in UTC (one without a zone read as UTC, as the column reads it), or an error when
    UTC puts it outside the years 1-9999 (0001-01-01T00:00:00+14:00 is in year 0)."""
    if at is None:
        return None
    try:
        return as_utc(at)
    except OverflowError:
        errors.append(FieldError(path, "outside the years 1-9999 once in UTC"))
        return None


def _checked(f: AuditFilter, before_seq: int | None) -> AuditFilter:
    """The filter with its times in UTC; every problem at once, each naming its field."""
    errors = []
    for name in ("actor", "action", "target"):
        text = getattr(f, name) or ""
        if len(text) > MAX_FILTER_TEXT:
            errors.append(FieldError(f"filter.{name}", f"at most {MAX_FILTER_TEXT} characters"))
        elif "\x00" in text:  # stored by no entry; Postgres refused it naming no field
            errors.append(FieldError(f"filter.{name}", "contains U+0000 (NUL)"))
    since = _utc(f.since, "filter.from", errors)
    until = _utc(f.until, "filter.to", errors)
    if since is not None and until is not None and until <= since:
        # An empty answer would read as "nothing happened" in a range that holds nothing.
        errors.append(FieldError("filter.to", "must be after filter.from (the range is empty)"))
    if before_seq is not None and (isinstance(before_seq, bool) or not 0 <= before_seq <= MAX_SEQ):
        errors.append(FieldError("after", "not a cursor this API issued"))
    if errors:
        raise BadUserInput(f"invalid audit log query: {errors[0].message}", errors)
    return AuditFilter(f.actor, f.action, f.target, since, until)


async def list_entries(
    session: AsyncSession, f: AuditFilter, first: int, before_seq: int | None
) -> list[AuditEntry]:
    """Newest first; the caller checked the audit:read scope."""
    f = _checked(f, before_seq)
    return await AuditRepository(session).entries(
        actor=f.actor,
        action=f.action,
        target=f.target,
        since=f.since,
        until=f.until,
        before_seq=before_seq,
        limit=first,
    )


def entry_json(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(EXPORT_KEYS, row, strict=True))
    out["at"] = at_text(out["at"])
    return out


async def export(
    db: Database,
    since: datetime | int | None = None,
    until: datetime | int | None = None,
    page: int = PAGE,
) -> AsyncIterator[bytes]:
    """JSONL, one entry a line in seq order with its hash, a keyset page at a time. `since`
    and `until` are times (from inclusive, to exclusive) or seqs (both inclusive)."""
    low, high = 0, None
    times = [v for v in (since, until) if isinstance(v, datetime)]
    if times:
        async with db.transaction() as session:
            bounds = await AuditRepository(session).seq_bounds(
                since if isinstance(since, datetime) else None,
                until if isinstance(until, datetime) else None,
            )
        if bounds is None:
            return
        low, high = bounds[0] - 1, bounds[1]
    if isinstance(since, int):
        low = max(low, since - 1)
    if isinstance(until, int):
        high = until if high is None else min(high, until)
    while True:
        async with db.transaction() as session:
            rows = await AuditRepository(session).page(low, page, until_seq=high)
        if not rows:
            return
        yield b"".join(orjson.dumps(entry_json(r)) + b"\n" for r in rows)
        low = rows[-1][0]
