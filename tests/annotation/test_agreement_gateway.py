"""Query.agreement runs the bootstrap only when an interval's bound is selected (it is most of
agreement's cost): the point values are the same either way, and a bound selected through a
fragment counts. Both backends."""

from __future__ import annotations

import pytest

from services.annotation import service
from tests.annotation.helpers import ANNOTATOR, CURATOR, FAILCAT_VALUES, caller, data, gql, submit
from tests.gateway.helpers import ingest_corpus

POINTS = """
query($who: [String!]) {
  agreement(taxonomy: "failcat", field: "severity", annotators: $who) {
    n fleissKappa krippendorffAlpha { value n } pairs { a b n cohenKappa }
    fleissKappaInterval { value n }
  }
}"""
# The same, and one pair's bounds through a fragment.
BOUNDS = """
query($who: [String!]) {
  agreement(taxonomy: "failcat", field: "severity", annotators: $who) {
    n fleissKappa krippendorffAlpha { value n } pairs { a b n cohenKappa }
    fleissKappaInterval { value n } pairs { cohenKappaInterval { ...Bounds } }
  }
}
fragment Bounds on AgreementEstimate { low high }"""
GRADES = [("S0", "S0", "S1"), ("S2", "S2", "S2"), ("S4", "S3", "S4"), ("S1", "S2", "S1")]


@pytest.fixture
def resamples(monkeypatch) -> list[int]:
    """The resamples each agreement computation was asked for."""
    asked: list[int] = []
    compute = service.agreement

    async def spy(*args, **kwargs):
        asked.append(kwargs["resamples"])
        return await compute(*args, **kwargs)

    monkeypatch.setattr(service, "agreement", spy)
    return asked


async def test_the_bootstrap_runs_only_when_a_bound_is_selected(client, token_for, resamples):
    curator = await caller(token_for, CURATOR)
    people = [await caller(token_for, ANNOTATOR) for _ in range(3)]
    cases = await ingest_corpus(client, curator.token, len(GRADES))
    for case_id, grades in zip(cases, GRADES, strict=True):
        for who, grade in zip(people, grades, strict=True):
            await submit(client, who, case_id, {**FAILCAT_VALUES, "severity": grade})
    who = {"who": [p.subject for p in people]}

    points = data(await gql(client, curator.token, POINTS, who))["agreement"]
    with_bounds = data(await gql(client, curator.token, BOUNDS, who))["agreement"]
    assert resamples == [0, service.stats.RESAMPLES]
    assert [{k: p[k] for k in ("a", "b", "n", "cohenKappa")} for p in with_bounds["pairs"]] == (
        points["pairs"]
    )
    for key in ("n", "fleissKappa", "krippendorffAlpha", "fleissKappaInterval"):
        assert with_bounds[key] == points[key]
    assert points["n"] == len(GRADES) and len(points["pairs"]) == 3
    assert 0.0 < points["krippendorffAlpha"]["value"] < 1.0
    bounds = [p["cohenKappaInterval"] for p in with_bounds["pairs"]]
    assert all(b["low"] is not None and b["low"] <= b["high"] for b in bounds)


async def test_annotators_are_named_by_username_and_a_name_that_rated_nothing_is_refused(
    client, app, token_for
):
    """`annotators` took only the stored subject: an account named by its username (as
    assignAnnotators takes it) matched nothing, and so did a typo, both answering n 0."""
    from services.auth.repository import AuthRepository
    from shared.security import SYSTEM
    from tests.auth.builders import make_user
    from tests.gateway.helpers import codes

    curator = await caller(token_for, CURATOR)
    people = [await caller(token_for, ANNOTATOR) for _ in range(2)]
    username, _ = await make_user(app, ["annotator"])
    cases = await ingest_corpus(client, curator.token, len(GRADES))
    async with app.state.db.transaction() as s:
        user_id = (await AuthRepository(s).user_by_name(username)).id
        tax = await service.get_taxonomy(s, "failcat")
        for case_id, (_, _, grade) in zip(cases, GRADES, strict=True):
            values = {**FAILCAT_VALUES, "severity": grade}
            await service.record_submitted(s, case_id, user_id, tax, values, SYSTEM)
    for case_id, grades in zip(cases, GRADES, strict=True):
        for who, grade in zip(people, grades[:2], strict=True):
            await submit(client, who, case_id, {**FAILCAT_VALUES, "severity": grade})

    by_name = {"who": [people[0].subject, username]}
    pairs = data(await gql(client, curator.token, POINTS, by_name))["agreement"]["pairs"]
    assert [(p["n"], {p["a"], p["b"]}) for p in pairs] == [
        (len(GRADES), {people[0].subject, user_id})
    ]
    body = await gql(client, curator.token, POINTS, {"who": [people[0].subject, "nobody-x"]})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"] == [
        {"path": "annotators", "message": "nobody-x: no submitted value on a case you may see"}
    ]
