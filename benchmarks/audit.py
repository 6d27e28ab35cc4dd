"""What the audit trail costs, and how fast it verifies, on both backends, in one run.

    python -m benchmarks.audit [--entries 1000000] [--ingest-cases 10000] [--reads 3000]
                               [--only verify|ingest|read] [--embedded-only]

1. verify: `--entries` entries are bulk-created with the chain formula (shared.audit's
   canonical form; executemany on SQLite, COPY on Postgres), then services.audit.service.verify
   streams them back in keyset pages and recomputes every hash. Target: 1,000,000 in <= 10 s.
2. ingest: batches of 1,000 generated cases stored in-process through the catalog service
   (audited: one entry per batch, with its counts) and through the same ingest without the
   audit call, alternating batch by batch. Target: within 5%.
3. case(id): two `failcat serve` processes on one database, FAILCAT_AUDIT_READS on and off,
   `Query.case(id)` sent one at a time to each, alternating request by request; p50 of each.
   Target: audited p50 within +0.3 ms. Beside it, the engine's own share: the statement the
   read runs, with and without its entry, straight on the driver (asyncpg; sqlite3).
Postgres comes from FAILCAT_BENCH_DATABASE_URL / FAILCAT_TEST_DATABASE_URL (else
infra/scripts/postgres.sh starts one); each measurement uses a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import ROOT, fresh_postgres, migrated_env, postgres_url, served, token
from shared.audit import FIELDS, GENESIS, canonical_values
from shared.migrate import upgrade_async
from shared.settings import Settings

sys.path.insert(0, str(ROOT))

ACTIONS = ("case.read", "cases.search", "cases.ingest", "case.update", "auth.token")


def chained_rows(n: int) -> list[tuple[Any, ...]]:
    """n entries in FIELDS order plus their hash, chained from the genesis hash."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows, prev = [], GENESIS
    sha256 = hashlib.sha256
    for i in range(1, n + 1):
        action = ACTIONS[i % len(ACTIONS)]
        details = {"query": "refund severity:<=S2", "hits": i % 97} if i % 5 == 1 else None
        values = (
            i,
            start + timedelta(microseconds=i * 137),
            f"user-{i % 50}",
            f"client-{i % 7}",
            "payments-ml" if i % 3 else None,
            action,
            f"case:{i:032x}",
            "ok" if i % 11 else "denied",
            f"{i:032x}",
            details,
        )
        prev = sha256(prev.encode() + canonical_values(values)).hexdigest()
        rows.append((*values, prev))
    return rows


async def bulk_create(url: str, rows: list[tuple[Any, ...]]) -> None:
    last_seq, last_hash = rows[-1][0], rows[-1][-1]
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        with conn:
            conn.executemany(
                "INSERT INTO audit_log (seq, at, actor_subject, actor_client, actor_team, action,"
                " target, outcome, correlation_id, details, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        *r[:1],
                        r[1].strftime("%Y-%m-%d %H:%M:%S.%f"),  # SQLAlchemy's SQLite DATETIME
                        *r[2:9],
                        None if r[9] is None else orjson.dumps(r[9]).decode(),
                        r[10],
                    )
                    for r in rows
                ),
            )
            conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (last_seq, last_hash))
        conn.close()
        return
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        # COPY is binary: jsonb's binary form is a version byte (1) and the JSON text.
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda v: b"\x01" + v.encode(),
            decoder=lambda v: v[1:].decode(),
            schema="pg_catalog",
            format="binary",
        )
        await conn.copy_records_to_table(
            "audit_log",
            records=(
                (*r[:9], None if r[9] is None else orjson.dumps(r[9]).decode(), r[10]) for r in rows
            ),
            columns=[*FIELDS, "hash"],
        )
        await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", last_seq, last_hash)
        await conn.execute("ANALYZE audit_log")
    finally:
        await conn.close()


