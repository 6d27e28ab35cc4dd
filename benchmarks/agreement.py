"""Agreement statistics at scale: 100,000 annotations of 20,000 cases by 10 annotators.

Prints the time of Cohen (every pair), Fleiss and Krippendorff's alpha together, without the
interval and with a 1,000-resample bootstrap, for a nominal and an ordinal field. The targets
(issue 11): <= 500 ms without the interval, <= 3 s with it.

    .venv/bin/python -m benchmarks.agreement [--cases 20000] [--per-case 5] [--annotators 10]
    .venv/bin/python -m benchmarks.agreement --blind-read [--rounds 300]

--end-to-end [--postgres] stores the annotations in a fresh embedded database (then a fresh
Postgres one with --postgres) and times each stage: the load, encoding, the count patterns,
Cohen's pairs, Fleiss, Krippendorff, the bootstrap, then the whole: in memory,
`service.agreement`, `Query.agreement` over HTTP (served; with and without the interval's
bounds) and `failcat agreement` as a new process. Print the figures, with the machine's load.

--blind-read serves failcat (embedded) and times `case(id)` alone and with `annotations`
for a caller who annotates the case (so the blind-read rule is evaluated): the rule's target
is <= 10% on `case(id)`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from services.annotation import agreement as stats

GRADES = ["S0", "S1", "S2", "S3", "S4"]


def ratings(cases: int, per_case: int, annotators: int, seed: int = 1) -> list[stats.Rating]:
    """Each case graded by `per_case` distinct annotators, agreeing with a latent grade about
    70% of the time and otherwise off by one."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 5, cases)
    names = [f"annotator-{i:02d}" for i in range(annotators)]
    out = []
    for case in range(cases):
        for who in rng.choice(annotators, per_case, replace=False):
            grade = (
                truth[case]
                if rng.random() < 0.7
                else np.clip(truth[case] + rng.choice([-1, 1]), 0, 4)
            )
            out.append(stats.Rating(f"case-{case:06d}", names[who], GRADES[int(grade)]))
    return out


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


CASE = "query($id: ID!) { case(id: $id) { id title status revision %s } }"


def blind_read(rounds: int) -> None:

    import httpx

    from benchmarks.common import migrated_env, served, token
    from tests.corpus import aiid_cases

    env, data_dir = migrated_env("failcat-bench-blind-")
    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            resp = client.post("/catalog/v1/cases:bulk", json=aiid_cases(1))
            case_id = resp.json()["results"][0]["id"]
            submitted = client.post(
                "/graphql",
                json={
                    "query": "mutation($id: ID!) { submitAnnotation(caseId: $id, taxonomy: "
                    '"failcat", values: {failure_mode: "safety.harmful_content", severity: '
                    '"S2"}) { id } }',
                    "variables": {"id": case_id},
                },
            ).json()
            assert "errors" not in submitted, submitted

            def request(selection: str) -> float:
                body = {"query": CASE % selection, "variables": {"id": case_id}}
                start = time.perf_counter()
                r = client.post("/graphql", json=body).json()
                assert "errors" not in r, r
                return time.perf_counter() - start

            curated = "severity failureMode impact"
            selection = "annotations { annotator status values }"
            for _ in range(20):
                request("")
                request(curated)
                request(selection)
            # Interleaved, so all see the same machine load.
            triples = [(request(""), request(curated), request(selection)) for _ in range(rounds)]
            plain, decided, with_rule = (
                float(np.median(col)) for col in zip(*triples, strict=True)
            )
    print(f"case(id):                       {plain * 1000:7.2f} ms (median of {rounds})")
    print(f"case(id) {{ severity ... }}:     {decided * 1000:7.2f} ms (curated fields' rule)")
    print(f"case(id) {{ annotations }}:      {with_rule * 1000:7.2f} ms")
    print(f"added by the curated fields' blind-read rule: {(decided / plain - 1) * 100:.1f}%")
    print(f"added by annotations + blind-read rule: {(with_rule / plain - 1) * 100:.1f}%")


