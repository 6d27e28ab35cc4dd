"""Sampling rules: keep every severe case, cap the rest per (model, failure mode, day).

The cap is a reservoir (Vitter's Algorithm R): the n-th case of a day's reservoir is kept with
probability cap/n and then replaces a uniformly chosen earlier one, so the kept cases are a
uniform sample of the day whatever their arrival order. Only uncurated cases (revision 1) are
evicted; if every kept case has been curated, the newcomer is sampled out instead, so the cap
holds. What is sampled out (or evicted) is counted on its failure group, so rates stay right.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.catalog.models import SamplingRule
from shared.vocabulary import SEVERITIES

if TYPE_CHECKING:
    from services.catalog.ingest import Prepared
    from services.catalog.repository import CatalogRepository


def reservoir_key(model: str, failure_mode: str | None, day: str) -> str:
    return f"{model}|{failure_mode or '-'}|{day}"


@dataclass
class Reservoir:
    key: str
    cap: int
    seen: int
    kept: int
    stored: list[str] | None = None  # evictable stored ids, loaded only when needed
    batch: list[Prepared] = field(default_factory=list)


@dataclass
class SamplingOutcome:
    kept: list[Prepared]
    sampled_out: list[Prepared]
    evicted: list[str]
    counters: list[dict[str, object]]


def applies(rule: SamplingRule | None, severity: str | None) -> bool:
    """Whether the reservoir governs this case (false: always kept)."""
    if rule is None or not rule.enabled:
        return False
    return severity is None or SEVERITIES.index(severity) > SEVERITIES.index(rule.keep_at_or_above)


async def sample(
    repo: CatalogRepository, items: list[Prepared], rng: random.Random
) -> SamplingOutcome:
    rules = {(r.model_name, r.data_source): r for r in await repo.sampling_rules()}
    if not rules:
        return SamplingOutcome(items, [], [], [])
    governed: dict[str, SamplingRule] = {}
    for p in items:
        rule = rules.get((p.case.model.name, p.case.data_source))
        if applies(rule, p.case.severity):
            p.reservoir_key = reservoir_key(
                p.case.model.name, p.case.failure_mode, p.occurred_at.date().isoformat()
            )
            governed[p.reservoir_key] = rule  # type: ignore[assignment]
    if not governed:
        return SamplingOutcome(items, [], [], [])

    counters = await repo.sampling_counters(list(governed))
    pools = {
        k: Reservoir(k, rule.daily_cap, *counters.get(k, (0, 0))) for k, rule in governed.items()
    }
    out: set[int] = set()
    evicted: list[str] = []
    for p in items:
        if p.reservoir_key is None:
            continue
        pool = pools[p.reservoir_key]
        pool.seen += 1
        if pool.kept < pool.cap:
            pool.kept += 1
            pool.batch.append(p)
            continue
        if rng.randrange(pool.seen) >= pool.cap:
            out.add(p.index)
            continue
        if pool.stored is None:
            pool.stored = await repo.evictable_in_reservoir(pool.key)
        candidates = len(pool.stored) + len(pool.batch)
        if candidates == 0:
            out.add(p.index)
            continue
        victim = rng.randrange(candidates)
        if victim < len(pool.stored):
            evicted.append(pool.stored.pop(victim))
        else:
            out.add(pool.batch.pop(victim - len(pool.stored)).index)
        pool.batch.append(p)
    return SamplingOutcome(
        kept=[p for p in items if p.index not in out],
        sampled_out=[p for p in items if p.index in out],
        evicted=evicted,
        counters=[{"reservoir_key": r.key, "seen": r.seen, "kept": r.kept} for r in pools.values()],
    )