async def bench_verify(url: str, n: int, data_dir: Path) -> None:
    from services.audit import service
    from shared.db import Database

    await upgrade_async(url)
    started = time.perf_counter()
    rows = chained_rows(n)
    made = time.perf_counter() - started
    started = time.perf_counter()
    await bulk_create(url, rows)
    stored = time.perf_counter() - started
    del rows
    settings = Settings(data_dir=data_dir, database_url=url)
    db = Database(url)
    try:
        await service.checkpoint_now(db, settings)
        cpu = time.process_time()
        report = await service.verify(db, settings)
        cpu = time.process_time() - cpu
    finally:
        await db.dispose()
    assert report.ok and report.entries == n, report.as_json()
    print(
        f"  verify: {n:,} entries in {report.seconds:.2f} s "
        f"({n / report.seconds:,.0f} entries/s; target <= 10 s; this process's CPU "
        f"{cpu:.2f} s)  "
        f"[generated {made:.1f} s, stored {stored:.1f} s]"
    )


async def bench_ingest(url: str, n: int, batch: int) -> None:
    from benchmarks.generator import CaseGenerator
    from services.catalog import service as catalog
    from services.catalog.ingest import ingest as unaudited
    from shared.db import Database
    from shared.security import SYSTEM

    await upgrade_async(url)
    gen = CaseGenerator(seed=7)
    db = Database(url)
    timings: dict[str, list[float]] = {"audited": [], "unaudited": []}
    try:
        warm = gen.batch(batch)
        async with db.transaction() as s:
            await catalog.ingest_cases(s, warm, SYSTEM)
        for i in range(0, n, batch):
            for name in ("audited", "unaudited") if (i // batch) % 2 else ("unaudited", "audited"):
                cases = gen.batch(batch)
                started = time.perf_counter()
                async with db.transaction() as s:
                    if name == "audited":
                        await catalog.ingest_cases(s, cases, SYSTEM)
                    else:
                        await unaudited(s, cases, SYSTEM, None)
                timings[name].append(time.perf_counter() - started)
        append_ms = await entry_cost(db)
    finally:
        await db.dispose()
    # Medians of the per-batch times: one slow batch on a shared machine moves a sum.
    rate = {k: batch / statistics.median(v) for k, v in timings.items()}
    mean = {k: batch * len(v) / sum(v) for k, v in timings.items()}
    change = (rate["audited"] / rate["unaudited"] - 1) * 100
    print(
        f"  ingest: audited {rate['audited']:,.0f} cases/s, unaudited "
        f"{rate['unaudited']:,.0f} cases/s (medians of {len(timings['audited'])} batches "
        f"each): {change:+.1f}% (target within -5%); means {mean['audited']:,.0f} vs "
        f"{mean['unaudited']:,.0f}"
    )
    batch_ms = statistics.median(timings["unaudited"]) * 1000
    print(
        f"  ingest: one entry per batch costs {append_ms:.2f} ms (a unit of work with the entry "
        f"minus one without, medians): {append_ms / batch_ms * 100:.2f}% of a batch's "
        f"{batch_ms:.0f} ms"
    )


async def entry_cost(db: Any, n: int = 200) -> float:
    """ms an audit entry adds to a unit of work (medians of alternating units)."""
    from sqlalchemy import text

    from shared.audit import audit

    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(n):
        for with_entry in (True, False) if i % 2 else (False, True):
            started = time.perf_counter()
            async with db.transaction() as s:
                await s.execute(text("SELECT 1"))
                if with_entry:
                    audit(s, "bench", "cases.ingest", None, details={"counts": {"created": i}})
            times[with_entry].append(time.perf_counter() - started)
    return (statistics.median(times[True]) - statistics.median(times[False])) * 1000


WARM_UP = 200


def alternating(reads: int) -> Iterator[tuple[int, str, bool]]:
    """(i, "on" or "off", measured) for `reads` rounds after WARM_UP ones: request by request,
    in alternating order, so both sides see the same moment of the machine (rounds of
    hundreds drifted by more than the difference measured)."""
    for i in range(WARM_UP + reads):
        for name in ("on", "off") if i % 2 else ("off", "on"):
            yield i, name, i >= WARM_UP


def bench_reads(extra: dict[str, str], reads: int) -> None:
    from tests.corpus import aiid_cases

    env, data_dir = migrated_env("failcat-bench-audit-", **extra)
    db = env.get("FAILCAT_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/catalog.db")
    shared = {**env, "FAILCAT_DATABASE_URL": db, "FAILCAT_RUN_INDEXER_IN_PROCESS": "false"}
    query = "query One($id: ID!) { case(id: $id) { id title severity status model { name } } }"
    with served(shared) as on, served({**shared, "FAILCAT_AUDIT_READS": "false"}) as off:
        tok = token(on, data_dir)
        head = {"Authorization": f"Bearer {tok}"}
        resp = httpx.post(
            f"{on}/catalog/v1/cases:bulk",
            content=orjson.dumps(aiid_cases(100)),
            headers={**head, "Content-Type": "application/json"},
            timeout=60,
        )
        resp.raise_for_status()
        ids = [r["id"] for r in resp.json()["results"]]
        lat: dict[str, list[float]] = {"on": [], "off": []}
        with (
            httpx.Client(base_url=on, headers=head) as c_on,
            httpx.Client(base_url=off, headers=head) as c_off,
        ):
            clients = {"on": c_on, "off": c_off}

            def one(name: str, i: int) -> float:
                body = {"query": query, "variables": {"id": ids[i % len(ids)]}}
                started = time.perf_counter()
                r = clients[name].post("/graphql", json=body)
                elapsed = time.perf_counter() - started
                assert r.status_code == 200 and "errors" not in r.json(), r.text
                return elapsed

            for i, name, measured in alternating(reads):
                elapsed = one(name, i)
                if measured:
                    lat[name].append(elapsed)
    p50 = {k: statistics.median(v) * 1000 for k, v in lat.items()}
    p90 = {k: statistics.quantiles(v, n=10)[-1] * 1000 for k, v in lat.items()}
    print(
        f"  case(id): p50 audited {p50['on']:.2f} ms, unaudited {p50['off']:.2f} ms: "
        f"{p50['on'] - p50['off']:+.2f} ms (target <= +0.3 ms); p90 {p90['on']:.2f} vs "
        f"{p90['off']:.2f} ms; {len(lat['on'])} requests each"
    )
    creds = orjson.loads((data_dir / "bootstrap-client.json").read_bytes())
    engine = asyncio.run(engine_read_cost(db, ids, creds["client_id"], reads))
    print(
        f"  engine: the statement case(id) runs, with and without its entry, straight on the "
        f"driver ({'asyncpg' if db.startswith('postgresql') else 'sqlite3'}), as the server "
        f"runs it: p50 {engine['on']:.3f} vs {engine['off']:.3f} ms: "
        f"{engine['on'] - engine['off']:+.3f} ms"
    )


class CaseReadSQL:
    """case(id)'s read as the server sends it to its driver: the catalog repository's
    statement for `subject` (the bootstrap admin), compiled once for `dialect`, with its audit
    entry's CTEs when `audited`; `for_case` gives its SQL and positional values."""

    def __init__(self, dialect: Any, subject: str, audited: bool) -> None:
        from services.annotation.repository import blind_params, curated_blind_condition
        from services.annotation.taxonomies import FAILCAT
        from services.catalog.models import FailureCase
        from services.catalog.repository.cases import _CASE_ID, _case_and_statement
        from shared.security import Principal, Scope, Sensitivity
        from shared.visibility import Visibility

        self.reader = Principal(
            subject, subject, frozenset({Scope.ADMIN.value}), clearance=Sensitivity.RESTRICTED
        )
        column = curated_blind_condition(FailureCase.id)
        statement = _case_and_statement(Visibility.of(self.reader), column, audited)
        self.compiled = statement.compile(dialect=dialect)
        self.params, self.case_param = blind_params(subject, FAILCAT), _CASE_ID
        self.audited = audited

    def entry_for(self, case_id: str) -> Any:
        from shared.audit import entry

        return entry(self.reader, "case.read", f"case:{case_id}", read=True)

    def for_case(self, case_id: str) -> tuple[str, tuple[Any, ...]]:
        from shared.audit import read_entry_params

        values = {**self.params, self.case_param: case_id}
        if self.audited:
            values |= read_entry_params(self.entry_for(case_id))
        state = self.compiled.construct_expanded_state(values)
        return state.statement, tuple(state.positional_parameters)


async def engine_read_cost(url: str, ids: list[str], subject: str, reads: int) -> dict[str, float]:
    """p50 ms of the read with its entry appended (on) and without (off), alternating, each
    as the server runs it (Postgres: the statement alone, its own implicit transaction;
    SQLite: the read, then the append and its commit), straight on the driver: the engine's
    own share of the cost."""
    lat: dict[str, list[float]] = {"on": [], "off": []}
    if url.startswith("sqlite"):
        await asyncio.to_thread(_sqlite_engine_reads, url, ids, subject, reads, lat)
    else:
        await _pg_engine_reads(url, ids, subject, reads, lat)
    return {k: statistics.median(v) * 1000 for k, v in lat.items()}


async def _pg_engine_reads(
    url: str, ids: list[str], subject: str, reads: int, lat: dict[str, list[float]]
) -> None:
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    reads_sql = {name: CaseReadSQL(dialect(), subject, name == "on") for name in ("on", "off")}
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for i, name, measured in alternating(reads):
            sql, args = reads_sql[name].for_case(ids[i % len(ids)])
            started = time.perf_counter()
            # alone, as the server runs a unit of work's leading reads (pg_deferred_begin)
            rows = await conn.fetch(sql, *args)  # prepared once, as the server's
            elapsed = time.perf_counter() - started
            assert len(rows) == 1
            if measured:
                lat[name].append(elapsed)
    finally:
        await conn.close()


def _sqlite_engine_reads(
    url: str, ids: list[str], subject: str, reads: int, lat: dict[str, list[float]]
) -> None:
    import sqlite3

    from sqlalchemy.dialects.sqlite.pysqlite import dialect

    from shared.audit import _append_after_rows, register_chain_function
    from shared.db import _sqlite_pragmas

    read = CaseReadSQL(dialect(), subject, False)  # SQLite: the entry follows the rows
    conn = sqlite3.connect(url.split("///", 1)[1])
    _sqlite_pragmas(conn, None)  # the server's connections' (WAL, synchronous=NORMAL)
    register_chain_function(conn)
    try:
        for i, name, measured in alternating(reads):
            case_id = ids[i % len(ids)]
            sql, args = read.for_case(case_id)
            started = time.perf_counter()
            rows = conn.execute(sql, args).fetchall()
            if name == "on":  # the server's own step after the read's rows: append, commit
                _append_after_rows(read.entry_for(case_id))(conn, rows)
            elapsed = time.perf_counter() - started
            assert len(rows) == 1
            if measured:
                lat[name].append(elapsed)
    finally:
        conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--ingest-cases", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--reads", type=int, default=3000)
    ap.add_argument("--only", choices=["verify", "ingest", "read"])
    ap.add_argument("--embedded-only", action="store_true")
    args = ap.parse_args()
    backends = ["embedded"] if args.embedded_only else ["embedded", "postgres"]
    for backend in backends:
        print(f"{backend}:", flush=True)

        async def url(tmp: str, backend: str = backend) -> str:
            if backend == "postgres":
                return await fresh_postgres(postgres_url())
            return f"sqlite+aiosqlite:///{tmp}/catalog.db"

        with tempfile.TemporaryDirectory() as tmp:
            if args.only in (None, "verify"):
                await bench_verify(await url(tmp + "/v"), args.entries, Path(tmp) / "v")
        with tempfile.TemporaryDirectory() as tmp:
            if args.only in (None, "ingest"):
                await bench_ingest(await url(tmp), args.ingest_cases, args.batch)
        if args.only in (None, "read"):
            extra = {}
            if backend == "postgres":
                extra["FAILCAT_DATABASE_URL"] = await fresh_postgres(postgres_url())
            await asyncio.to_thread(bench_reads, extra, args.reads)


if __name__ == "__main__":
    asyncio.run(main())
