"""A whole-case purge leaves no personal data behind anywhere in the database: the case's own
columns and history, and what other services keep of it (annotations and their history,
review comments, comments, suite copies, scenarios, run outcomes). The test reads every
text and JSON column of every table on both backends and counts the purged case's literal
values; a live case's values are still found (the dump reads what it should)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import text

from services.annotation import service as annotation
from services.catalog import service as catalog
from services.catalog.schemas import CasePatch
from services.governance.redaction import service as redaction
from services.governance.redaction.schemas import Mode, PolicyIn
from services.governance.retention import service
from services.safeguards import service as safeguards
from services.safeguards.schemas import RunIn, ScenarioRequest, SuiteCreate
from services.sharing import service as sharing
from services.sharing.schemas import CommentIn
from shared.security import SYSTEM, Principal, Sensitivity
from tests.db_text import text_by_table
from tests.governance.retention.helpers import (
    audit_entries,
    corpus_cases,
    ingest_cases,
    later,
    revisions,
    source_hits,
)

ADMIN = Principal(
    "admin-1",
    "c-admin",
    scopes=frozenset({"admin", "cases:read", "evals:write", "comments:write"}),
    name="admin",
    clearance=Sensitivity.RESTRICTED,
)


def person(name: str) -> Principal:
    return Principal(
        subject=f"{name}-{secrets.token_hex(3)}",
        client_id=name,
        scopes=frozenset({"cases:read", "annotations:write", "reviews:write", "comments:write"}),
        clearance=Sensitivity.RESTRICTED,
    )


def _salted(case: dict[str, Any], salt: str) -> list[str]:
    """Make every free-text value of the case carry `salt` (so its literals are its own in a
    shared database); returns those literals."""
    case["title"] = f"{case['title']} {salt}-title"
    case["summary"] = f"{case['summary']} {salt}-summary"
    case["impact"] = f"{salt}-impact on the harmed parties"
    case["writeup"] = {"hypothesis": f"{salt}-hypothesis", "results": f"{salt}-results"}
    parties = [f"{p} {salt}-party" for p in case["input"]["parties"]] or [f"{salt}-party"]
    case["input"] = {"parties": parties}
    case["signals"] = {"drift_score": 0.4, "reports": parties}
    case["environment"] = {"deployer": f"{salt}-deployer"}
    case["prediction"] = {"label": f"{salt}-prediction"}
    case["expected"] = {"label": f"{salt}-expected"}
    case["links"] = [{"kind": "ticket", "url": "https://example.org/t/1", "title": f"{salt}-link"}]
    return [
        case["title"],
        case["summary"],
        case["impact"],
        f"{salt}-hypothesis",
        f"{salt}-results",
        *parties,
        f"{salt}-deployer",
        f"{salt}-prediction",
        f"{salt}-expected",
        f"{salt}-link",
    ]


async def database_text(db: Any) -> str:
    """Every text, varchar and JSON column of every table, as text."""
    by_table = await text_by_table(db)
    assert set(by_table) >= {"failure_case", "annotation", "suite_case", "audit_log"}
    return "\n".join(v for values in by_table.values() for v in values)


def found(dump: str, literals: list[str]) -> list[str]:
    return [v for v in literals if v in dump]


async def test_a_whole_purge_leaves_no_literal_of_the_case_in_any_column(stack):
    cases = corpus_cases(2)
    model, source = cases[0]["model"]["name"], cases[0]["data_source"]
    purged_salt, live_salt = f"gone{secrets.token_hex(4)}", f"kept{secrets.token_hex(4)}"
    literals = _salted(cases[0], purged_salt)
    kept = _salted(cases[1], live_salt)
    # Raw values a keep_restricted policy keeps beside the masked payload.
    for case, salt, into in ((cases[0], purged_salt, literals), (cases[1], live_salt, kept)):
        email = f"jane.{salt}@example.org"
        case["input"]["contact"] = email
        into.append(email)
    async with stack.db.transaction() as s:
        await redaction.set_policy(
            s, PolicyIn(data_source=source, mode=Mode.KEEP_RESTRICTED), ADMIN
        )
    gone, live = await ingest_cases(stack.db, cases)
    alice, bob = person("alice"), person("bob")
    suite = f"leftover-{secrets.token_hex(3)}"
    async with stack.db.transaction() as s:
        # A curator's change, with a reason that quotes the case.
        await catalog.update_case(
            s,
            gone,
            CasePatch(title=f"{purged_salt}-retitled", tags=[f"{purged_salt}-tag"]),
            1,
            ADMIN,
            reason=f"{purged_salt}-reason",
        )
        for case_id, salt in ((gone, purged_salt), (live, live_salt)):
            await annotation.submit_annotation(
                s,
                case_id,
                "failcat",
                {"failure_mode": "safety.harmful_content", "severity": "S1"},
                alice,
                notes=f"{salt}-annotation-notes",
            )
            await annotation.send_back(s, case_id, f"{salt}-review-comment", bob)
            await sharing.add_comment(s, case_id, CommentIn(body=f"{salt}-comment"), bob)
        await safeguards.create_suite(
            s, SuiteCreate(name=suite, model=model, case_ids=[gone, live]), ADMIN
        )
        await safeguards.generate_scenarios(
            s,
            ScenarioRequest(case_ids=[gone, live], perturbations=["casing"], seed=7),
            ADMIN,
        )
        await safeguards.record_run(
            s,
            RunIn.model_validate(
                {
                    "model": model,
                    "version": "2",
                    "suite": suite,
                    "outcomes": [
                        {
                            "case_id": gone,
                            "outcome": "error",
                            "prediction": {"label": f"{purged_salt}-run-prediction"},
                            "error": f"{purged_salt}-run-error",
                        }
                    ],
                }
            ),
            ADMIN,
        )
    literals += [
        f"{purged_salt}-retitled",
        f"{purged_salt}-tag",
        f"{purged_salt}-reason",
        f"{purged_salt}-annotation-notes",
        f"{purged_salt}-review-comment",
        f"{purged_salt}-comment",
        f"{purged_salt}-run-prediction",
        f"{purged_salt}-run-error",
    ]
    async with stack.db.transaction() as s:  # the scenario's variant of the input, as stored
        [scenario] = await safeguards.scenarios_of_case(s, gone, ADMIN)
        assert purged_salt in scenario.input_json.lower()
        literals.append(scenario.input_json)
    before = await database_text(stack.db)
    assert found(before, literals) == literals, "the dump does not read every sink"
    await stack.settle()
    assert await source_hits(stack, source) == {gone, live}

    async with stack.db.transaction() as s:  # only the first case falls under the policy
        await s.execute(
            text("UPDATE failure_case SET received_at = :t WHERE id = :i"),
            {"t": later(5), "i": live},
        )
        await service.set_retention_policy(
            s, {"data_source": source, "sensitivity": "internal", "case_ttl_days": 3}, ADMIN
        )
    report = await service.run(stack.db, now=later(4))
    [mine] = [p for p in report.policies if p.data_source == source]
    assert mine.cases_purged == [gone]

    after = await database_text(stack.db)
    leftovers = found(after, literals)
    print(f"literals of the purged case left in the database: {len(leftovers)}")
    assert leftovers == []
    assert found(after, kept) == kept  # the live case is untouched
    for salt in (f"{live_salt}-annotation-notes", f"{live_salt}-comment"):
        assert salt in after

    # The tombstone, its revision, the index and the audit entry are kept as before.
    tomb = (await revisions(stack.db, gone))[-1]
    assert "purged_at" in tomb.changes and "case TTL of 3 days" in (tomb.reason or "")
    await stack.settle()
    assert await source_hits(stack, source) == {live}
    assert f"case:{gone}" in {e.target for e in await audit_entries(stack.db, "retention.")}
    # Idempotent: a second run purges nothing and finds nothing more to clear.
    again = await service.run(stack.db, now=later(4))
    [mine] = [p for p in again.policies if p.data_source == source]
    assert not mine.cases_purged
    assert found(await database_text(stack.db), literals) == []
    async with stack.db.transaction() as s:
        assert await catalog.get_cases(s, [gone], SYSTEM) == []


async def test_a_payload_purge_takes_the_payload_copies_and_kept_raw_values_too(stack):
    [case] = corpus_cases(1)
    model, source = case["model"]["name"], case["data_source"]
    salt = f"pay{secrets.token_hex(4)}"
    in_payload, in_summary = f"ann.{salt}@example.org", f"bo.{salt}@example.org"
    case["input"] = {"parties": [f"{salt}-party"], "contact": in_payload}
    case["summary"] = f"{case['summary']} reported by {in_summary}"
    async with stack.db.transaction() as s:
        await redaction.set_policy(
            s, PolicyIn(data_source=source, mode=Mode.KEEP_RESTRICTED), ADMIN
        )
    [case_id] = await ingest_cases(stack.db, [case])
    suite = f"payload-{secrets.token_hex(3)}"
    async with stack.db.transaction() as s:
        await safeguards.create_suite(
            s, SuiteCreate(name=suite, model=model, case_ids=[case_id]), ADMIN
        )
        await service.set_retention_policy(
            s, {"data_source": source, "sensitivity": "internal", "payload_ttl_days": 3}, ADMIN
        )
    before = await database_text(stack.db)
    assert found(before, [f"{salt}-party", in_payload, in_summary]) == [
        f"{salt}-party",
        in_payload,
        in_summary,
    ]
    report = await service.run(stack.db, now=later(4))
    [mine] = [p for p in report.policies if p.data_source == source]
    assert mine.payload_purged == [case_id]

    after = await database_text(stack.db)
    # The payload and its copies are gone; the summary (and its kept raw value) stay.
    assert found(after, [f"{salt}-party", in_payload]) == []
    assert in_summary in after
    async with stack.db.transaction() as s:
        [row] = await catalog.get_cases(s, [case_id], SYSTEM)
        assert [v["path"] for v in row.pii_restricted] == ["summary"]
        snapshot = await safeguards.get_suite(s, suite)
        [frozen] = (await safeguards.suite_cases(s, snapshot, ADMIN, 10, -1))[0]
        assert (frozen.input_json, frozen.expected) == ("null", None)


async def test_a_whole_purge_takes_the_case_title_out_of_frozen_webhook_bodies(stack):
    from services.governance.escalation import service as escalation
    from services.governance.escalation.models import EscalationFiring, EscalationRule
    from shared.db import utcnow

    salt = secrets.token_hex(4)
    gone, live, rule_id = f"case-{salt}-a", f"case-{salt}-b", f"rule-{salt}"
    body = {
        "event": "escalation.fired",
        "cases": [
            {"id": gone, "title": f"{salt} gone title", "severity": "S1"},
            {"id": live, "title": f"{salt} live title", "severity": "S2"},
        ],
    }
    async with stack.db.transaction() as s:
        s.add(
            EscalationRule(
                id=rule_id,
                name=f"leftovers-{salt}",
                kind="threshold",
                secret="s",
                clearance="internal",
                created_at=utcnow(),
                created_by="test",
            )
        )
        await s.flush()
        s.add(
            EscalationFiring(
                id=f"firing-{salt}",
                rule_id=rule_id,
                key=salt,
                fired_at=utcnow(),
                case_ids=[gone, live],
                payload=body,
            )
        )
    async with stack.db.transaction() as s:
        assert await escalation.purge_cases(s, [gone, f"case-{salt}-elsewhere"]) == 1
    async with stack.db.transaction() as s:
        firing = await s.get(EscalationFiring, f"firing-{salt}")
        assert firing.payload["cases"] == [
            {"id": gone, "title": None, "severity": "S1"},
            {"id": live, "title": f"{salt} live title", "severity": "S2"},
        ]
        assert await escalation.purge_cases(s, [gone]) == 0  # idempotent
