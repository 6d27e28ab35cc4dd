"""Sampling: severe cases always kept, the rest capped per (model, mode, day) by a reservoir."""

from __future__ import annotations

import random
import secrets

import pytest
from sqlalchemy import select

from services.catalog import service
from services.catalog.models import FailureCase, FailureGroup
from shared.errors import BadUserInput
from shared.security import SYSTEM
from tests.catalog.builders import unique
from tests.corpus import aiid_cases


def day_of_cases(n: int, model: str, source: str, severity: str | None, fp: str) -> list[dict]:
    cases = unique(aiid_cases(n))
    for i, c in enumerate(cases):
        c.update(
            model={"name": model, "version": "1"},
            data_source=source,
            occurred_at=f"2026-03-04T{i % 24:02d}:{i % 60:02d}:00Z",
            failure_mode="robustness.input_noise",
            fingerprint=fp,
        )
        c.pop("severity", None)
        if severity:
            c["severity"] = severity
    return cases


async def a_rule(session, daily_cap: int) -> tuple[str, str, str]:
    """A sampling rule (keep S1 and worse) for a fresh model and source; and a fingerprint."""
    model, source = f"m-{secrets.token_hex(3)}", f"s-{secrets.token_hex(3)}"
    await service.set_sampling_rule(
        session,
        model_name=model,
        data_source=source,
        daily_cap=daily_cap,
        keep_at_or_above="S1",
        actor=SYSTEM,
    )
    return model, source, secrets.token_hex(6)


async def test_reservoir_caps_the_day_and_counts_what_it_dropped(session):
    model, source, fp = await a_rule(session, daily_cap=10)
    rules = await service.sampling_rules(session)
    assert any(r.model_name == model and r.daily_cap == 10 for r in rules)
    rng = random.Random(7)
    cases = day_of_cases(40, model, source, "S3", fp)
    first = await service.ingest_cases(session, cases[:25], SYSTEM, rng=rng)
    second = await service.ingest_cases(session, cases[25:], SYSTEM, rng=rng)
    statuses = [r.status for r in first + second]
    # An in-batch arrival may evict an earlier one of the same batch: at most the cap each.
    assert statuses.count("created") >= 10 and first and statuses.count("sampled_out") >= 15
    assert sum(r.status == "created" for r in first) == 10
    stored = (
        (await session.execute(select(FailureCase.id).where(FailureCase.fingerprint == fp)))
        .scalars()
        .all()
    )
    assert len(stored) == 10  # the cap holds across batches, evictions included
    group = (
        await session.execute(select(FailureGroup).where(FailureGroup.fingerprint == fp))
    ).scalar_one()
    assert (group.case_count, group.sampled_out_count) == (10, 30)
    # Evictions make later arrivals as likely to be kept as early ones: some of the second
    # batch survive even though the reservoir was full before it arrived.
    second_ids = {r.id for r in second if r.status == "created"}
    assert second_ids & set(stored)


async def test_severe_cases_and_other_sources_are_always_kept(session):
    model, source, fp = await a_rule(session, daily_cap=2)
    severe = day_of_cases(6, model, source, "S0", fp)
    other = day_of_cases(6, model, source + "-other", "S4", fp + "x")
    results = await service.ingest_cases(session, severe + other, SYSTEM, rng=random.Random(1))
    assert [r.status for r in results] == ["created"] * 12


async def test_curated_cases_are_never_evicted(session):
    from services.catalog.schemas import CasePatch

    model, source, fp = await a_rule(session, daily_cap=2)
    cases = day_of_cases(30, model, source, None, fp)
    kept = await service.ingest_cases(session, cases[:2], SYSTEM)
    for r in kept:
        await service.update_case(session, r.id, CasePatch(title="curated"), 1, SYSTEM)
    rest = await service.ingest_cases(session, cases[2:], SYSTEM, rng=random.Random(3))
    assert {r.status for r in rest} == {"sampled_out"}
    assert len(await service.get_cases(session, [r.id for r in kept], SYSTEM)) == 2


@pytest.mark.parametrize(
    "model_name, data_source, paths",
    [
        ("", "aiid", ["modelName"]),
        ("   ", "aiid", ["modelName"]),
        ("incident-classifier", " \t ", ["dataSource"]),
        ("", "", ["modelName", "dataSource"]),
        ("m" * 201, "aiid", ["modelName"]),
    ],
)
async def test_a_rule_without_a_name_is_refused_naming_the_field(
    session, model_name, data_source, paths
):
    before = len(await service.sampling_rules(session))
    with pytest.raises(BadUserInput) as refused:
        await service.set_sampling_rule(
            session, model_name=model_name, data_source=data_source, daily_cap=5, actor=SYSTEM
        )
    assert [e.path for e in refused.value.errors] == paths
    assert refused.value.message.startswith(f"invalid sampling rule: {paths[0]}: ")
    assert len(await service.sampling_rules(session)) == before


async def test_a_rule_named_with_surrounding_spaces_governs_the_cases_of_that_name(session):
    """Cases' model and source names are stored stripped: so is the rule's, or it matched none."""
    model, source = f"m-{secrets.token_hex(3)}", f"s-{secrets.token_hex(3)}"
    rule = await service.set_sampling_rule(
        session, model_name=f"  {model} ", data_source=f"{source}\t", daily_cap=2, actor=SYSTEM
    )
    assert (rule.model_name, rule.data_source, rule.daily_cap) == (model, source, 2)
    results = await service.ingest_cases(
        session, day_of_cases(5, model, source, "S3", secrets.token_hex(6)), SYSTEM
    )
    assert [r.status for r in results].count("created") == 2
