"""The visibility rule as the catalog service exports it to other services: a clause, a
subquery of visible ids, and single reads that answer NOT_FOUND for hidden targets."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from services.catalog import service
from services.catalog.models import CaseRevision, FailureCase
from shared.errors import NotFound
from shared.security import Principal, Sensitivity
from tests.catalog.builders import ingest, unique
from tests.corpus import aiid_cases


def _reader(team: str | None, clearance: Sensitivity) -> Principal:
    return Principal(
        subject="reader",
        client_id="r",
        scopes=frozenset({"cases:read"}),
        team=team,
        clearance=clearance,
    )


async def _three_cases(session):
    team = f"vis-{secrets.token_hex(3)}"
    cases = unique(aiid_cases(3))
    cases[0].update(team=team, sensitivity="internal")
    cases[1].update(team="someone-else", sensitivity="internal")
    cases[2].update(team=team, sensitivity="restricted")
    for i, c in enumerate(cases):  # a group of its own each: groups show through their cases
        c["fingerprint"] = f"{team}-{i}"
    return team, await ingest(session, cases)


async def test_visible_case_ids_filter_another_tables_rows(session):
    """What a new service (annotations, audit) does: filter its own rows by case visibility."""
    team, (mine, theirs, secret) = await _three_cases(session)
    reader = _reader(team, Sensitivity.CONFIDENTIAL)
    rows = await session.execute(
        select(CaseRevision.case_id).where(
            CaseRevision.case_id.in_([mine, theirs, secret]),
            CaseRevision.case_id.in_(service.visible_case_ids(reader)),
        )
    )
    assert set(rows.scalars()) == {mine}
    # The clause form, for a query joined to the case table.
    joined = await session.execute(
        select(CaseRevision.case_id)
        .join(FailureCase, FailureCase.id == CaseRevision.case_id)
        .where(
            CaseRevision.case_id.in_([mine, theirs, secret]),
            service.visible_cases_clause(_reader(None, Sensitivity.RESTRICTED)),
        )
    )
    assert set(joined.scalars()) == {mine, theirs, secret}


async def test_get_visible_case_and_group_hide_what_the_reader_may_not_see(session):
    team, (mine, theirs, secret) = await _three_cases(session)
    reader = _reader(team, Sensitivity.CONFIDENTIAL)
    assert (await service.get_visible_case(session, mine, reader)).id == mine
    for hidden in (theirs, secret, "no-such-case"):
        with pytest.raises(NotFound, match=hidden):
            await service.get_visible_case(session, hidden, reader)
    [group_of_theirs] = await service.get_cases(
        session, [theirs], _reader(None, Sensitivity.RESTRICTED)
    )
    outsider = _reader(f"outsider-{secrets.token_hex(2)}", Sensitivity.RESTRICTED)
    with pytest.raises(NotFound):
        await service.get_visible_group(session, group_of_theirs.group_id, outsider)
