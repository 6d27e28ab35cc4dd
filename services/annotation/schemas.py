"""Taxonomy fields, and the validation of annotation values against a taxonomy version."""

from __future__ import annotations

import math
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import BadUserInput, FieldError

# How many permitted values an error message lists before it says "...".
LISTED_VALUES = 20
MAX_NOTES = 20_000


class FieldType(StrEnum):
    ENUM = "enum"
    MULTI_ENUM = "multi_enum"
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"
    DATE = "date"
    LIST = "list"  # free strings (a multi-enum without a closed value set)
    OBJECT_LIST = "object_list"


# Types whose values are sets: agreement compares them with a set distance.
SET_TYPES = (FieldType.MULTI_ENUM, FieldType.LIST)
# Types reviewers compare value by value (free text always "disagrees").
COMPARABLE_TYPES = (
    FieldType.ENUM,
    FieldType.MULTI_ENUM,
    FieldType.BOOL,
    FieldType.INT,
    FieldType.FLOAT,
    FieldType.DATE,
)


class AnnotationStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"


class TaxonomyField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300)
    number: str | None = None
    type: FieldType
    permitted_values: list[str] = Field(default_factory=list)
    required: bool = False
    ordinal: bool = False
    # The order of an ordinal field's values, first to last (defaults to permitted_values).
    order: list[str] = Field(default_factory=list)
    description: str = ""
    subfields: list[TaxonomyField] = Field(default_factory=list)

    @property
    def ranked(self) -> list[str]:
        return self.order or self.permitted_values


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _listed(values: list[str]) -> str:
    shown = ", ".join(values[:LISTED_VALUES])
    return shown + (f", ... ({len(values)} in all)" if len(values) > LISTED_VALUES else "")


def flatten(values: dict[str, Any], fields: dict[str, TaxonomyField]) -> dict[str, Any]:
    """Nested objects name dotted fields: {"impact": {"safety": "high"}} is "impact.safety"."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields and isinstance(value, dict):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[key] = value
    return out


def _check_value(f: TaxonomyField, value: Any, path: str) -> tuple[Any, list[FieldError]]:
    """The value in its stored form, or the errors naming the field and what it accepts."""
    t = f.type
    if t == FieldType.ENUM:
        if not isinstance(value, str) or (f.permitted_values and value not in f.permitted_values):
            return None, [
                FieldError(
                    path, f"{value!r} is not permitted; one of: {_listed(f.permitted_values)}"
                )
            ]
        return value, []
    if t in SET_TYPES:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, [FieldError(path, "expected a list of strings")]
        bad = [v for v in value if f.permitted_values and v not in f.permitted_values]
        if bad:
            return None, [
                FieldError(
                    path, f"{bad[0]!r} is not permitted; any of: {_listed(f.permitted_values)}"
                )
            ]
        return sorted(set(value)), []
    if t == FieldType.BOOL:
        if not isinstance(value, bool):
            return None, [FieldError(path, "expected true or false")]
        return value, []
    if t == FieldType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, [FieldError(path, "expected an integer")]
        return value, []
    if t == FieldType.FLOAT:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return None, [FieldError(path, "expected a finite number")]
        return float(value), []
    if t == FieldType.STRING:
        if not isinstance(value, str) or len(value) > MAX_NOTES:
            return None, [FieldError(path, f"expected a string of at most {MAX_NOTES} characters")]
        return value, []
    if t == FieldType.DATE:
        try:
            return date.fromisoformat(value).isoformat(), []
        except (TypeError, ValueError):
            return None, [FieldError(path, "expected a date as YYYY-MM-DD")]
    # A list of objects, each checked against the subfields.
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return None, [FieldError(path, "expected a list of objects")]
    subs = {s.name: s for s in f.subfields}
    out, errors = [], []
    for i, item in enumerate(value):
        checked, errs = (
            check_values(subs, item, f"{path}.{i}", require=False) if subs else (item, [])
        )
        out.append(checked)
        errors += errs
    return out, errors


def check_values(
    fields: dict[str, TaxonomyField], values: dict[str, Any], prefix: str, *, require: bool
) -> tuple[dict[str, Any], list[FieldError]]:
    out: dict[str, Any] = {}
    errors: list[FieldError] = []
    wrong: set[str] = set()  # given but invalid: named once, by what is wrong with it
    for key, value in flatten(values, fields).items():
        path = f"{prefix}.{key}"
        f = fields.get(key)
        if f is None:
            errors.append(
                FieldError(path, f"unknown field; the fields are: {_listed(list(fields))}")
            )
            continue
        if is_empty(value):
            continue
        checked, errs = _check_value(f, value, path)
        errors += errs
        if errs:
            wrong.add(key)
        else:
            out[key] = checked
    if require:
        errors += [
            FieldError(f"{prefix}.{name}", "required")
            for name, f in fields.items()
            if f.required and name not in out and name not in wrong
        ]
    return out, errors


def validate_values(
    taxonomy: str, fields: list[TaxonomyField], values: Any, *, require: bool
) -> dict[str, Any]:
    """The values as stored, or BadUserInput naming every wrong field (and what it accepts)."""
    if not isinstance(values, dict):
        raise BadUserInput(
            "values must be a JSON object", [FieldError("values", "expected an object")]
        )
    out, errors = check_values({f.name: f for f in fields}, values, "values", require=require)
    if errors:
        raise BadUserInput(
            f"invalid values for taxonomy {taxonomy}: {errors[0].path}: {errors[0].message}",
            errors,
        )
    return out


def check_confidence(confidence: float | None) -> None:
    if confidence is not None and not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise BadUserInput(
            "confidence must be between 0 and 1", [FieldError("confidence", "between 0 and 1")]
        )
