"""Inputs and answers of the safeguards service (pydantic): suites, runs, gate policies."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.safeguards.perturb import Perturbation
from shared.vocabulary import SEVERITIES

# A suite is a test collection, not a dump: 100,000 cases is ten times the largest CI suite
# we have heard of and still streams in seconds.
MAX_SUITE_CASES = 100_000
MAX_OUTCOMES = MAX_SUITE_CASES
MAX_QUERY = 2_000
MAX_REASON = 2_000
MAX_ERROR = 2_000
MAX_SCENARIOS = 10_000  # variants per request
MAX_VARIANTS = 20  # per case and perturbation

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Version = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


NUL = "contains U+0000 (NUL), which cannot be stored"
BIG = "holds an integer beyond 64 bits, which cannot be stored"
NON_FINITE = "holds a number that is not finite, which JSON cannot carry"


def unstorable(value: Any) -> tuple[str, str] | None:
    """What in `value` cannot be stored as given, and where: text holding U+0000 (Postgres
    keeps it in neither text nor JSONB, SQLite would), an integer past 64 bits (the JSON
    encoder refuses it: an INTERNAL error) or an infinite/NaN number (written as null).
    The place is '$' for the value itself, else the dotted path inside it."""
    if isinstance(value, str):
        return ("$", NUL) if "\x00" in value else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**64 else ("$", BIG)
    if isinstance(value, float):
        return None if math.isfinite(value) else ("$", NON_FINITE)
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
        for key, _ in items:
            if "\x00" in key:
                return key, NUL
    elif isinstance(value, list | tuple):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return None
    for key, item in items:
        found = unstorable(item)
        if found is not None:
            where, why = found
            return (key if where == "$" else f"{key}.{where}"), why
    return None


def refuse_unstorable(value: Any) -> Any:
    """Refused on both backends, at the field that holds it (nested inputs at their own)."""
    found = unstorable(value)
    if found is not None:
        where, why = found
        raise ValueError(why if where == "$" else f"{why} (at {where})")
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Every field of every input (nested inputs check their own): refused, not half-stored.
    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return refuse_unstorable(value)


_SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")


def _suite_name(value: str) -> str:
    # Said in words, as SAFEGUARDS.md says it: the pattern's regex was the whole message.
    if not _SUITE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "suite_name", "letters, digits, '.', '_' and '-', beginning with a letter or digit"
        )
    return value


class SuiteCreate(_In):
    """A suite from a saved search query or from a list of case ids (exactly one)."""

    # The name is a URL path segment (the export) and a CLI argument: "." and ".." would name
    # no export (URLs drop them), "-x" an option. So it begins with a letter or digit.
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(_suite_name),
    ]
    model: Name
    query: Annotated[str, StringConstraints(max_length=MAX_QUERY)] | None = None
    case_ids: Annotated[list[str], Field(max_length=MAX_SUITE_CASES)] | None = None
    # Each case's synthetic scenarios follow it in the suite.
    include_scenarios: bool = False


class ScenarioRequest(_In):
    """Variants of the given cases, or of a suite version's cases (exactly one)."""

    case_ids: Annotated[list[str], Field(min_length=1, max_length=MAX_SCENARIOS)] | None = None
    suite: Name | None = None
    suite_version: Annotated[int, Field(ge=1)] | None = None
    perturbations: Annotated[list[Perturbation], Field(min_length=1)]
    variants: Annotated[int, Field(ge=1, le=MAX_VARIANTS)] = 1
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)]
    # Relative bound of numeric noise.
    tolerance: Annotated[float, Field(gt=0, le=1)] = 0.01

    @field_validator("perturbations")
    @classmethod
    def _once_each(cls, values: list[Perturbation]) -> list[Perturbation]:
        # A repeated kind makes the same scenarios again: they were answered twice.
        return list(dict.fromkeys(values))


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class OutcomeIn(_In):
    case_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    outcome: Outcome
    # Finite: JSON has no infinity, but a REST body's 1e999 parses as one.
    latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    prediction: Any = None
    error: Annotated[str, StringConstraints(max_length=MAX_ERROR)] | None = None

    @field_validator("outcome", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        # REST takes GraphQL's body in snake_case (SAFEGUARDS.md), whose outcomes are
        # PASS|FAIL|ERROR: "PASS" was refused ("Input should be 'pass', 'fail' or 'error'").
        return value.lower() if isinstance(value, str) else value


class RunIn(_In):
    """One evaluation of model `version` (a release candidate may have no cases of its own)
    against a suite version (the suite's latest when None)."""

    model: Name
    version: Version
    suite: Name
    suite_version: Annotated[int, Field(ge=1)] | None = None
    outcomes: Annotated[list[OutcomeIn], Field(max_length=MAX_OUTCOMES)]
    # The label that counts as an alarm, for the false alarm rate of binary labels; inferred
    # for booleans and 0/1.
    positive_label: Any = None


class SuiteRule(_In):
    name: Name
    version: Annotated[int, Field(ge=1)] | None = None  # None: the suite's latest version
    min_pass_rate: Annotated[float, Field(ge=0, le=1)] = 1.0


class LatencyRule(_In):
    # Finite: YAML's .inf would be a limit that never blocks.
    p95_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    p50_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _has_budget(self) -> LatencyRule:
        # Without one, the condition checks nothing but that some run measured latency.
        if self.p95_ms is None and self.p50_ms is None:
            raise ValueError("a latency rule needs p95_ms or p50_ms")
        return self


class GatePolicy(_In):
    """What a release must satisfy. Without a policy: no open S0/S1 group, and every suite of
    the model passing entirely at its latest version."""

    block_severities: list[str] = Field(default_factory=lambda: ["S0", "S1"])
    # None: every suite of the model, at min_pass_rate 1.0.
    suites: list[SuiteRule] | None = None
    latency: LatencyRule | None = None

    @field_validator("block_severities")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if v not in SEVERITIES]
        if bad:
            raise ValueError(f"unknown severity {', '.join(bad)}: one of {', '.join(SEVERITIES)}")
        return list(dict.fromkeys(values))  # [S0, S0] named the condition 'no open S0/S0 groups'


class WaiverIn(_In):
    group_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    model: Name
    version: Version | None = None
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON)
    ]
    expires_at: datetime

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime) -> datetime:
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value
