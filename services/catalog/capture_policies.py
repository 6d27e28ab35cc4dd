"""Capture policies: per (model name, data source), what qualifies as a candidate failure and
the minimum metadata it must carry. The rules and the choices are described in CAPTURE.md.

service.py re-exports the operations here; it stays the catalog's one entry point. Ingestion
(ingest.py) asks `BatchPolicies.load` once per batch: one query for the current version of the
keys the batch names, each compiled once (and kept compiled across batches by row id: a
version never changes once written).

failcat-client evaluates the same definition before sending (sdk/python/failcat_client/
policy.py): the qualifying conditions and the required paths are plain rules both sides
implement; the JSON Schema of `input` is checked here only (the client depends on httpx
alone).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urljoin

import orjson
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import specification_with
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.catalog.models import CapturePolicy
from services.catalog.repository import CatalogRepository
from services.catalog.schemas import CaseIn, Name
from shared.audit import audit
from shared.db import utcnow
from shared.errors import BadUserInput, Conflict, FieldError, said
from shared.ids import new_id
from shared.jsonutil import iso
from shared.security import Principal

MAX_REQUIRED_PATHS = 100
MAX_SCHEMA_BYTES = 64 * 1024
# Schema errors reported per item: enough to fix the producer, not a flood.
MAX_SCHEMA_ERRORS = 10
# The first segment of a required path: a field of the wire format.
WIRE_FIELDS = frozenset(CaseIn.model_fields)

FieldPath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualifyIn(_In):
    """Any one condition that holds qualifies an item; no condition at all qualifies every
    item (a policy of required fields only)."""

    confidence_below: float | None = Field(default=None, ge=0, le=1)
    confidence_above: float | None = Field(default=None, ge=0, le=1)
    latency_over_ms: float | None = Field(default=None, ge=0)
    prediction_mismatch: bool = False
    signals: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50
    )
    exception: bool = False


class CapturePolicyIn(_In):
    name: Name | None = None
    qualify: QualifyIn = Field(default_factory=QualifyIn)
    required: list[FieldPath] = Field(default_factory=list, max_length=MAX_REQUIRED_PATHS)
    input_schema: dict[str, Any] | None = None


# --- the rules -----------------------------------------------------------------------------
def label(value: Any) -> Any:
    """What `prediction_mismatch` compares: a dict's `label` (or `class`), else the value."""
    if isinstance(value, dict):
        return value.get("label", value.get("class", value))
    return value


def _truthy(value: Any) -> bool:
    return (
        value is not None
        and value is not False
        and value != 0
        and value != ""
        and (not isinstance(value, dict | list) or len(value) > 0)
    )


_MISSING = object()


