"""The executor: graphql-core's, with a fast path for plain leaf fields; and direct calls to
simple resolvers.

A page of 100 cases has thousands of leaf fields (id, title, occurredAt ...), each of them a
strawberry "basic" field: no resolver, no permission, no extension, so strawberry resolves it
as `getattr(source, python_name)`. graphql-core still builds a path, a resolve info and two
awaitable checks for each, which costs more than all the rest of the request. Here such a
field is read and serialized inline. Nothing else changes: any other field, a field whose value
is null where the type forbids it, or one whose read or serialization fails, takes graphql-core's
own path (which then reports the error exactly as it would have). Extensions that hook every
resolver (run by graphql-core as middleware) turn the fast path off altogether.

A field with a resolver of its own but no arguments, no permission, no field extension (a
case's model, links, writeup ...) costs strawberry's generic wrapper about as much again as
the resolver itself: argument conversion, extension chaining, partials. `direct_resolvers`
gives such a field a resolve function calling it as strawberry would (the source as `self`,
an Info when it asks for one). Hooks on every resolver still wrap it (as middleware).

Both reach below the libraries' public APIs: graphql-core's `Executor.execute_fields` (marked
private) is forked, and strawberry's field definitions and resolver wrappers are read. So
pyproject.toml pins strawberry-graphql and graphql-core to exact versions, and
tests/gateway/test_library_contract.py checks, naming what changed, everything used here:
upgrading either pin is a deliberate step that re-runs those checks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from inspect import CO_ITERABLE_COROUTINE
from types import CoroutineType, GeneratorType
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    Undefined,
    is_leaf_type,
)
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_DEFINITION = "strawberry-definition"
# sha256 of the (dedented) source of graphql-core's Executor.execute_fields, which
# FailcatExecutionContext.execute_fields forks: the contract test fails when it changes.
FORKED_EXECUTE_FIELDS_SHA256 = "9a241b5415503bfb50d4a8209b20c9743a972919e40aa3b5de956639825cf45a"


def direct_resolvers(schema: Any) -> int:
    """Replace, in the built schema, the resolve function of every field whose resolver takes
    only `self` or `(self, info)`, is synchronous, and has no arguments, permission classes,
    field extensions or exception handlers. Returns how many were replaced."""
    if schema.schema_converter.exception_handlers:
        return 0
    info_class = schema.config.info_class
    replaced = 0
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for field_def in type_.fields.values():
            resolve = _direct_resolve(field_def, info_class)
            if resolve is not None:
                field_def.resolve = resolve
                replaced += 1
    return replaced


def _direct_resolve(field_def: GraphQLField, info_class: type) -> Callable[..., Any] | None:
    field = (field_def.extensions or {}).get(_DEFINITION)
    resolver = getattr(field, "base_resolver", None)
    if (
        resolver is None
        or field_def.args
        or field.arguments
        or field.extensions
        or field.is_subscription
        or resolver.is_async
        or not inspect.isfunction(resolver.wrapped_func)
    ):
        return None
    func = resolver.wrapped_func
    params = list(inspect.signature(func).parameters.values())
    self_param, info_param = resolver.self_parameter, resolver.info_parameter
    if self_param is None or params[0] != self_param:
        return None
    if len(params) == 1:

        def resolve_self(source: Any, _info: Any) -> Any:
            return func(source)

        return resolve_self
    if len(params) == 2 and info_param is not None and params[1] == info_param:

        def resolve_with_info(source: Any, info: Any) -> Any:
            return func(source, info_class(_raw_info=info, _field=field))

        return resolve_with_info
    return None


# A leaf read inline: the source attribute, how it reads, how it serializes, whether non-null.
_Leaf = tuple[str, Callable[[Any, str], Any], Callable[[Any], Any], bool]
# Per GraphQLField (by id, the field kept alive beside its entry): its _Leaf, or None.
_leaves: dict[int, tuple[GraphQLField, _Leaf | None]] = {}


def _leaf(field_def: GraphQLField) -> _Leaf | None:
    entry = _leaves.get(id(field_def))
    if entry is not None and entry[0] is field_def:
        return entry[1]
    leaf = _plain_leaf(field_def)
    _leaves[id(field_def)] = (field_def, leaf)
    return leaf


def _plain_leaf(field_def: GraphQLField) -> _Leaf | None:
    definition = (field_def.extensions or {}).get(_DEFINITION)
    resolve = field_def.resolve
    if (
        definition is None
        or field_def.args
        or not getattr(definition, "is_basic_field", False)
        # strawberry's own resolver for a basic field (not one wrapped for exception handlers)
        or getattr(resolve, "__name__", None) != "_get_basic_result"
    ):
        return None
    type_ = field_def.type
    non_null = isinstance(type_, GraphQLNonNull)
    if non_null:
        type_ = type_.of_type
    if not is_leaf_type(type_):
        return None
    return (
        definition.python_name,
        definition.default_resolver,
        type_.coerce_output_value,
        non_null,
    )


# What _read_leaf answers when graphql-core must complete the field itself.
SLOW_PATH: Any = object()


def _read_leaf(leaf: _Leaf, source: Any) -> Any:
    """The field's serialized value, or SLOW_PATH when graphql-core must complete it: a null
    in a non-null field, a value its type refuses, or a read that raised. The fast path never
    reports an error itself: graphql-core then reads the field again and reports the error at
    the field's path exactly as it always would (which is why any exception qualifies)."""
    name, read, serialize, non_null = leaf
    try:
        value = read(source, name)
        if value is None:
            return SLOW_PATH if non_null else None
        value = serialize(value)
    except Exception:
        return SLOW_PATH
    return SLOW_PATH if value is None or value is Undefined else value


