"""History, optimistic concurrency, status workflow, merges, groups and regressions."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from services.catalog import service
from services.catalog.schemas import CasePatch, Link, Status
from shared.errors import BadUserInput, Conflict, NotFound
from shared.security import SYSTEM, Principal, Sensitivity
from tests.catalog.builders import a_case, ingest, unique
from tests.corpus import aiid_cases

CURATOR = Principal(
    subject="alice",
    client_id="ui",
    scopes=frozenset({"cases:write"}),
    clearance=Sensitivity.RESTRICTED,
)


async def test_update_writes_a_revision_with_old_and_new_values(session):
    case_id = await a_case(session, severity="S3", title="before")
    case = await service.update_case(
        session,
        case_id,
        CasePatch(title="after", severity="S1"),
        1,
        CURATOR,
        reason="regraded after review",
    )
    assert case.revision == 2 and case.title == "after" and case.severity == "S1"
    revs = await service.revisions_of(session, [case_id])
    assert [r.revision for r in revs] == [1, 2]
    assert revs[1].actor == "alice" and revs[1].reason == "regraded after review"
    assert revs[1].changes == {
        "title": {"old": "before", "new": "after"},
        "severity": {"old": "S3", "new": "S1"},
    }


async def test_stale_expected_revision_is_a_conflict(session):
    case_id = await a_case(session)
    await service.update_case(session, case_id, CasePatch(title="one"), 1, CURATOR)
    with pytest.raises(Conflict, match="revision 2"):
        await service.update_case(session, case_id, CasePatch(title="two"), 1, CURATOR)
    assert (await service.get_case(session, case_id, SYSTEM)).title == "one"


async def test_captured_facts_cannot_be_patched(session):
    case_id = await a_case(session)
    before = await service.get_case(session, case_id, SYSTEM)
    facts = (before.input, before.prediction, before.content_hash, before.occurred_at)
    for field in ("input", "prediction", "model", "occurred_at", "content_hash", "confidence"):
        with pytest.raises(ValueError, match="Extra inputs are not permitted"):
            CasePatch.model_validate({field: {"label": "changed"}})
    await service.update_case(session, case_id, CasePatch(summary="curated"), 1, CURATOR)
    after = await service.get_case(session, case_id, SYSTEM)
    assert (after.input, after.prediction, after.content_hash, after.occurred_at) == facts


async def test_as_of_returns_the_case_as_it_was(session):
    case_id = await a_case(session, title="v1", tags=["aiid", "first"])
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await service.update_case(
        session,
        case_id,
        CasePatch(
            title="v2", tags=["second"], links=[Link(kind="ticket", url="https://jira.example/T-1")]
        ),
        1,
        CURATOR,
    )
    past = await service.get_case_as_of(session, case_id, SYSTEM, middle)
    then = past.case
    now = await service.get_case(session, case_id, SYSTEM)
    assert (then.title, then.tags, then.revision, past.links) == ("v1", ["aiid", "first"], 1, [])
    assert (now.title, now.tags, now.revision) == ("v2", ["second"], 2)
    assert [lk.url for lk in await service.links_of(session, [case_id])] == [
        "https://jira.example/T-1"
    ]
    with pytest.raises(NotFound):
        await service.get_case_as_of(session, case_id, SYSTEM, datetime(2000, 1, 1, tzinfo=UTC))


async def test_status_workflow_names_the_allowed_transitions(session):
    case_id = await a_case(session)
    with pytest.raises(BadUserInput) as err:
        await service.update_case(session, case_id, CasePatch(status=Status.RESOLVED), 1, CURATOR)
    assert "triaged" in err.value.errors[0].message and err.value.errors[0].path == "status"
    rev = 1
    for status in ("triaged", "confirmed", "in_remediation", "resolved"):
        case = await service.update_case(session, case_id, CasePatch(status=status), rev, CURATOR)
        rev = case.revision
    assert case.status == "resolved"


async def test_merge_points_the_duplicate_at_the_survivor_and_keeps_both_histories(session):
    survivor, dup = await ingest(session, unique(aiid_cases(2)))
    merged = await service.merge_case(session, dup, survivor, 1, CURATOR)
    assert (merged.status, merged.merged_into_id) == ("duplicate", survivor)
    assert [r.revision for r in await service.revisions_of(session, [dup])] == [1, 2]
    assert [r.revision for r in await service.revisions_of(session, [survivor])] == [1]
    with pytest.raises(BadUserInput):
        await service.update_case(session, dup, CasePatch(status="triaged"), 2, CURATOR)


async def test_resolved_group_regresses_on_a_newer_model_version(session):
    fp = "fp-" + secrets.token_hex(4)
    cases = unique(aiid_cases(3))
    for i, c in enumerate(cases):
        c["fingerprint"] = fp
        c["model"] = {"name": "ranker-" + fp, "version": ["2.9.0", "2.10.0", "2.8.1"][i]}
    [first] = await ingest(session, cases[:1])
    group_id = (await service.get_case(session, first, SYSTEM)).group_id
    resolved = await service.resolve_group(session, group_id, "2.9.0", CURATOR)
    assert resolved.status == "resolved"
    await ingest(session, cases[2:3])  # an older version: still resolved
    [group] = await service.groups_by_id(session, [group_id])
    await session.refresh(group)
    assert group.status == "resolved"
    await ingest(session, cases[1:2])  # 2.10.0 > 2.9.0 (numeric, not lexical)
    await session.refresh(group)
    assert (group.status, group.regressed_in_version, group.resolved_in_version) == (
        "regressed",
        "2.10.0",
        "2.9.0",
    )
    assert group.case_count == 3


async def test_visibility_hides_cases_above_clearance_or_of_other_teams(session):
    secret = await a_case(session, sensitivity="restricted", team="fraud")
    other_team = await a_case(session, sensitivity="internal", team="search")
    viewer = Principal(
        subject="bob",
        client_id="c",
        scopes=frozenset({"cases:read"}),
        team="fraud",
        clearance=Sensitivity.CONFIDENTIAL,
    )
    for case_id in (secret, other_team):
        with pytest.raises(NotFound):
            await service.get_case(session, case_id, viewer)
    assert await service.get_cases(session, [secret, other_team], viewer) == []


async def test_unknown_failure_mode_on_update_lists_close_codes(session):
    case_id = await a_case(session)
    with pytest.raises(BadUserInput) as err:
        await service.update_case(
            session, case_id, CasePatch(failure_mode="safety.halucination"), 1, CURATOR
        )
    assert "safety.hallucination" in err.value.errors[0].message


@pytest.mark.parametrize(
    "codes, index, message",
    [
        (["  "], 0, "must not be empty"),
        (["safety.x_{s}", "safety.x_{s}"], 1, "safety.x_{s} is listed twice (also codes.0)"),
        (
            ["safety.Echo_{s}", "safety.echo_{s}"],
            1,
            "safety.echo_{s} differs from codes.0 (safety.Echo_{s}) only in case",
        ),
        (["Safety"], 0, "Safety differs from the existing safety only in case"),
        (
            ["robustness.Input_Noise"],
            0,
            "robustness.Input_Noise differs from the existing robustness.input_noise only in case",
        ),
    ],
)
async def test_codes_that_search_could_not_tell_apart_are_refused_and_nothing_published(
    session, codes, index, message
):
    """Search matches a failure mode in any case: a code differing from another only in case
    would be two modes here and one there."""
    s = secrets.token_hex(3)
    before, _ = await service.taxonomy(session)
    with pytest.raises(BadUserInput) as refused:
        await service.publish_taxonomy(session, [{"code": c.format(s=s)} for c in codes], CURATOR)
    assert [e.as_dict() for e in refused.value.errors] == [
        {"path": f"codes.{index}.code", "message": message.format(s=s)}
    ]
    assert (await service.taxonomy(session))[0] == before


async def test_a_blank_title_is_no_title(session):
    code = "safety.sycophancy_" + secrets.token_hex(3)
    version = await service.publish_taxonomy(
        session,
        [{"code": code, "title": " \t "}, {"code": code + "_b", "title": " Sycophancy "}],
        CURATOR,
    )
    titles = {m.code: m.title for m in (await service.taxonomy(session, version))[1]}
    assert (titles[code], titles[code + "_b"]) == (code, "Sycophancy")


async def test_published_taxonomy_version_is_used_by_new_grades_and_old_cases_keep_theirs(
    session,
):
    old_case = await a_case(session, failure_mode="safety.hallucination")
    code = "safety.sycophancy_" + secrets.token_hex(3)
    version = await service.publish_taxonomy(
        session, [{"code": code, "title": "Sycophancy"}], CURATOR
    )
    new_case = await a_case(session, failure_mode=code)
    assert (await service.get_case(session, old_case, SYSTEM)).taxonomy_version == version - 1
    graded = await service.get_case(session, new_case, SYSTEM)
    assert (graded.taxonomy_version, graded.failure_mode_parent) == (version, "safety")
    with pytest.raises(BadUserInput, match="already exists"):
        await service.publish_taxonomy(session, [{"code": code}], CURATOR)
