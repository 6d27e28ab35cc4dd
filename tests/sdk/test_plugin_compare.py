"""The pytest plugin's comparators: exact (JSON equality), label, tolerance:T, module:fn."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
from failcat_client.compare import ComparatorError, as_json, comparator, exact, label


def test_exact_is_json_equality() -> None:
    assert exact({"label": "fraud", "score": 0.5}, {"score": 0.5, "label": "fraud"})
    assert exact([1, 2.0], [1.0, 2])  # one JSON number
    assert exact(None, None) and exact("a", "a")
    assert not exact({"label": "fraud"}, {"label": "fraud", "score": 0.5})
    assert not exact([1, 2], [2, 1])
    assert not exact(True, 1) and not exact(0, False)  # true is not 1 in JSON
    assert not exact("1", 1)
    assert not exact({"a": [1]}, {"a": 1})
    assert not exact([{"a": 1}], [{"a": 1.0001}])


def test_predictions_compare_as_their_json() -> None:
    @dataclasses.dataclass
    class Prediction:
        label: str
        scores: tuple[float, ...]

    assert as_json(Prediction("ok", (0.25, 0.75))) == {"label": "ok", "scores": [0.25, 0.75]}
    assert exact(as_json(("a", {"b"})), ["a", ["b"]])
    assert as_json(float("nan")) is None  # what a report would carry


def test_label_compares_the_label_key_or_the_value() -> None:
    assert label({"label": "fraud", "score": 0.97}, {"label": "fraud"})
    assert label("fraud", {"label": "fraud"}) and label({"label": "fraud"}, "fraud")
    assert label(1, 1) and label(True, {"label": True})
    assert not label({"label": "legit", "score": 0.97}, {"label": "fraud", "score": 0.97})
    assert not label({"score": 0.9}, {"label": "fraud"})  # no label: the whole value
    assert not label(1, {"label": True})


def test_tolerance_applies_to_every_number_of_the_structure() -> None:
    within = comparator("tolerance:0.05")
    assert within(0.52, 0.5) and within(0.5, 0.55)
    assert not within(0.56, 0.5)
    assert within({"score": 0.51, "box": [10.02, 20.0]}, {"score": 0.5, "box": [10.0, 20.04]})
    assert not within({"score": 0.51, "box": [10.2, 20.0]}, {"score": 0.5, "box": [10.0, 20.0]})
    assert within({"label": "a", "p": 0.5}, {"label": "a", "p": 0.49})
    assert not within({"label": "b", "p": 0.5}, {"label": "a", "p": 0.5})  # strings exact
    assert not within([0.5], [0.5, 0.5]) and not within(True, 1)
    assert comparator("tolerance:0")(1, 1.0) and not comparator("tolerance:0")(1, 1.001)


def test_a_custom_comparator_is_imported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("team_metrics")

    def same_top_class(prediction, expected):  # type: ignore[no-untyped-def]
        return prediction["classes"][0] == expected["classes"][0]

    module.same_top_class = same_top_class  # type: ignore[attr-defined]
    module.not_callable = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "team_metrics", module)
    custom = comparator("team_metrics:same_top_class")
    assert custom({"classes": ["a", "b"]}, {"classes": ["a", "c"]})
    assert not custom({"classes": ["b", "a"]}, {"classes": ["a", "b"]})
    with pytest.raises(ComparatorError, match="not callable"):
        comparator("team_metrics:not_callable")
    with pytest.raises(ComparatorError, match="has no missing"):
        comparator("team_metrics:missing")
    with pytest.raises(ComparatorError, match="cannot import"):
        comparator("no_such_module_anywhere:fn")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fuzzy", "expected exact, label"),
        ("tolerance:abc", "expected a number"),
        ("tolerance:-1", ">= 0"),
        ("tolerance:nan", ">= 0"),
        (":fn", "expected exact, label"),
    ],
)
def test_unknown_comparators_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ComparatorError, match=message):
        comparator(spec)
