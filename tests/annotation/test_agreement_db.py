"""Agreement read from the database (the narrow, driver-level read) equals the statistics
over the same ratings given directly, for every kind of field: enum, ordinal, set-valued,
bool, int, float (a float's every digit: 0.1 + 0.2 is not 0.3); empty values are no
units. Both backends."""

from __future__ import annotations

import secrets
from collections import Counter

import pytest

from services.annotation import agreement as stats
from services.annotation import service
from services.annotation.schemas import TaxonomyField
from shared.db import utcnow
from shared.security import SYSTEM, Principal, Sensitivity
from tests.catalog.builders import ingest, unique
from tests.corpus import aiid_cases

FIELDS = [
    TaxonomyField(name="kind", type="enum", permitted_values=["a", "b", "c"]),
    TaxonomyField(name="grade", type="enum", permitted_values=["lo", "mid", "hi"], ordinal=True),
    TaxonomyField(name="tags", type="multi_enum", permitted_values=["x", "y", "z"]),
    TaxonomyField(name="harmful", type="bool"),
    TaxonomyField(name="count", type="int"),
    TaxonomyField(name="score", type="float"),
    TaxonomyField(name='odd "name"', type="enum", permitted_values=["p", "q"]),
    TaxonomyField(name="never", type="enum", permitted_values=["n"]),  # nobody answers
]
# Per case, per annotator: what each gave (None: left empty).
GIVEN = [
    ({"kind": "a", "grade": "lo", "tags": ["x"], "harmful": True, "count": 1, "score": 0.1 + 0.2,
      'odd "name"': "p"},
     {"kind": "a", "grade": "mid", "tags": ["x", "y"], "harmful": True, "count": 1,
      "score": 0.30000000000000004, 'odd "name"': "p"}),
    ({"kind": "b", "grade": "hi", "tags": ["z"], "harmful": False, "count": 3, "score": 2.5,
      'odd "name"': "q"},
     {"kind": "c", "grade": "hi", "tags": ["z"], "harmful": True, "count": 2, "score": 2.5,
      'odd "name"': "p"}),
    ({"kind": "c", "grade": "mid", "tags": [], "harmful": False, "count": 0},
     {"kind": "c", "grade": "mid", "tags": ["y"], "harmful": False, "count": 0,
      'odd "name"': "q"}),
    ({"kind": "a", "grade": "lo", "tags": ["x", "z"], "harmful": True, "count": 5},
     {"kind": "b", "grade": "lo", "tags": ["x", "z"], "harmful": False, "count": 5}),
]  # fmt: skip


@pytest.mark.parametrize("name", [f.name for f in FIELDS])
async def test_agreement_from_the_database_equals_the_statistics(session, name):
    taxonomy = f"kinds-{secrets.token_hex(3)}"
    tax = await service.import_taxonomy(
        session, taxonomy, FIELDS, description="", source="test", actor=SYSTEM
    )
    people = [
        Principal(
            subject=f"{w}-{secrets.token_hex(2)}", client_id=w, clearance=Sensitivity.RESTRICTED
        )
        for w in ("ann", "bo")
    ]
    cases = await ingest(session, unique(aiid_cases(len(GIVEN))))
    ratings = []
    for case_id, pair in zip(cases, GIVEN, strict=True):
        for who, values in zip(people, pair, strict=True):
            await service.record_submitted(session, case_id, who.subject, tax, values, SYSTEM)
            value = values.get(name)
            if value in (None, [], ""):
                continue
            value = tuple(value) if isinstance(value, list) else str(value)
            ratings.append(stats.Rating(case_id, who.subject, value, utcnow()))
    field = next(f for f in FIELDS if f.name == name)
    level = "set" if field.type == "multi_enum" else "ordinal" if field.ordinal else "nominal"
    expected = stats.agreement(ratings, level, order=field.ranked or None, resamples=0)

    got = await service.agreement(session, taxonomy, name, SYSTEM, resamples=0, case_ids=cases)
    rated = Counter(r.unit for r in ratings)
    assert got.n == expected.n == sum(n == 2 for n in rated.values())
    assert got.alpha.value == pytest.approx(expected.alpha.value, nan_ok=True)
    assert [(p.a, p.b, p.n) for p in got.pairs] == [(p.a, p.b, p.n) for p in expected.pairs]
    assert got.distribution == expected.distribution
    assert got.by_month == expected.by_month  # the month the database gave is this one
