"""Impact metrics: remediation time (a group's first seen -> resolved) and retraining cycle
time (a plan's approval -> evaluation), per team, model or failure mode, per week or month."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog import service as catalog
from services.plans.repository import PlansRepository
from shared.db import as_utc
from shared.errors import BadUserInput, FieldError
from shared.security import Principal

MAX_SPAN = timedelta(days=3 * 366)


class ImpactMetric(StrEnum):
    REMEDIATION_TIME = "remediation_time"
    RETRAINING_CYCLE_TIME = "retraining_cycle_time"


class Dimension(StrEnum):
    TEAM = "team"
    MODEL = "model"
    FAILURE_MODE = "failure_mode"


class Period(StrEnum):
    WEEK = "week"
    MONTH = "month"


@dataclass(slots=True)
class ImpactPoint:
    key: str
    period: datetime
    count: int
    mean_hours: float
    median_hours: float
    p90_hours: float


def period_start(at: datetime, period: Period) -> datetime:
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.MONTH:
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())  # Monday


def summarize(samples: Iterable[tuple[str, datetime, float]], period: Period) -> list[ImpactPoint]:
    """(key, when it ended, hours) -> one point per key and period, oldest period first."""
    buckets: dict[tuple[str, datetime], list[float]] = {}
    for key, ended, hours in samples:
        buckets.setdefault((key, period_start(ended, period)), []).append(hours)
    out = []
    for (key, start), hours in sorted(buckets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ordered = sorted(hours)
        out.append(
            ImpactPoint(
                key=key,
                period=start,
                count=len(ordered),
                mean_hours=statistics.fmean(ordered),
                median_hours=statistics.median(ordered),
                p90_hours=ordered[max(0, -(-9 * len(ordered) // 10) - 1)],
            )
        )
    return out


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


async def impact_metrics(
    session: AsyncSession,
    viewer: Principal,
    metric: ImpactMetric,
    by: Dimension,
    period: Period,
    since: datetime,
    until: datetime,
    model: str | None = None,
) -> list[ImpactPoint]:
    since, until = as_utc(since), as_utc(until)
    if until <= since or until - since > MAX_SPAN:
        raise BadUserInput(
            "invalid time range",
            [FieldError("until", "after since, and at most three years after it")],
        )
    if model is not None and "\x00" in model:
        return []  # no model's name holds NUL; Postgres would refuse the query
    if metric is ImpactMetric.REMEDIATION_TIME:
        rows = await catalog.resolved_groups(session, viewer, since, until, model)
        key_of = {Dimension.TEAM: 5, Dimension.MODEL: 1, Dimension.FAILURE_MODE: 2}[by]
        samples = [(r[key_of] or "(none)", r[4], _hours(r[3], r[4])) for r in rows]
        return summarize(samples, period)
    plans = await PlansRepository(session).evaluated_plans(since, until, model)
    samples: list[tuple[str, datetime, float]] = []
    for plan in plans:
        hours = _hours(plan.approved_at, plan.evaluated_at)  # type: ignore[arg-type]
        for key in await _plan_keys(session, plan, by, viewer):
            samples.append((key, plan.evaluated_at, hours))  # type: ignore[arg-type]
    return summarize(samples, period)


async def _plan_keys(
    session: AsyncSession, plan: Any, by: Dimension, viewer: Principal
) -> set[str]:
    """A plan counts under its model, or under each team / failure mode of the evidence
    cases the viewer may see."""
    if by is Dimension.MODEL:
        return {plan.model_name}
    cases = await catalog.get_cases(session, plan.evidence.get("case_ids", []), viewer)
    keys = {getattr(c, by.value) or "(none)" for c in cases}
    return keys or {"(none)"}
