"""Redaction of a case for a reader: the one rule (DESIGN.md), used by GraphQL, the REST case
views, the search document producer and exports.

A case's raw payload fields can carry a higher sensitivity than the case itself
(`payload_sensitivity`, set at ingest from the case or its data source's redaction policy).
A reader cleared for the case but not for its payload gets the case with those fields null
and named in `redactedFields`. The search index is written for a reader cleared exactly at
the case's level, so payload text above it is never indexed.

PII found at ingest never reaches any of them in the first place (services/governance/
redaction): this rule is about who reads the fields that remain.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from shared.security import Principal, Sensitivity

# The kinds of personal data and secrets the ingest detectors find: the values of the
# `pii` search field and of `FailureCase.piiFindings[].kind`.
PII_KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "card",
    "iban",
    "ipv4",
    "ipv6",
    "ssn",
    "secret",
    "aws_key",
    "jwt",
    "private_key",
)

# The raw payload: what `payload_sensitivity` covers.
PAYLOAD_FIELDS: tuple[str, ...] = ("environment", "input", "prediction", "expected", "signals")

# The curated fields adjudication decides: null for a reader the blind-read rule keeps from
# the decided labels (who that is: services/annotation/service.curated_blinded).
BLINDED_FIELDS: tuple[str, ...] = ("failure_mode", "severity", "impact")

_RANK = {s.value: s.rank for s in Sensitivity}


def hidden_at(clearance: Sensitivity | str, case: Any) -> tuple[str, ...]:
    """The payload fields of `case` (anything with `payload_sensitivity`) that a reader of
    `clearance` may not see: all of them or none."""
    level = getattr(case, "payload_sensitivity", None)
    if level is None:
        return ()
    return PAYLOAD_FIELDS if _RANK[str(clearance)] < _RANK[level] else ()


def redacted_fields(reader: Principal, case: Any) -> tuple[str, ...]:
    """What `reader` (already allowed to see the case) gets null, by field name."""
    return hidden_at(reader.clearance, case)


def indexed_redactions(case: Any) -> tuple[str, ...]:
    """What the search document leaves out: the index answers every reader cleared for the
    case, so it holds nothing above the case's own level."""
    return hidden_at(case.sensitivity, case)


def apply(view: MutableMapping[str, Any], hidden: tuple[str, ...]) -> MutableMapping[str, Any]:
    """Null `hidden` in a case rendered as a mapping (REST view, export row, search document)
    and name them under `redacted_fields`."""
    for name in hidden:
        if name in view:
            view[name] = None
    view["redacted_fields"] = list(hidden)
    return view


def payload_level(*levels: str | None) -> str | None:
    """The payload's level as stored: the highest of those asked for (the case's own, the
    data source policy's). Stored even when it equals the case's level, so lowering the
    case's sensitivity later does not lower its payload's."""
    return max((lv for lv in levels if lv), key=_RANK.__getitem__, default=None)


def hide_blinded(view: MutableMapping[str, Any], blinded: bool) -> MutableMapping[str, Any]:
    """Null the adjudicated curated fields of a case rendered as a mapping when the blind-read
    rule withholds them from its reader (as GraphQL answers them)."""
    if blinded:
        for name in BLINDED_FIELDS:
            if name in view:
                view[name] = None
    return view


def without_blinded(changes: Mapping[str, Any]) -> dict[str, Any]:
    """A revision's changes without the blinded curated fields, for that same reader."""
    return {name: change for name, change in changes.items() if name not in BLINDED_FIELDS}