async def populate(url: str, cases: int, per_case: int, annotators: int) -> None:
    """Migrate `url` and store the ratings as submitted `failcat` severity annotations."""
    from services.annotation import service
    from services.annotation.models import Annotation
    from services.annotation.repository import AnnotationRepository
    from services.catalog import service as catalog
    from shared.db import Database, utcnow
    from shared.ids import new_id
    from shared.migrate import upgrade_async
    from shared.security import SYSTEM

    await upgrade_async(url)
    db = Database(url)
    data = ratings(cases, per_case, annotators)
    ids: dict[str, str] = {}
    units = sorted({r.unit for r in data})
    for start in range(0, len(units), 2000):
        batch = units[start : start + 2000]
        async with db.transaction() as s:
            results = await catalog.ingest_cases(
                s,
                [
                    {
                        "external_id": u,
                        "model": {"name": "bench", "version": "1"},
                        "data_source": "bench",
                    }
                    for u in batch
                ],
                SYSTEM,
            )
        ids.update({u: r.id for u, r in zip(batch, results, strict=True)})
    async with db.transaction() as s:
        tax = await service.get_taxonomy(s, "failcat")
        now = utcnow()
        await AnnotationRepository(s).insert_rows(
            Annotation,
            [
                {
                    "id": new_id(),
                    "case_id": ids[r.unit],
                    "annotator": r.coder,
                    "taxonomy": "failcat",
                    "taxonomy_version": tax.version,
                    "values": {"severity": r.value, "failure_mode": "safety.harmful_content"},
                    "status": "submitted",
                    "revision": 1,
                    "created_at": now,
                    "updated_at": now,
                    "submitted_at": now,
                }
                for r in data
            ],
        )
    if url.startswith("postgresql"):
        # What autovacuum would do after such a load: without statistics the planner
        # expects one row and picks a nested loop.
        from sqlalchemy import text

        async with db.engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE"))
    await db.dispose()


def row(label: str, ms: tuple[float, float | None], note: str = "") -> None:
    """Wall and (when measured in this process) CPU milliseconds: on a loaded machine the
    CPU figure is the steadier one (for Postgres it leaves out the server's)."""
    wall, cpu = ms
    spent = f"{cpu:8.1f} cpu" if cpu is not None else " " * 12
    print(f"  {label:36s} {wall:8.1f} ms {spent}  {note}".rstrip())


