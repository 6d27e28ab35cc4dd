"""failcat's own taxonomy, built from the catalog's failure modes and severity rubric, and how
its adjudicated values become the case's curated fields."""

from __future__ import annotations

from typing import Any

from services.annotation.schemas import FieldType, TaxonomyField
from shared.vocabulary import SEVERITIES

FAILCAT = "failcat"
IMPACT_LEVELS = ["none", "low", "medium", "high", "critical"]
IMPACT_AREAS = ("business", "safety", "users")


def failcat_fields(failure_modes: list[Any], rubric: list[Any]) -> list[TaxonomyField]:
    """Failure mode (the catalog's current codes), severity S0..S4 against the rubric, and
    impact on business, safety and users. Notes and confidence are the annotation's own."""
    grades = "; ".join(f"{g.grade}: {g.title}" for g in sorted(rubric, key=lambda g: g.rank))
    fields = [
        TaxonomyField(
            name="failure_mode",
            number="1",
            type=FieldType.ENUM,
            permitted_values=sorted(m.code for m in failure_modes),
            required=True,
            description="The failure mode, a code of the catalog's current taxonomy.",
        ),
        TaxonomyField(
            name="severity",
            number="2",
            type=FieldType.ENUM,
            permitted_values=list(SEVERITIES),
            required=True,
            ordinal=True,
            order=list(SEVERITIES),
            description=f"Graded against the severity rubric (S0 worst). {grades}",
        ),
    ]
    fields += [
        TaxonomyField(
            name=f"impact.{area}",
            number=f"3.{i}",
            type=FieldType.ENUM,
            permitted_values=IMPACT_LEVELS,
            ordinal=True,
            order=IMPACT_LEVELS,
            description=f"Estimated impact on {area}.",
        )
        for i, area in enumerate(IMPACT_AREAS, start=1)
    ]
    return fields


def curated_patch(values: dict[str, Any]) -> dict[str, Any]:
    """The case's curated fields that failcat's adjudicated values decide."""
    patch: dict[str, Any] = {}
    if "failure_mode" in values:
        patch["failure_mode"] = values["failure_mode"]
    if "severity" in values:
        patch["severity"] = values["severity"]
    impact = [f"{a}={values[f'impact.{a}']}" for a in IMPACT_AREAS if f"impact.{a}" in values]
    if impact:
        patch["impact"] = "; ".join(impact)
    return patch