def lookup(value: Any, path: str) -> Any:
    """The value at a dotted path through objects (and list indexes), or _MISSING; a null
    counts as missing: a required field must carry something."""
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
        if value is None or value is _MISSING:
            return _MISSING
    return value


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    model: str
    data_source: str
    version: int
    name: str
    qualify: QualifyIn
    required: tuple[str, ...]
    schema: Any  # a jsonschema validator, or None

    @property
    def label(self) -> str:
        return f"capture policy {self.name!r} (version {self.version})"

    @property
    def has_conditions(self) -> bool:
        q = self.qualify
        return (
            q.confidence_below is not None
            or q.confidence_above is not None
            or q.latency_over_ms is not None
            or q.prediction_mismatch
            or bool(q.signals)
            or q.exception
        )

    def qualifies(self, case: CaseIn, raw: dict[str, Any]) -> bool:
        q = self.qualify
        if not self.has_conditions:
            return True
        c = case.confidence
        if c is not None and q.confidence_below is not None and c < q.confidence_below:
            return True
        if c is not None and q.confidence_above is not None and c > q.confidence_above:
            return True
        if (
            q.latency_over_ms is not None
            and case.latency_ms is not None
            and case.latency_ms > q.latency_over_ms
        ):
            return True
        if q.prediction_mismatch:
            prediction, expected = raw.get("prediction"), raw.get("expected")
            if (
                prediction is not None
                and expected is not None
                and label(prediction) != label(expected)
            ):
                return True
        signals = raw.get("signals")
        if isinstance(signals, dict):
            if q.exception and _truthy(signals.get("exception")):
                return True
            if any(_truthy(signals.get(name)) for name in q.signals):
                return True
        return False

    def violations(self, case: CaseIn, raw: dict[str, Any]) -> list[FieldError]:
        """Every error of the item under this policy: missing required paths, `input` not
        matching the schema, and (last, only when the metadata is complete) not qualifying."""
        errors = [
            FieldError(path, f"required by {self.label}")
            for path in self.required
            if lookup(raw, path) is _MISSING
        ]
        if self.schema is not None:
            value = raw.get("input")
            if value is None:
                errors.append(FieldError("input", f"required by {self.label} (input schema)"))
            else:
                try:
                    found = sorted(
                        self.schema.iter_errors(value), key=lambda e: list(e.absolute_path)
                    )
                except Unresolvable as exc:
                    # A version stored before set_capture_policy refused such schemas: the
                    # item cannot be checked, and says why (this was a 500 for every item).
                    ref = getattr(exc, "ref", None) or getattr(exc, "_wrapped", exc)
                    message = f"{self.label}: the input schema's $ref {ref} does not resolve"
                    return [*errors, FieldError("input", message)]
                for e in found[:MAX_SCHEMA_ERRORS]:
                    where = ".".join(str(s) for s in e.absolute_path)
                    errors.append(
                        FieldError(
                            f"input.{where}" if where else "input",
                            # jsonschema's own message quotes the value, which may be
                            # personal data: name the rule the schema sets instead.
                            f"{self.label}: fails the input schema's {e.validator!r} "
                            f"({_short(e.validator_value)})",
                        )
                    )
        if not errors and not self.qualifies(case, raw):
            reason = f"does not qualify under {self.label}: {self.describe()}"
            errors.append(FieldError("$", reason))
        return errors

    def describe(self) -> str:
        """The conditions in words, for the "does not qualify" answer."""
        q, parts = self.qualify, []
        if q.confidence_below is not None:
            parts.append(f"confidence below {q.confidence_below:g}")
        if q.confidence_above is not None:
            parts.append(f"confidence above {q.confidence_above:g}")
        if q.latency_over_ms is not None:
            parts.append(f"latency_ms over {q.latency_over_ms:g}")
        if q.prediction_mismatch:
            parts.append("prediction differs from expected")
        if q.signals:
            parts.append(f"one of the signals {', '.join(q.signals)}")
        if q.exception:
            parts.append("an exception (signals.exception)")
        return "none of its conditions holds (" + "; ".join(parts) + ")"


_COMPILED: dict[str, CompiledPolicy] = {}
_COMPILED_MAX = 1024


def compiled(row: CapturePolicy) -> CompiledPolicy:
    """A stored version, compiled once per process (versions are immutable)."""
    found = _COMPILED.get(row.id)
    if found is not None:
        return found
    definition = CapturePolicyIn.model_validate(row.definition)
    schema = None
    if definition.input_schema is not None:
        cls = validator_for(definition.input_schema, default=Draft202012Validator)
        # An empty registry: without one jsonschema fetches a remote $ref (urlopen), from the
        # server, for each item that reaches it.
        schema = cls(definition.input_schema, registry=Registry())
    policy = CompiledPolicy(
        model=row.model,
        data_source=row.data_source,
        version=row.version,
        name=row.name,
        qualify=definition.qualify,
        required=tuple(definition.required),
        schema=schema,
    )
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[row.id] = policy
    return policy


