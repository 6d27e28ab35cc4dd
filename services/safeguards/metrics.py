"""Figures of an evaluation run, computed from its outcomes alone (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FAILING = ("fail", "error")


@dataclass(slots=True)
class Tally:
    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0

    def add(self, outcome: str | None) -> None:
        self.total += 1
        if outcome == "pass":
            self.passed += 1
        elif outcome == "fail":
            self.failed += 1
        elif outcome == "error":
            self.errored += 1

    @property
    def not_run(self) -> int:
        return self.total - self.passed - self.failed - self.errored

    @property
    def pass_rate(self) -> float | None:
        # Over the suite, not over what was run: a case left out has not passed.
        return self.passed / self.total if self.total else None

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "errored": self.errored,
            "not_run": self.not_run,
        }


def tally_by(pairs: Iterable[tuple[Any, str | None]]) -> dict[str, Tally]:
    """(slice value, outcome) pairs -> a tally per value; a missing value is "(none)"."""
    out: dict[str, Tally] = {}
    for value, outcome in pairs:
        key = "(none)" if value is None else str(value)
        out.setdefault(key, Tally()).add(outcome)
    return dict(sorted(out.items()))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (what a latency budget is usually written against)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def label_of(value: Any) -> Any:
    """The label of an expected output or prediction: `{"label": x}`, or the value itself."""
    if isinstance(value, dict):
        return value.get("label")
    return value


def false_alarm_rate(
    pairs: Iterable[tuple[Any, Any]], positive: Any = None
) -> tuple[float | None, Any]:
    """FP / (FP + TN) over (expected, predicted) pairs when the labels are binary, with the
    positive label given or inferred (true, 1); (None, None) when not binary or unknown."""
    labelled = [(label_of(e), label_of(p)) for e, p in pairs]
    labelled = [(e, p) for e, p in labelled if e is not None and p is not None]
    values = {_key(e) for e, _ in labelled} | {_key(p) for _, p in labelled}
    if not labelled or len(values) > 2:
        return None, None
    if positive is None:
        for candidate in (True, 1, "1", "true"):
            if _key(candidate) in values:
                positive = candidate
                break
        else:
            return None, None
    pos = _key(positive)
    negatives = [(e, p) for e, p in labelled if _key(e) != pos]
    if not negatives:
        return None, positive
    alarms = sum(1 for _, p in negatives if _key(p) == pos)
    return alarms / len(negatives), positive


def _key(value: Any) -> str:
    # true and 1 are one label to a binary classifier, and "1" as well.
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value).lower()
    return {"true": "1", "false": "0"}.get(text, text)
