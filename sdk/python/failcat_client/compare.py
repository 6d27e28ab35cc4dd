"""Comparators of the pytest plugin: does a prediction match a case's expected output?

A comparator takes `(prediction, expected)` (both plain JSON values: the prediction has been
through the same encoding a capture uses, so numpy values, tuples and dataclasses compare
as their JSON) and returns True when the case passes.

- `exact` (default): JSON equality. Objects compare without regard to key order; `true` is
  not `1` and `1` is `1.0`, as two JSON documents would be compared.
- `label`: the `label` key of each side when it is an object holding one, else the value
  itself, compared exactly: `"fraud"` matches `{"label": "fraud", "score": 0.97}`.
- `tolerance:T`: numbers within T (absolute) of each other, anywhere in the structure; every
  other value compares exactly.
- `package.module:function`: your own, imported by name.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping
from typing import Any, Callable

from failcat_client._wire import dumps

Comparator = Callable[[Any, Any], bool]
NAMES = "exact, label, tolerance:T or package.module:function"


class ComparatorError(ValueError):
    """The --failcat-compare value names no comparator that can be used."""


def as_json(value: Any) -> Any:
    """`value` as the JSON a report would carry (numpy, dataclasses, sets, ... converted)."""
    return json.loads(dumps(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(left: Any, right: Any, tolerance: float) -> bool:
    if _is_number(left) and _is_number(right):
        if tolerance == 0:
            return left == right
        gap = abs(left - right)
        # A gap of exactly T passes, as written: 0.55 - 0.5 is 0.05000000000000004 in floats.
        return gap <= tolerance or math.isclose(gap, tolerance, rel_tol=1e-9)
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(
            _equal(left[key], right[key], tolerance) for key in left
        )
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_equal(a, b, tolerance) for a, b in zip(left, right))
    if isinstance(left, (Mapping, list)) or isinstance(right, (Mapping, list)):
        return False
    return bool(left == right)


def exact(prediction: Any, expected: Any) -> bool:
    return _equal(prediction, expected, 0.0)


def _label(value: Any) -> Any:
    if isinstance(value, Mapping) and "label" in value:
        return value["label"]
    return value


def label(prediction: Any, expected: Any) -> bool:
    return _equal(_label(prediction), _label(expected), 0.0)


def tolerance(limit: float) -> Comparator:
    def within(prediction: Any, expected: Any) -> bool:
        return _equal(prediction, expected, limit)

    within.__name__ = f"tolerance_{limit:g}"
    return within


def _custom(spec: str) -> Comparator:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ComparatorError(f"{spec!r}: expected {NAMES}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComparatorError(f"{spec!r}: cannot import {module_name}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ComparatorError(f"{spec!r}: {module_name} has no {attribute}") from None
    if not callable(target):
        raise ComparatorError(f"{spec!r}: {attribute} is not callable")
    return target  # type: ignore[no-any-return]


def comparator(spec: str) -> Comparator:
    """The comparator a --failcat-compare value names."""
    spec = spec.strip()
    if spec == "exact":
        return exact
    if spec == "label":
        return label
    if spec.startswith("tolerance:"):
        raw = spec[len("tolerance:") :]
        try:
            limit = float(raw)
        except ValueError:
            raise ComparatorError(
                f"tolerance:{raw}: expected a number, e.g. tolerance:0.01"
            ) from None
        if not math.isfinite(limit) or limit < 0:
            raise ComparatorError(f"tolerance:{raw}: expected a finite number >= 0")
        return tolerance(limit)
    if ":" in spec:
        return _custom(spec)
    raise ComparatorError(f"{spec!r}: expected {NAMES}")
