"""What the gateway relies on below the public APIs of graphql-core, strawberry and SQLAlchemy.

services/gateway/execution.py forks graphql-core's `Executor.execute_fields` and reads
strawberry's field definitions; the DataLoaders read `cache_map`, `selected_under` reads
`info._raw_info`, the guard and `direct_resolvers` read `schema._schema`; the context's
SerializedSession wraps AsyncSession's coroutine methods. pyproject.toml pins strawberry-graphql
and graphql-core exactly. On an upgrade, each test here fails naming what changed, so that the
fork and the readers are updated with it (and tests/gateway/test_execution.py then proves the
fast paths still answer exactly as strawberry does).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from graphql import GraphQLResolveInfo, GraphQLSchema
from graphql.execution.executor import Executor
from graphql.execution.middleware import MiddlewareManager
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import ExecutionContext, Info
from strawberry.types.field import StrawberryField

from services.gateway import context, execution
from services.gateway.schema import build_schema

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def pins() -> dict[str, str]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps if "==" in d)


@pytest.mark.parametrize("package", ["strawberry-graphql", "graphql-core"])
def test_pinned_exactly_and_installed(package: str) -> None:
    pinned = pins().get(package)
    assert pinned, (
        f"pyproject.toml must pin {package} exactly (==): the gateway reads its internals"
    )
    assert version(package) == pinned, (
        f"{package} {version(package)} is installed but pyproject.toml pins {pinned}: "
        "reinstall (pip install -e .), or, to upgrade, change the pin and make this file pass"
    )


def test_execute_fields_is_the_one_forked() -> None:
    source = textwrap.dedent(inspect.getsource(Executor.execute_fields))
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == execution.FORKED_EXECUTE_FIELDS_SHA256, (
        f"graphql-core {version('graphql-core')} changed Executor.execute_fields: port the "
        "change into FailcatExecutionContext.execute_fields (services/gateway/execution.py), "
        f"then set FORKED_EXECUTE_FIELDS_SHA256 = {digest!r}"
    )


def test_what_the_fork_calls_on_graphql_core() -> None:
    assert issubclass(StrawberryGraphQLCoreExecutionContext, Executor), (
        "strawberry's execution context no longer extends graphql-core's Executor"
    )
    params = list(inspect.signature(Executor.execute_field).parameters)
    assert params == [
        "self",
        "parent_type",
        "source",
        "field_details_list",
        "path",
        "position_context",
    ], f"graphql-core's Executor.execute_field takes {params} now"
    params = list(inspect.signature(Executor.execute_fields).parameters)
    assert params == [
        "self",
        "parent_type",
        "source_value",
        "path",
        "grouped_field_set",
        "position_context",
    ], f"graphql-core's Executor.execute_fields takes {params} now"
    assert list(inspect.signature(Executor.settle_in_background).parameters) == [
        "self",
        "awaitables",
    ], "graphql-core's Executor.settle_in_background changed"
    manager = MiddlewareManager(object())
    assert len(manager.middlewares) == 1, "MiddlewareManager.middlewares no longer lists them"


def test_what_the_fast_paths_read_from_strawberry() -> None:
    schema = build_schema()
    assert isinstance(schema._schema, GraphQLSchema), "strawberry's Schema._schema moved"
    assert hasattr(schema.schema_converter, "exception_handlers"), (
        "strawberry's schema converter no longer has exception_handlers"
    )
    case_type = schema._schema.type_map["FailureCase"]
    title = case_type.fields["title"]
    definition = (title.extensions or {}).get("strawberry-definition")
    assert isinstance(definition, StrawberryField), (
        "strawberry no longer keeps its field under the 'strawberry-definition' extension"
    )
    for attr in ("is_basic_field", "default_resolver", "python_name", "base_resolver"):
        assert hasattr(definition, attr), f"StrawberryField.{attr} is gone"
    assert getattr(title.resolve, "__name__", None) == "_get_basic_result", (
        "strawberry renamed the resolver of a basic field (was _get_basic_result): the leaf "
        "fast path would silently turn off"
    )
    assert execution._leaf(title) is not None, "FailureCase.title no longer reads inline"
    model = case_type.fields["model"]
    resolver = model.extensions["strawberry-definition"].base_resolver
    for attr in ("is_async", "wrapped_func", "self_parameter", "info_parameter"):
        assert hasattr(resolver, attr), f"StrawberryResolver.{attr} is gone"
    assert model.resolve.__name__ in ("resolve_self", "resolve_with_info"), (
        "FailureCase.model no longer gets a direct resolver"
    )
    info_fields = set(inspect.signature(Info).parameters)
    assert {"_raw_info", "_field"} <= info_fields, f"strawberry's Info takes {info_fields} now"
    for attr in ("fragments", "field_nodes"):
        assert attr in GraphQLResolveInfo._fields, f"GraphQLResolveInfo.{attr} is gone"


def test_what_the_guard_and_websocket_handler_read_from_strawberry() -> None:
    """The guard reads the operationName as sent (ExecutionContext.operation_name falls back
    to the first operation's); the websocket handler overrides handle_message."""
    named = ExecutionContext(query="query A { a }", schema=None, allowed_operations=())  # type: ignore[arg-type]
    assert hasattr(named, "_provided_operation_name"), (
        "strawberry's ExecutionContext no longer keeps _provided_operation_name: the guard's "
        "'Must provide operation name' check would fail every request"
    )
    for name in ("handle_message", "handle_invalid_message"):
        assert name in vars(BaseGraphQLTransportWSHandler), (
            f"strawberry's graphql-transport-ws handler no longer has {name}"
        )


async def test_dataloader_cache_map_holds_the_futures() -> None:
    async def load(keys: list[int]) -> list[int]:
        return [k * 2 for k in keys]

    loader = DataLoader(load_fn=load)
    assert await loader.load(3) == 6
    future = loader.cache_map.get(3)
    assert future is not None and future.done() and future.result() == 6, (
        "strawberry's DataLoader.cache_map no longer maps a key to its future"
    )


def _code(name: str) -> str:
    return re.sub(r'""".*?"""', "", inspect.getsource(getattr(AsyncSession, name)), flags=re.S)


def test_every_async_session_operation_takes_its_turn() -> None:
    methods = {
        n for n in dir(AsyncSession) if inspect.iscoroutinefunction(getattr(AsyncSession, n))
    }
    known = set(context.SERIALIZED_METHODS) | set(context.DELEGATING_METHODS)
    assert methods == known, (
        f"AsyncSession's coroutine methods changed: new {sorted(methods - known)}, gone "
        f"{sorted(known - methods)}; classify them in services/gateway/context.py"
    )
    for name in context.SERIALIZED_METHODS:
        assert "greenlet_spawn" in _code(name), f"AsyncSession.{name} no longer runs an operation"
        assert getattr(context.SerializedSession, name).__wrapped__ is getattr(AsyncSession, name)
    for name, target in context.DELEGATING_METHODS.items():
        code = _code(name)
        assert "greenlet_spawn" not in code, (
            f"AsyncSession.{name} now runs an operation itself: move it to SERIALIZED_METHODS"
        )
        if target is not None:
            assert f"self.{target}(" in code, f"AsyncSession.{name} no longer calls {target}"
    assert "bind" in async_sessionmaker(None).kw, "async_sessionmaker.kw no longer holds its config"