class BatchPolicies:
    """The policies an ingested batch is held to: the current version per key, read once."""

    def __init__(self, by_key: dict[tuple[str, str], CompiledPolicy]) -> None:
        self.by_key = by_key

    @classmethod
    async def load(cls, repo: CatalogRepository, items: Iterable[Any]) -> BatchPolicies | None:
        """None when no item's key has a policy (the common case costs one indexed query)."""
        keys: set[tuple[str, str]] = set()
        for raw in items:
            if not isinstance(raw, dict):
                continue
            model, source = raw.get("model"), raw.get("data_source")
            if isinstance(model, dict) and isinstance(source, str):
                name = model.get("name")
                if isinstance(name, str):
                    keys.add((name.strip(), source.strip()))
        if not keys:
            return None
        rows = await repo.current_capture_policies(keys)
        if not rows:
            return None
        return cls({key: compiled(row) for key, row in rows.items()})

    def check(self, case: CaseIn, raw: dict[str, Any]) -> tuple[int | None, list[FieldError]]:
        """(the version met, or None without a policy; the item's errors under it)."""
        policy = self.by_key.get((case.model.name, case.data_source))
        if policy is None:
            return None, []
        return policy.version, policy.violations(case, raw)


# --- operations ----------------------------------------------------------------------------
def _check_definition(values: Any) -> CapturePolicyIn:
    try:
        definition = CapturePolicyIn.model_validate(values)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "$", said(e))
            for e in exc.errors(include_url=False)
        ]
        raise BadUserInput(f"invalid capture policy: {errors[0].message}", errors) from None
    errors = []
    for i, path in enumerate(definition.required):
        head = path.split(".", 1)[0]
        if head not in WIRE_FIELDS or any(not s for s in path.split(".")):
            errors.append(
                FieldError(
                    f"required.{i}",
                    f"{path!r}: a dotted path starting with a case field "
                    f"({', '.join(sorted(WIRE_FIELDS))})",
                )
            )
    if definition.input_schema is not None:
        if len(orjson.dumps(definition.input_schema)) > MAX_SCHEMA_BYTES:
            errors.append(FieldError("input_schema", f"larger than {MAX_SCHEMA_BYTES} bytes"))
        else:
            cls = validator_for(definition.input_schema, default=Draft202012Validator)
            try:
                cls.check_schema(definition.input_schema)
            except SchemaError as exc:
                where = ".".join(str(s) for s in exc.absolute_path)
                errors.append(
                    FieldError(
                        f"input_schema.{where}" if where else "input_schema",
                        f"not a valid JSON Schema: {exc.message}",
                    )
                )
            else:
                errors += _unresolvable_refs(definition.input_schema, cls)
    if errors:
        raise BadUserInput(f"invalid capture policy: {errors[0].message}", errors)
    return definition


def _unresolvable_refs(schema: dict[str, Any], cls: Any) -> list[FieldError]:
    """Each `$ref` that does not resolve within the schema. Remote ones are never fetched, so
    a schema relying on one (or on a `#/$defs/...` that is not there) could check no item:
    jsonschema raises at the first item that reaches it."""
    spec = specification_with(cls.META_SCHEMA["$schema"])
    root = spec.create_resource(schema)
    base = root.id() or ""
    resolver = Registry().with_resource(base, root).crawl().resolver(base_uri=base)
    errors = []
    for path, at, ref in _refs(schema, base, ()):
        try:
            resolver.lookup(urljoin(at, ref))
        except Unresolvable:
            where = ".".join(["input_schema", *path])
            message = f"{ref!r} does not resolve within the schema (remote ones are never fetched)"
            errors.append(FieldError(where, message))
    return errors


# `$dynamicRef` first resolves as a `$ref` does: to an anchor that must be in the schema.
REF_KEYWORDS = ("$ref", "$dynamicRef")