def best_of(fn, repeat: int = 3) -> tuple[float, float]:
    """Best wall and CPU time of `fn()` in ms."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, started = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - started)
    return wall * 1000, cpu * 1000


async def best_async(make, repeat: int = 3) -> tuple[tuple[float, float], object]:
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        start, started = time.perf_counter(), time.process_time()
        result = await make()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - started)
    return (wall * 1000, cpu * 1000), result


async def raw_read(url: str) -> int:
    """The raw engine doing the same read: hand-written SQL, the driver's rows (no
    visibility rule: the floor)."""
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await conn.fetch(
                "SELECT case_id, annotator, \"values\" ->> 'severity' FROM annotation"
                " WHERE taxonomy = 'failcat' AND status = 'submitted'"
            )
        finally:
            await conn.close()
    else:
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        try:
            rows = conn.execute(
                "SELECT case_id, annotator, json_extract(\"values\", '$.severity')"
                " FROM annotation WHERE taxonomy = 'failcat' AND status = 'submitted'"
            ).fetchall()
        finally:
            conn.close()
    return len(rows)


def stages(cols: stats.Columns, order: list[str]) -> None:
    """Each stage of the computation on the columns the database gave."""
    rng = np.random.default_rng(0)
    level = "ordinal"
    enc = stats.encode(cols, order)
    pat = stats.patterns(stats.value_counts(enc))
    once = pat.freq[None].astype(np.float64)
    fixed = stats._fixed_distances(level, enc.categories)
    figures = {
        "encode to integer codes": lambda: stats.encode(cols, order),
        "count patterns": lambda: stats.patterns(stats.value_counts(enc)),
        "Cohen, 45 pairs": lambda: stats._pairs(enc, 0, rng),
        "Fleiss": lambda: stats._fleiss_from(once, pat.rows),
        "Krippendorff": lambda: stats._alphas(once, pat, level, enc.categories),
        "by month": lambda: stats._by_month(cols.months, enc, pat, level),
        "bootstrap alpha+Fleiss x1000": lambda: (
            stats._resampled(pat, 1000, rng, lambda w, p: stats._alpha_from(w, p, level, fixed)),
            stats._resampled(pat, 1000, rng, stats._fleiss_from),
        ),
        "bootstrap Cohen x1000, 45 pairs": lambda: stats._pairs(enc, 1000, rng),
    }
    for name, fn in figures.items():
        row(name, best_of(fn))
    for resamples in (0, 1000):
        ms = best_of(lambda r=resamples: stats.agreement(cols, level, order=order, resamples=r))
        row(f"in memory, resamples={resamples}", ms)


AGREEMENT = """query { agreement(taxonomy: "failcat", field: "severity") {
  n fleissKappa krippendorffAlpha { value %s } pairs { a b n cohenKappa } } }"""


async def end_to_end(cases: int, per_case: int, annotators: int, postgres: bool) -> None:
    import asyncio

    import httpx

    from benchmarks.common import fresh_postgres, migrated_env, postgres_url, served, token
    from services.annotation import service
    from services.annotation.repository import AnnotationRepository
    from services.catalog import service as catalog
    from shared.db import Database
    from shared.security import SYSTEM

    extra = {"FAILCAT_DATABASE_URL": await fresh_postgres(postgres_url())} if postgres else {}
    env, data_dir = migrated_env("failcat-bench-agreement-", **extra)
    url = env.get("FAILCAT_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/catalog.db")
    env = {**env, "FAILCAT_DATABASE_URL": url, "FAILCAT_RUN_INDEXER_IN_PROCESS": "false"}
    await populate(url, cases, per_case, annotators)
    db = Database(url)
    kind = "Postgres" if postgres else "SQLite"
    print(f"{kind}: {cases * per_case:,} annotations of {cases:,} cases by {annotators}")

    # Where the time goes: the rows alone (the database's part), then each computation.
    async def load() -> stats.Columns:
        async with db.transaction() as s:
            return stats.Columns(
                *await AnnotationRepository(s).submitted(
                    "failcat", "severity", catalog.visible_case_ids(SYSTEM), as_text=True
                )
            )

    raw, n = await best_async(lambda: raw_read(url))
    row(f"raw driver read of {n:,} rows", raw, "(hand-written SQL)")
    ms, cols = await best_async(load)
    row(f"load {len(cols):,} ratings", ms, f"({ms[0] / raw[0]:.2f}x the raw read)")
    stages(cols, GRADES)

    for resamples in (0, 1000):

        async def whole(r: int = resamples) -> stats.AgreementReport:
            async with db.transaction() as s:
                return await service.agreement(s, "failcat", "severity", SYSTEM, resamples=r)

        ms, report = await best_async(whole)
        note = f"n={report.n} alpha={report.alpha.value:.4f}"
        row(f"service.agreement, resamples={resamples}", ms, note)
    await db.dispose()

    with served(env) as base:
        headers = {"Authorization": f"Bearer {token(base, data_dir)}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
            for label, bounds in (("Query.agreement, points", ""), ("... with bounds", "low high")):
                body = {"query": AGREEMENT % bounds}
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    answer = (await client.post("/graphql", json=body)).json()
                    best = min(best, time.perf_counter() - start)
                    assert "errors" not in answer, answer
                row(label, (best * 1000, None), "(HTTP, served)")
    await asyncio.to_thread(cli_figures, env)
    if postgres:
        await drop_postgres(url)


def cli_figures(env: dict[str, str]) -> None:
    """`failcat agreement` as a user runs it: a new process, imports included."""
    import os
    import subprocess
    import sys

    from benchmarks.common import ROOT

    run_env = {**os.environ, **env}
    for resamples in (0, 1000):
        argv = [sys.executable, "-m", "services.gateway.cli", "agreement", "--taxonomy"]
        argv += ["failcat", "--field", "severity", "--resamples", str(resamples)]
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, env=run_env, check=True, capture_output=True)
            best = min(best, time.perf_counter() - start)
        row(f"failcat agreement --resamples {resamples}", (best * 1000, None), "(a new process)")
    imports = [sys.executable, "-c", "import services.gateway.cli, services.annotation.service"]
    start = time.perf_counter()
    subprocess.run(imports, cwd=ROOT, env=run_env, check=True)
    row("  of which Python starting, imports", ((time.perf_counter() - start) * 1000, None))


async def drop_postgres(url: str) -> None:
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(
        (base + "/postgres").replace("postgresql+asyncpg://", "postgresql://")
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--per-case", type=int, default=5)
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--blind-read", action="store_true")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    if args.end_to_end:
        import asyncio

        for postgres in (False, True) if args.postgres else (False,):
            asyncio.run(end_to_end(args.cases, args.per_case, args.annotators, postgres))
        return
    if args.blind_read:
        blind_read(args.rounds)
        return
    data = ratings(args.cases, args.per_case, args.annotators)
    print(f"{len(data):,} annotations of {args.cases:,} cases by {args.annotators} annotators")
    for level in ("nominal", "ordinal"):
        for resamples in (0, 1000):
            seconds, report = timed(
                lambda level=level, resamples=resamples: stats.agreement(
                    data, level, order=GRADES, resamples=resamples
                )
            )
            alpha = report.alpha
            print(
                f"{level:8s} resamples={resamples:5d}: {seconds * 1000:8.1f} ms  "
                f"pairs={len(report.pairs)} fleiss={report.fleiss.value:.4f} "
                f"alpha={alpha.value:.4f} [{alpha.low or float('nan'):.4f}, "
                f"{alpha.high or float('nan'):.4f}] n={report.n}"
            )


if __name__ == "__main__":
    main()
