"""`failcat audit verify` through the real CLI: an untouched chain exits 0; each of the four
tampers, done with raw SQL on the database, exits 1 naming the first bad seq; a usage error
exits 2. Each test has a trail of its own (its own database and checkpoint directory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.audit import service
from shared.audit import audit
from shared.db import Database
from shared.migrate import upgrade_async
from shared.settings import Settings
from tests.cli.conftest import Result, clean_env, failcat, settings_env
from tests.conftest import make_settings

ENTRIES = 30


@dataclass
class Trail:
    settings: Settings
    db: Database
    cwd: Path

    async def cli(self, *argv: str) -> Result:
        return await failcat(*argv, cwd=self.cwd, env=clean_env(**settings_env(self.settings)))

    async def sql(self, *statements: str) -> None:
        async with self.db.engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))


async def append(db: Database, start: int, n: int) -> None:
    for i in range(start, start + n):
        async with db.transaction() as session:
            audit(session, f"user-{i % 3}", "test.write", f"case:{i}", details={"i": i, "x": 0.5})


@pytest.fixture
async def trail(backend: str, tmp_path: Path) -> AsyncIterator[Trail]:
    settings = await make_settings(backend, tmp_path / "data")
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    await append(db, 1, ENTRIES)
    await service.checkpoint_now(db, settings)  # signs seq 30
    try:
        yield Trail(settings, db, tmp_path)
    finally:
        await db.dispose()


def assert_tampered(result: Result, seq: int) -> None:
    assert result.code == 1, (result.code, result.err)
    assert f"first bad seq {seq}" in result.err, result.err


async def test_untouched_chain_and_later_entries_verify(trail: Trail) -> None:
    await append(trail.db, ENTRIES + 1, 5)  # past the last checkpoint: still intact
    result = await trail.cli("audit", "verify", "--json")
    assert result.code == 0, result.err
    report = orjson.loads(result.out)
    assert report["ok"] and report["entries"] == ENTRIES + 5
    assert report["checkpoints"] == 1 and report["first_bad_seq"] is None


async def test_a_chain_without_checkpoints_verifies_with_a_warning(
    backend: str, tmp_path: Path
) -> None:
    settings = await make_settings(backend, tmp_path / "data")
    await upgrade_async(settings.catalog_url)
    db = Database(settings.catalog_url)
    try:
        await append(db, 1, 3)
        trail = Trail(settings, db, tmp_path)
        result = await trail.cli("audit", "verify")
        assert result.code == 0, result.err
        assert "no signed checkpoint yet" in result.err
        await service.checkpoint_now(db, settings)
        signed = await trail.cli("audit", "verify")
        assert signed.code == 0 and "no signed checkpoint" not in signed.err, signed.err
    finally:
        await db.dispose()


async def test_an_edited_entry_is_named(trail: Trail) -> None:
    await trail.sql("UPDATE audit_log SET target = 'case:someone-else' WHERE seq = 7")
    assert_tampered(await trail.cli("audit", "verify"), 7)


async def test_an_entry_edited_past_reading_is_named_not_a_crash(trail: Trail) -> None:
    """SQLite stores any text in a JSON or a timestamp column: an edit no append could have
    written is tampering too (exit 1 naming it), not an unexpected error. Postgres refuses
    such values outright (JSONB, TIMESTAMPTZ)."""
    edits = (
        "UPDATE audit_log SET details = 'not json' WHERE seq = 5",
        "UPDATE audit_log SET at = 'not a time' WHERE seq = 5",
    )
    if trail.db.engine.dialect.name != "sqlite":
        for edit in edits:
            with pytest.raises(DBAPIError):
                await trail.sql(edit)
        return
    for edit in edits:
        await trail.sql(edit)
        result = await trail.cli("audit", "verify")
        assert_tampered(result, 5)
        assert "content unreadable" in result.err and "unexpected" not in result.err


async def test_a_deleted_middle_entry_is_named(trail: Trail) -> None:
    await trail.sql("DELETE FROM audit_log WHERE seq = 12")
    assert_tampered(await trail.cli("audit", "verify"), 12)


async def test_two_swapped_entries_are_named(trail: Trail) -> None:
    # Reorder: 15 and 16 change places (through a free seq: the primary key holds throughout).
    await trail.sql(
        "UPDATE audit_log SET seq = -1 WHERE seq = 15",
        "UPDATE audit_log SET seq = 15 WHERE seq = 16",
        "UPDATE audit_log SET seq = 16 WHERE seq = -1",
    )
    assert_tampered(await trail.cli("audit", "verify"), 15)


async def test_a_truncated_tail_is_caught_by_the_last_checkpoint(trail: Trail) -> None:
    # A careful truncation: the tail goes and the head row is set back to match, so the
    # database alone is consistent; the checkpoint signed seq 30.
    await trail.sql(
        "DELETE FROM audit_log WHERE seq > 25",
        "UPDATE audit_head SET seq = 25, hash = (SELECT hash FROM audit_log WHERE seq = 25)",
    )
    result = await trail.cli("audit", "verify")
    assert_tampered(result, 26)
    assert "checkpoint" in result.err


async def test_a_consistently_rewritten_chain_disagrees_with_its_checkpoint(trail: Trail) -> None:
    """Whoever recomputes every hash after an edit still cannot re-sign the checkpoint."""
    from services.audit.repository import AuditRepository
    from shared.audit import FIELDS, GENESIS, chain

    async with trail.db.transaction() as session:
        rows = await AuditRepository(session).page(0, 1000)
    updates = []
    prev = GENESIS
    for row in rows:
        values = dict(zip((*FIELDS, "hash"), row, strict=True))
        if values["seq"] == 7:
            values["target"] = "case:someone-else"
        prev = chain(prev, values)
        updates.append((values["seq"], values["target"], prev))
    async with trail.db.engine.begin() as conn:
        for seq, target, digest in updates:
            await conn.execute(
                text("UPDATE audit_log SET target = :t, hash = :h WHERE seq = :s"),
                {"t": target, "h": digest, "s": seq},
            )
        await conn.execute(text("UPDATE audit_head SET hash = :h"), {"h": prev})
    result = await trail.cli("audit", "verify")
    assert result.code == 1, result.err
    assert "checkpoint" in result.err and "first bad seq 30" in result.err


async def test_checkpoint_and_export_through_the_cli(trail: Trail) -> None:
    made = await trail.cli("audit", "checkpoint")
    assert made.code == 0, made.err
    mark = orjson.loads(made.out)
    key = trail.settings.audit_dir / "audit-signing-key.jwk"
    assert mark["seq"] == ENTRIES and _mode(Path(mark["path"])) is not None
    assert _mode(key) == 0o600  # the audit key is the operator's alone

    exported = await trail.cli("audit", "export", "--from", "5", "--to", "9")
    assert exported.code == 0, exported.err
    lines = [orjson.loads(line) for line in exported.out.splitlines()]
    assert [e["seq"] for e in lines] == [5, 6, 7, 8, 9]
    assert all(len(e["hash"]) == 64 and e["action"] == "test.write" for e in lines)
    out = trail.cwd / "audit.jsonl"
    whole = await trail.cli("audit", "export", "--out", str(out))
    assert whole.code == 0 and len(_lines(out)) == ENTRIES


def _mode(path: Path) -> int | None:
    return path.stat().st_mode & 0o777 if path.exists() else None


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


async def test_usage_errors_exit_2(trail: Trail) -> None:
    bad = await trail.cli("audit", "export", "--from", "yesterday-ish")
    assert bad.code == 2 and "--from" in bad.err
    missing = await trail.cli("audit", "frobnicate")
    assert missing.code == 2
    for since, until in (("9", "5"), ("2026-02-01", "2026-01-01"), ("2026-01-01", "2026-01-01")):
        backwards = await trail.cli("audit", "export", "--from", since, "--to", until)
        assert backwards.code == 2 and "does not come before --to" in backwards.err, backwards
        assert backwards.out == ""


async def test_an_unusable_out_or_checkpoint_directory_is_named(trail: Trail) -> None:
    # --out named the .partial file beside it (a directory only after the whole export).
    for out, message in (
        (trail.cwd, "is a directory"),
        (trail.cwd / "missing" / "audit.jsonl", "no such directory"),
    ):
        refused = await trail.cli("audit", "export", "--out", str(out))
        assert refused.code == 2 and refused.err.startswith(f"failcat: --out {out}: "), refused
        assert message in refused.err and ".partial" not in refused.err
    # A checkpoint directory that is a file read as "no checkpoint yet": verify passed.
    not_a_dir = trail.cwd / "checkpoints.txt"
    not_a_dir.write_text("")
    env = clean_env(**settings_env(trail.settings), FAILCAT_AUDIT_CHECKPOINT_DIR=str(not_a_dir))
    verified = await failcat("audit", "verify", cwd=trail.cwd, env=env)
    assert verified.code == 2 and "is not a directory" in verified.err, verified


async def test_bounds_past_what_a_seq_or_a_time_holds_are_usage_errors(trail: Trail) -> None:
    # A seq past 2^63-1 ended in 'unexpected error: OverflowError' (SQLite), and a time in
    # year 0 once in UTC in an error naming no option.
    cases = (
        ("--to", "99999999999999999999999", "past the largest seq"),
        ("--from", "0001-01-01T00:00:00+14:00", "outside the years 1-9999"),
        ("--to", "9999-12-31T23:59:59-14:00", "outside the years 1-9999"),
    )
    for option, value, message in cases:
        refused = await trail.cli("audit", "export", option, value)
        assert refused.code == 2 and refused.err.startswith(f"failcat: {option} "), refused
        assert message in refused.err and "unexpected" not in refused.err
        assert refused.out == ""


async def test_the_background_job_checkpoints_every_n_entries(trail: Trail) -> None:
    import asyncio

    from services.audit import checkpoints

    settings = trail.settings.model_copy(
        update={"audit_checkpoint_entries": 5, "audit_checkpoint_interval_s": 3600.0}
    )
    job = asyncio.create_task(service.run_checkpoints(trail.db, settings, poll_s=0.05))
    try:
        await append(trail.db, ENTRIES + 1, 4)  # 4 past the last checkpoint: not yet due
        await asyncio.sleep(0.5)
        assert checkpoints.latest_seq(settings.checkpoint_dir) == ENTRIES
        await append(trail.db, ENTRIES + 5, 1)
        for _ in range(100):
            if checkpoints.latest_seq(settings.checkpoint_dir) == ENTRIES + 5:
                break
            await asyncio.sleep(0.05)
        assert checkpoints.latest_seq(settings.checkpoint_dir) == ENTRIES + 5
    finally:
        job.cancel()
    marks, problems = checkpoints.read_all(settings.checkpoint_dir, None)
    assert problems  # without the key nothing is taken on trust
    key = checkpoints.load_key(settings.audit_dir, create=False)
    marks, problems = checkpoints.read_all(settings.checkpoint_dir, key)
    assert not problems and [m.seq for m in marks] == [ENTRIES, ENTRIES + 5]


async def test_a_forged_checkpoint_fails_verification(trail: Trail) -> None:
    """A checkpoint signed with another key is reported, even over an intact chain."""
    from services.audit import checkpoints

    other = checkpoints.load_key(trail.cwd / "elsewhere", create=True)
    assert other is not None
    checkpoints.write(trail.settings.checkpoint_dir, other, ENTRIES, "f" * 64)
    result = await trail.cli("audit", "verify")
    assert result.code == 1 and "not a valid signed checkpoint" in result.err, result.err
    # The summary line said "TAMPERED: tampered".
    assert result.err.startswith(
        "failcat audit verify: TAMPERED: a checkpoint file does not verify\n"
    ), result.err