_AWAITABLE_TYPES: dict[type, bool] = {t: False for t in (type(None), bool, int, float, str, list)}


def is_awaitable(value: Any) -> bool:
    """What `await` accepts, decided once per type. graphql-core (and strawberry's faster
    variant) asks `hasattr(value, "__await__")` of every resolved object; on an ORM row that
    goes through pydantic's __getattr__ and a raised AttributeError, every time."""
    kind = type(value)
    known = _AWAITABLE_TYPES.get(kind)
    if known is not None:
        return known
    if kind is GeneratorType:  # a generator-based coroutine, or a plain generator
        return bool(value.gi_code.co_flags & CO_ITERABLE_COROUTINE)
    known = _AWAITABLE_TYPES[kind] = issubclass(kind, CoroutineType) or hasattr(kind, "__await__")
    return known


class FailcatExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_awaitable = is_awaitable  # type: ignore[assignment]
        # Per collected selection set (by id, the set kept alive beside its plan).
        self._failcat_plans: dict[int, tuple[Any, Any, list[tuple[str, Any, _Leaf | None]]]] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's Executor.execute_fields (the pinned version; its source hash is
        FORKED_EXECUTE_FIELDS_SHA256), with plain leaves read inline."""
        plan = self._plan(parent_type, grouped_field_set)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list, leaf in plan:
                if leaf is not None:
                    value = _read_leaf(leaf, source_value)
                    if value is not SLOW_PATH:
                        results[response_name] = value
                        continue
                field_path = Path(path, response_name, parent_type.name)
                result = self.execute_field(
                    parent_type, source_value, field_details_list, field_path, position_context
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[f] for f in awaitable_fields])
            raise

        if not awaitable_fields:
            return results
        return self._gather_fields(results, awaitable_fields)

    async def _gather_fields(
        self, results: dict[str, Any], awaitable_fields: list[str]
    ) -> dict[str, Any]:
        if len(awaitable_fields) == 1:
            field = awaitable_fields[0]
            results[field] = await results[field]
        else:
            awaited: list[Any] = await gather_with_cancel(*(results[f] for f in awaitable_fields))
            results.update(zip(awaitable_fields, awaited, strict=True))
        return results

    def _plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: Any
    ) -> list[tuple[str, Any, _Leaf | None]]:
        """Per request, per collected selection set: which fields read inline. graphql-core
        memoizes the collected sets per request, so a page's cases share one plan."""
        plans = self._failcat_plans
        entry = plans.get(id(grouped_field_set))
        if entry is not None and entry[0] is grouped_field_set and entry[1] is parent_type:
            return entry[2]
        # strawberry hands graphql-core only the extensions that hook resolvers.
        hooked = self.middleware_manager is not None and bool(self.middleware_manager.middlewares)
        plan = []
        for response_name, field_details_list in grouped_field_set.items():
            leaf = None
            if not hooked:
                node = field_details_list[0].node
                field_def = self.schema.get_field(parent_type, node.name.value)
                if field_def is not None and not node.arguments:
                    leaf = _leaf(field_def)
            plan.append((response_name, field_details_list, leaf))
        plans[id(grouped_field_set)] = (grouped_field_set, parent_type, plan)
        return plan
