"""The safeguards' and plans' writes leave audit entries in their own unit of work: a waiver
(with its reason, approver and expiry), its revocation, a suite version, a run, an accepted
resolution and plan writes; a refused write leaves none."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.audit.models import AuditEntry
from tests.cli_run import failcat
from tests.gateway.helpers import codes, data, gql
from tests.safeguards.builders import (
    ACCEPT,
    a_name,
    create_suite,
    ingest,
    model_cases,
    record_run,
)

WAIVE = """mutation($w: WaiverInput!) {
  waiveGroup(waiver: $w) { id groupId approvedBy expiresAt } }"""
REVOKE = "mutation($id: ID!) { revokeWaiver(id: $id) { id revokedBy } }"


@pytest.fixture(scope="module")
async def tokens(token_for):
    return {
        "curator": await token_for(
            "cases:ingest cases:write cases:read evals:write plans:write plans:read",
            clearance="restricted",
        ),
        "reviewer": await token_for(
            "reviews:write cases:read plans:write plans:read", clearance="restricted"
        ),
    }


async def _entries(db, *targets: str) -> list[AuditEntry]:
    async with db.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEntry).where(AuditEntry.target.in_(targets)).order_by(AuditEntry.seq)
        )
        return list(rows.scalars())


async def _group_of(client, token, case_id):
    body = await gql(
        client, token, "query($id: ID!) { case(id: $id) { group { id } } }", {"id": case_id}
    )
    return data(body)["case"]["group"]["id"]


async def test_a_waiver_and_its_revocation_are_audited(client, tokens, db):
    cur, rev = tokens["curator"], tokens["reviewer"]
    model = a_name("audited")
    [case_id] = await ingest(client, cur, model_cases(model, 1, severity="S0"))
    group = await _group_of(client, cur, case_id)
    expires = datetime.now(UTC) + timedelta(days=3)
    waiver = {
        "groupId": group,
        "model": model,
        "version": "2.0",
        "reason": "accepted risk until the 2.1 retrain",
        "expiresAt": expires.isoformat(),
    }
    # Refused (no reviews:write): no waiver, no entry.
    assert codes(await gql(client, cur, WAIVE, {"w": waiver})) == ["FORBIDDEN"]
    assert await _entries(db, f"model:{model}@2.0") == []

    created = data(await gql(client, rev, WAIVE, {"w": waiver}))["waiveGroup"]
    [entry] = await _entries(db, f"model:{model}@2.0")
    assert (entry.action, entry.outcome) == ("gate.waive", "ok")
    assert entry.actor_subject == created["approvedBy"]
    assert entry.details["waiver"] == created["id"] and entry.details["group"] == group
    assert entry.details["reason"] == "accepted risk until the 2.1 retrain"
    assert entry.details["approver"] == created["approvedBy"]
    assert datetime.fromisoformat(entry.details["expires_at"]) == expires

    data(await gql(client, rev, REVOKE, {"id": created["id"]}))
    entries = await _entries(db, f"model:{model}@2.0")
    assert [e.action for e in entries] == ["gate.waive", "gate.revoke_waiver"]
    assert entries[1].details == {"waiver": created["id"], "group": group}
    # A waiver for every version is audited against the model as a whole.
    everywhere = {k: v for k, v in waiver.items() if k != "version"}
    data(await gql(client, rev, WAIVE, {"w": everywhere}))
    assert [e.action for e in await _entries(db, f"model:{model}@*")] == ["gate.waive"]


async def test_suites_runs_resolutions_and_plans_are_audited(client, tokens, db):
    cur, rev = tokens["curator"], tokens["reviewer"]
    model, name = a_name("audited"), a_name("suite")
    ids = await ingest(client, cur, model_cases(model, 3))
    suite = await create_suite(client, cur, name, model, ids=ids)
    # The same selection again freezes nothing new: no second entry.
    await create_suite(client, cur, name, model, ids=ids)
    [frozen] = await _entries(db, f"suite:{name}@1")
    assert frozen.action == "suites.create"
    assert frozen.details == {"model": model, "cases": suite["caseCount"], "from": "caseIds"}

    run = await record_run(
        client,
        cur,
        {
            "model": model,
            "version": "2",
            "suite": name,
            "outcomes": [{"caseId": i, "outcome": "PASS", "latencyMs": 5.0} for i in ids],
        },
    )
    [recorded] = await _entries(db, f"run:{run['id']}")
    assert recorded.action == "runs.record"
    assert recorded.details["total"] == recorded.details["passed"] == 3
    assert recorded.details["proposals"] == len(run["proposals"]) > 0
    assert recorded.details["suite"] == f"{name}@1"

    proposal = run["proposals"][0]
    data(await gql(client, rev, ACCEPT, {"id": proposal["id"]}))
    on_group = await _entries(db, f"group:{proposal['groupId']}")
    # Accepting resolves the group through the catalog, which audits its own write too.
    assert [e.action for e in on_group] == ["resolutions.accept", "group.resolve"] or [
        e.action for e in on_group
    ] == ["group.resolve", "resolutions.accept"]
    [accepted] = [e for e in on_group if e.action == "resolutions.accept"]
    assert accepted.details["proposal"] == proposal["id"] and accepted.details["version"] == "2"

    plan = {
        "title": "Retrain",
        "model": model,
        "evidence": {"case_ids": ids[:2]},
        "targets": [{"suite": name, "metric": "pass_rate", "op": ">=", "value": 1.0}],
    }
    created = data(
        await gql(
            client,
            cur,
            "mutation($p: JSON!) { createRetrainingPlan(plan: $p) { id } }",
            {"p": plan},
        )
    )["createRetrainingPlan"]
    move = """mutation($id: ID!, $s: PlanStatus!, $r: Int!) {
      setRetrainingPlanStatus(id: $id, status: $s, expectedRevision: $r) { revision } }"""
    data(await gql(client, rev, move, {"id": created["id"], "s": "APPROVED", "r": 1}))
    entries = await _entries(db, f"retraining_plan:{created['id']}")
    assert [e.action for e in entries] == ["plans.create", "plans.set_status"]
    assert entries[0].details == {"model": model, "cases": 2, "groups": 0, "targets": 1}
    assert entries[1].details == {"from": "draft", "to": "approved", "revision": 2}


async def test_a_suite_made_on_the_host_is_the_operators(
    client, tokens, db, monkeypatch, settings, capsys
):
    """AUDIT.md: an operator command run on the host is `os:<user>`/`cli`. `failcat suites
    create` recorded its suites.create as `system`, as if a background job had made it."""
    model = a_name("fraud")
    ids = await ingest(client, tokens["curator"], model_cases(model, 2))
    name = a_name("host")
    argv = ("suites", "create", "--name", name, "--model", model, "--case-ids", ",".join(ids))
    code, _, err = await failcat(monkeypatch, settings, capsys, *argv)
    assert code == 0, err
    [entry] = await _entries(db, f"suite:{name}@1")
    assert (entry.actor_subject, entry.actor_client) == (f"os:{getpass.getuser()}", "cli")