def _refs(
    node: Any, base: str, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """(path, base URI, reference) of each `$ref` in a schema, `$id`s moving the base."""
    if isinstance(node, dict):
        if isinstance(node.get("$id"), str):
            base = urljoin(base, node["$id"])
        for keyword in REF_KEYWORDS:
            if isinstance(node.get(keyword), str):
                yield (*path, keyword), base, node[keyword]
        for k, v in node.items():
            if k not in (*REF_KEYWORDS, "$id", "enum", "const", "examples", "default"):
                yield from _refs(v, base, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, base, (*path, str(i)))


def _names(model: str, data_source: str) -> tuple[str, str]:
    model, data_source = model.strip(), data_source.strip()
    errors = [
        FieldError(name, "must be 1 to 200 characters")
        for name, value in (("model", model), ("data_source", data_source))
        if not 0 < len(value) <= 200
    ]
    if errors:
        raise BadUserInput(f"invalid capture policy key: {errors[0].path}", errors)
    return model, data_source


async def set_capture_policy(
    session: AsyncSession, model: str, data_source: str, values: Any, actor: Principal
) -> CapturePolicy:
    """Store the next version of the key's policy and return it; the same definition as the
    current version changes nothing and returns that version."""
    model, data_source = _names(model, data_source)
    definition = _check_definition(values)
    stored = definition.model_dump(mode="json", exclude_none=True)
    name = definition.name or f"{model}/{data_source}"
    repo = CatalogRepository(session)
    current = (await repo.current_capture_policies([(model, data_source)])).get(
        (model, data_source)
    )
    if current is not None and current.definition == stored and current.name == name:
        return current
    row = {
        "id": new_id(),
        "model": model,
        "data_source": data_source,
        "version": (current.version if current else 0) + 1,
        "name": name,
        "definition": stored,
        "created_at": utcnow(),
        "created_by": actor.subject or "system",
    }
    try:
        async with session.begin_nested():
            await repo.insert_capture_policy(row)
    except IntegrityError:
        raise Conflict(
            f"the capture policy of {model}/{data_source} was changed meanwhile; read it again",
            [FieldError("version", f"version {row['version']} exists")],
        ) from None
    audit(
        session,
        actor,
        "catalog.capture_policy.set",
        f"capture_policy:{row['id']}",
        details={
            "model": model,
            "data_source": data_source,
            "version": row["version"],
            "required_paths": len(definition.required),
            "input_schema": definition.input_schema is not None,
        },
    )
    return CapturePolicy(**row)


async def get_capture_policy(
    session: AsyncSession, model: str, data_source: str, version: int | None = None
) -> CapturePolicy | None:
    """The current version of the key's policy (or the given version), None without one."""
    repo = CatalogRepository(session)
    model, data_source = model.strip(), data_source.strip()
    if version is None:
        return (await repo.current_capture_policies([(model, data_source)])).get(
            (model, data_source)
        )
    for row in await repo.capture_policy_versions(model, data_source):
        if row.version == version:
            return row
    return None


async def capture_policy_history(
    session: AsyncSession, model: str, data_source: str
) -> list[CapturePolicy]:
    """Every version of the key's policy, newest first."""
    return await CatalogRepository(session).capture_policy_versions(
        model.strip(), data_source.strip()
    )


async def list_capture_policies(
    session: AsyncSession, model: str | None = None, data_source: str | None = None
) -> list[CapturePolicy]:
    """The current version of every matching key's policy."""
    rows = await CatalogRepository(session).capture_policy_versions(model, data_source)
    current: dict[tuple[str, str], CapturePolicy] = {}
    for row in rows:  # newest version first within each key
        current.setdefault((row.model, row.data_source), row)
    return list(current.values())


def capture_policy_json(row: CapturePolicy) -> dict[str, Any]:
    """The wire form the REST route answers and failcat-client reads."""
    definition = row.definition or {}
    return {
        "model": row.model,
        "data_source": row.data_source,
        "version": row.version,
        "name": row.name,
        "qualify": definition.get("qualify", {}),
        "required": definition.get("required", []),
        "input_schema": definition.get("input_schema"),
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
    }


__all__ = [
    "BatchPolicies",
    "CapturePolicyIn",
    "capture_policy_history",
    "capture_policy_json",
    "get_capture_policy",
    "list_capture_policies",
    "set_capture_policy",
]


def _short(rule: Any) -> str:
    """A schema rule (the policy's, never the item's data) cut to a readable length."""
    text = json.dumps(rule, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
