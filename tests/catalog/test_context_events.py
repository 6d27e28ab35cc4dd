"""Context events in the catalog: validation per kind, idempotent recording, the events that
preceded a case (scope and window), a group's "started after", the re-queue of cases an event
recorded late now precedes, and the REST route. Cases are real AIID incidents."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from services.catalog import service
from services.catalog.models import FailureCase, Outbox
from shared.security import SYSTEM, Principal, Sensitivity
from tests.catalog.builders import ingest, unique
from tests.conftest import auth_header
from tests.corpus import aiid_cases

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def corpus(n: int, model: str, **overrides: Any) -> list[dict[str, Any]]:
    """n real incidents of `model`, one hour apart from T0, all of version 2.0."""
    cases = unique(aiid_cases(n, model=model))
    for i, c in enumerate(cases):
        c["model"] = {"name": model, "version": "2.0"}
        c["occurred_at"] = iso(T0 + timedelta(hours=i))
        c["environment"] = {"region": "eu-west-1" if i % 2 == 0 else "us-east-1"}
        c.update(overrides)
    return cases


def deploy(model: str, version: str, at: datetime, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "deploy",
        "occurred_at": iso(at),
        "scope": {"model": model, "version": version, **kw.pop("scope", {})},
        "link": "https://ci.example/pipelines/8812",
        "title": f"{model} {version} rolled out",
        "details": {"rollout": "100%", "previous_version": "1.9"},
        **kw,
    }


async def record(session: Any, items: list[dict[str, Any]]) -> list[Any]:
    results = await service.record_events(session, items, SYSTEM)
    assert [r.status for r in results] == ["created"] * len(items), results
    return results


def model_name() -> str:
    return f"incident-classifier-{secrets.token_hex(3)}"


# --- validation ----------------------------------------------------------------------------
async def test_each_bad_event_is_refused_naming_its_field_and_the_good_ones_are_stored(session):
    model = model_name()
    future = datetime.now(UTC) + timedelta(hours=2)
    items = [
        {"kind": "rollback", "scope": {"model": model}},
        {"kind": "drift_alert", "scope": {"model": model}, "details": {"metric": "psi"}},
        {"kind": "deploy", "scope": {"model": model}},
        {"kind": "feature_change", "details": {"feature": "merchant_category"}},
        {
            "kind": "environment_shift",
            "occurred_at": iso(future),
            "details": {"key": "gpu", "new": "a100"},
        },
        {
            "kind": "drift_alert",
            "scope": {"model": model, "data_source": "payments-stream"},
            "details": {
                "metric": "psi",
                "value": 0.31,
                "threshold": 0.2,
                "feature": "amount",
                "window": "1h",
            },
        },
        "not an object",
    ]
    results = await service.record_events(session, items, SYSTEM)
    assert [r.status for r in results] == ["invalid"] * 5 + ["created", "invalid"]
    paths = [{e.path for e in r.errors or []} for r in results]
    assert "kind" in paths[0]
    assert "unknown kind" in results[0].errors[0].message
    assert paths[1] == {"details.value", "details.threshold"}
    assert paths[2] == {"scope.version"}
    assert paths[3] == {"details.new_hash"}
    assert paths[4] == {"occurred_at"}
    assert "clock skew" in results[4].errors[0].message
    assert paths[6] == {"$"}
    stored = await service.list_events(session, model=model, first=10)
    assert [(e.kind, e.details["metric"], e.data_source) for e in stored] == [
        ("drift_alert", "psi", "payments-stream")
    ]


async def test_an_environment_shift_of_a_blank_key_is_refused(session):
    """The key names the environment key that shifted: spaces alone name none."""
    items = [
        {"kind": "environment_shift", "details": {"key": key, "new": "us-east-1"}}
        for key in ("", "   ", "\t", " region")
    ]
    results = await service.record_events(session, items, SYSTEM)
    assert [r.status for r in results] == ["invalid"] * 3 + ["created"]
    assert [[e.path for e in r.errors or []] for r in results[:3]] == [["details.key"]] * 3
    assert "only spaces" in results[1].errors[0].message


async def test_an_external_id_makes_a_retry_a_duplicate_also_within_one_batch(session):
    model = model_name()
    event = deploy(model, "2.0", T0, external_id=f"deploy-{secrets.token_hex(4)}")
    [first] = await record(session, [event])
    again = await service.record_events(session, [event, event], SYSTEM)
    assert [(r.status, r.id) for r in again] == [("duplicate", first.id)] * 2
    assert len(await service.list_events(session, model=model, first=10)) == 1


# --- what preceded a case ------------------------------------------------------------------
async def test_a_case_shows_the_events_of_its_scope_within_the_window_newest_first(session):
    model = model_name()
    ids = await ingest(session, corpus(4, model))  # T0, +1h (us), +2h, +3h (us)
    other = model_name()
    created = await record(
        session,
        [
            deploy(model, "2.0", T0 - timedelta(days=1)),
            deploy(model, "1.9", T0 - timedelta(hours=2)),  # another version: not ours
            deploy(other, "2.0", T0 - timedelta(hours=1)),  # another model
            {  # drift on the model as a whole, older than the default window
                "kind": "drift_alert",
                "occurred_at": iso(T0 - timedelta(days=8)),
                "scope": {"model": model},
                "details": {"metric": "psi", "value": 0.4, "threshold": 0.2},
            },
            {  # an environment shift in one region only, between the cases
                "kind": "environment_shift",
                "occurred_at": iso(T0 + timedelta(minutes=90)),
                "scope": {"environment": {"region": "us-east-1"}},
                "details": {"key": "gpu", "old": "t4", "new": "a100"},
            },
        ],
    )
    deploy_id, drift_id, shift_id = created[0].id, created[3].id, created[4].id
    got = await service.preceding_events(session, ids)
    assert [e.id for e in got[ids[0]]] == [deploy_id]
    assert [e.id for e in got[ids[1]]] == [deploy_id]  # the shift came 30 min after it
    assert [e.id for e in got[ids[2]]] == [deploy_id]  # eu-west-1: not the shift's region
    assert [e.id for e in got[ids[3]]] == [shift_id, deploy_id]
    wider = await service.preceding_events(session, ids[:1], timedelta(days=9))
    assert [e.id for e in wider[ids[0]]] == [deploy_id, drift_id]
    narrow = await service.preceding_events(session, ids[:1], timedelta(hours=12))
    assert narrow[ids[0]] == []


async def test_a_group_started_after_the_closest_matching_event_and_counts_the_cases_since(
    session,
):
    model = model_name()
    ids = await ingest(session, corpus(5, model, failure_mode="robustness.input_noise"))
    [case] = (await session.execute(select(FailureCase).where(FailureCase.id == ids[0]))).all()
    group_id = case[0].group_id
    assert len({c.group_id for c in await service.get_cases(session, ids, SYSTEM)}) == 1
    no_event = await service.started_after(session, [group_id], SYSTEM)
    assert no_event == {group_id: None}
    created = await record(
        session,
        [
            deploy(model, "2.0", T0 - timedelta(days=2)),
            {
                "kind": "feature_change",
                "occurred_at": iso(T0 - timedelta(hours=3)),
                "scope": {"model": model, "data_source": "somewhere-else"},
                "details": {"feature": "parties", "old_hash": "a1", "new_hash": "b2"},
            },
            {
                "kind": "feature_change",
                "occurred_at": iso(T0 - timedelta(hours=5)),
                "scope": {"model": model},
                "details": {"feature": "parties", "old_hash": "a1", "new_hash": "c3"},
            },
        ],
    )
    got = await service.started_after(session, [group_id], SYSTEM)
    # The closest before the first case whose scope matches it: not the other source's.
    assert got[group_id].event.id == created[2].id
    assert (got[group_id].cases_after, got[group_id].cases_within_window) == (5, 5)
    # With a 7-hour window the same event (5 h before the first case) explains the cases of
    # the 2 hours after the first one: T0 and T0+1h.
    short = (await service.started_after(session, [group_id], SYSTEM, timedelta(hours=7)))[group_id]
    assert short.event.id == created[2].id
    assert (short.cases_after, short.cases_within_window) == (5, 2)
    hidden = Principal(
        "viewer", "c", scopes=frozenset({"cases:read"}), team="nobody", clearance=Sensitivity.PUBLIC
    )
    assert (await service.started_after(session, [group_id], hidden))[group_id].cases_after == 0


# --- reaching the index --------------------------------------------------------------------
async def test_an_event_recorded_after_its_cases_requeues_exactly_those_in_scope_and_window(
    session,
):
    model = model_name()
    ids = await ingest(session, corpus(4, model))
    later = await ingest(
        session, corpus(2, model, occurred_at=iso(T0 + timedelta(days=9)))
    )  # out of the window after the event
    before = {
        r.id for r in (await session.execute(select(Outbox.id))).all()
    }  # ingestion's own rows
    await record(session, [deploy(model, "2.0", T0 - timedelta(hours=1))])
    rows = (
        await session.execute(
            select(Outbox.case_id, Outbox.revision).where(Outbox.id.not_in(before))
        )
    ).all()
    assert sorted(r.case_id for r in rows) == sorted(ids)
    assert all(r.revision == 1 for r in rows) and not set(later) & {r.case_id for r in rows}
    # One search document per case carries the kinds that preceded it.
    docs = {d["id"]: d for d in await service.search_documents(session, ids + later)}
    assert {i: docs[i]["after_event"] for i in ids} == {i: ["deploy"] for i in ids}
    assert all(docs[i]["after_event"] == [] for i in later)


# --- REST ------------------------------------------------------------------------------------
async def test_rest_takes_one_event_or_an_array_and_answers_per_item(client, token_for):
    model = model_name()
    producer = await token_for("cases:ingest")
    curator = await token_for("cases:write")
    reader = await token_for("cases:read")
    one = deploy(model, "3.1.0", T0, scope={"environment": {"region": "eu-west-1"}})
    resp = await client.post("/catalog/v1/events", json=one, headers=auth_header(producer))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["counts"] == {"created": 1, "duplicate": 0, "invalid": 0}
    batch = [
        {
            "kind": "drift_alert",
            "occurred_at": iso(T0 + timedelta(hours=1)),
            "scope": {"model": model},
            "link": "https://grafana.example/d/drift?var-model=fraud",
            "details": {"metric": "psi", "value": 0.27, "threshold": 0.2, "feature": "amount"},
        },
        {"kind": "environment_shift", "details": {"key": "region"}},
    ]
    resp = await client.post("/catalog/v1/events", json=batch, headers=auth_header(curator))
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid"]
    assert results[1]["index"] == 1 and results[1]["errors"] == [
        {"path": "details.new", "message": "Field required"}
    ]
    denied = await client.post("/catalog/v1/events", json=one, headers=auth_header(reader))
    assert denied.status_code == 403
    bad = await client.post(
        "/catalog/v1/events",
        content=b"{not json",
        headers={**auth_header(producer), "content-type": "application/json"},
    )
    assert bad.status_code == 400
    listed = await client.get(
        "/catalog/v1/events", params={"model": model, "first": 1}, headers=auth_header(reader)
    )
    page = listed.json()
    assert [e["kind"] for e in page["events"]] == ["drift_alert"] and page["next"]
    rest = await client.get(
        "/catalog/v1/events",
        params={"model": model, "after": page["next"]},
        headers=auth_header(reader),
    )
    [deployed] = rest.json()["events"]
    assert deployed["scope"] == {
        "model": model,
        "version": "3.1.0",
        "data_source": None,
        "environment": {"region": "eu-west-1"},
    }
    assert deployed["id"] == body["results"][0]["id"]
    # A kind that does not exist is a bad filter (GraphQL refuses it too), not an empty page.
    by_kind = await client.get(
        "/catalog/v1/events", params={"kind": ["deploy", "bogus"]}, headers=auth_header(reader)
    )
    assert by_kind.status_code == 400 and by_kind.json()["errors"][0]["path"].startswith("kind")
    by_kind = await client.get(
        "/catalog/v1/events", params={"model": model, "kind": "deploy"}, headers=auth_header(reader)
    )
    assert [e["id"] for e in by_kind.json()["events"]] == [deployed["id"]]


async def test_building_search_documents_costs_one_event_query_per_batch(session):
    """The indexer's batch: the document rows, and one query for the events before them all."""
    from tests.gateway.test_query_count import counting

    model = model_name()
    ids = await ingest(session, corpus(40, model))
    await record(
        session,
        [
            deploy(model, "2.0", T0 + timedelta(hours=h))
            for h in (-3, 5, 11, 17, 23, 29, 35)  # a deploy every six hours
        ],
    )
    counts = {}
    for n in (5, 40):
        with counting(session.bind) as statements:
            docs = await service.search_documents(session, ids[:n])
        assert len(docs) == n
        counts[n] = len(statements)
    # rows, events, and the annotation state (annotations, assignments, decisions)
    assert counts == {5: 5, 40: 5}
    by_id = {d["id"]: d for d in docs}
    assert all(by_id[i]["after_event"] == ["deploy"] for i in ids)
