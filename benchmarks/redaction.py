"""What redaction adds to ingest's CPU stage: validation and hashing (`prepare`) of generated
cases alone, then with `Redactor.apply` (the default mask policy), for ordinary cases (the
pre-filter's fast path) and for cases carrying PII in every blob (the walk and validators).

    python -m benchmarks.redaction [--cases 20000] [--rounds 5]

Rounds alternate the measurements, so both sides see the same load; the best round counts.
End-to-end throughput (HTTP, database) is benchmarks/ingest.py's.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from benchmarks.generator import CaseGenerator
from services.catalog.ingest import prepare
from services.governance.redaction.service import Redactor
from shared.db import utcnow

PII = {
    "contact": {"email": "jane.doe@example.org", "phone": "+1 415-555-2671"},
    "payment": {"card": "4111 1111 1111 1111", "iban": "DE89 3704 0044 0532 0130 00"},
    "client_ip": "192.168.1.20",
    "headers": {"Authorization": "Bearer abc.def.ghi"},
}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    gen = CaseGenerator(seed=3)
    plain = gen.batch(args.cases)
    laden = [{**c, "input": {**c["input"], **PII}} for c in gen.batch(args.cases // 10)]
    modes: dict[str, str | None] = {c["failure_mode"]: None for c in plain + laden}
    now = utcnow()
    redactor = Redactor({}, None)

    def run(items: list[dict[str, Any]], redact: bool) -> Callable[[], None]:
        def go() -> None:
            for i, raw in enumerate(items):
                p = prepare(i, raw, modes, now)
                if redact and not isinstance(p, list):
                    p.redacted = redactor.apply(p.case)

        return go

    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, items, redact in (
            ("prepare only", plain, False),
            ("prepare + redaction, ordinary cases", plain, True),
            ("prepare only, PII cases", laden, False),
            ("prepare + redaction, PII cases", laden, True),
        ):
            rate = len(items) / timed(run(items, redact))
            best[name] = max(best.get(name, 0.0), rate)
    for name, rate in best.items():
        print(f"{name:40s} {rate:9.0f} cases/s")
    base, with_redaction = best["prepare only"], best["prepare + redaction, ordinary cases"]
    print(
        f"redaction costs ordinary cases {100 * (1 - with_redaction / base):.1f}% of the CPU stage"
    )


if __name__ == "__main__":
    main()
