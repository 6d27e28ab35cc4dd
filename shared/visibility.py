"""The one visibility rule: which cases a caller may see, and its three compiled forms.

A caller sees a case whose sensitivity is at or below its clearance and whose team is its own
or unset; a caller without a team sees every team. This module is the only place that says so.
Every reader uses one of its forms: `allows` (Python, for objects already loaded),
`sqlalchemy` (catalog queries on both dialects), `sql_text` (hand-written SQL such as the
embedded search backend) and `opensearch` (the bool filter of every search request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, literal, or_
from sqlalchemy.sql.elements import ColumnElement

from shared.security import Principal, Sensitivity


@dataclass(frozen=True, slots=True)
class Visibility:
    """A caller's view: the sensitivities it may read and its team (None: every team)."""

    sensitivities: tuple[str, ...]
    team: str | None

    @classmethod
    def of(cls, principal: Principal) -> Visibility:
        return cls(tuple(principal.clearance.at_or_below()), principal.team)

    @property
    def sees_everything(self) -> bool:
        """Every team and every sensitivity: no case is hidden from this caller."""
        return self.team is None and len(self.sensitivities) == len(Sensitivity)

    def allows(self, team: str | None, sensitivity: str | None) -> bool:
        if (sensitivity or Sensitivity.INTERNAL.value) not in self.sensitivities:
            return False
        return self.team is None or team is None or team == self.team

    def sqlalchemy(self, team: Any, sensitivity: Any) -> ColumnElement[bool]:
        """The rule over two SQLAlchemy columns (Postgres and SQLite alike).

        The sensitivities are bound one value each (`IN (:a, :b ...)`), not as a list: a list
        is an "expanding" parameter, and SQLAlchemy then rewrites the statement's whole text
        on every execution (~0.25 ms a read here, more than the engine's own time for it)."""
        cond = sensitivity.in_([literal(v, sensitivity.type) for v in self.sensitivities])
        if self.team is None:
            return cond
        return and_(cond, or_(team.is_(None), team == self.team))

    def sql_text(self, team: str, sensitivity: str, param: Callable[..., str]) -> str:
        """The rule as an SQL fragment over two column expressions.

        `param(*values)` binds values and returns their placeholders, so no value is ever
        spliced into the text.
        """
        cond = f"{sensitivity} IN ({param(*self.sensitivities)})"
        if self.team is not None:
            cond += f" AND ({team} IS NULL OR {team} = {param(self.team)})"
        return cond

    def opensearch(self, team: str = "team", sensitivity: str = "sensitivity") -> list[dict]:
        """The rule as clauses for an OpenSearch `bool.filter` over two keyword fields."""
        clauses: list[dict[str, Any]] = [{"terms": {sensitivity: list(self.sensitivities)}}]
        if self.team is not None:
            clauses.append(
                {
                    "bool": {
                        "should": [
                            {"term": {team: self.team}},
                            {"bool": {"must_not": [{"exists": {"field": team}}]}},
                        ],
                        "minimum_should_match": 1,
                    }
                }
            )
        return clauses
