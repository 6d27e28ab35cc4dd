"""Per-request GraphQL context: the caller, one lazily opened transaction, the DataLoaders."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from services.gateway.catalog.loaders import CatalogLoaders
from shared.security import Principal

# The coroutine methods of AsyncSession that run an operation on the sync session (through
# greenlet_spawn): each waits for the session's turn. The others only call one of these
# (`scalars` calls `execute`, `aclose` and `__aexit__` call `close`) and are left alone, so a
# turn is never taken twice. The contract test fails, naming the method, if SQLAlchemy changes
# which is which.
SERIALIZED_METHODS = (
    "close",
    "commit",
    "connection",
    "delete",
    "delete_all",
    "execute",
    "flush",
    "get",
    "get_one",
    "invalidate",
    "merge",
    "merge_all",
    "refresh",
    "reset",
    "rollback",
    "run_sync",
    "scalar",
    "stream",
)
DELEGATING_METHODS = {
    "__aenter__": None,
    "__aexit__": "close",
    "aclose": "close",
    "close_all": None,  # a classmethod: no session of its own
    "scalars": "execute",
    "stream_scalars": "stream",
}


def _in_turn(name: str) -> Callable[..., Any]:
    method = getattr(AsyncSession, name)

    @functools.wraps(method)
    async def in_turn(self: SerializedSession, *args: Any, **kwargs: Any) -> Any:
        async with self.turn:
            return await method(self, *args, **kwargs)

    return in_turn


class SerializedSession(AsyncSession):
    """The session of one GraphQL request, shared by its concurrent resolvers.

    A SQLAlchemy session must not be used by two operations at once, and graphql-core runs a
    request's root fields and DataLoader batches concurrently. We SERIALIZE rather than give
    each concurrent path a session of its own: a request is one transaction (a mutation
    document commits or rolls back as a whole, and reads see its writes), and a session per
    path would also take a connection per path. So every database operation on this session
    waits for its turn on one lock (`turn`) and runs alone from its start to its end; a
    stream (`stream`, `stream_scalars`) holds the turn only while it is opened, so resolvers
    do not stream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turn = asyncio.Lock()


for _name in SERIALIZED_METHODS:
    setattr(SerializedSession, _name, _in_turn(_name))


class Context(BaseContext):
    def __init__(self, connection: HTTPConnection) -> None:
        super().__init__()
        self._connection = connection
        self.app_state = connection.app.state
        self._session: SerializedSession | None = None
        self._opening = asyncio.Lock()
        # Set by strawberry from the graphql-transport-ws connection_init payload.
        self.connection_params: dict[str, Any] | None = None

    @cached_property
    def principal(self) -> Principal:
        header = self._connection.headers.get("authorization")
        if header is None and self.connection_params:
            # Browsers cannot set headers on a websocket: the token comes in connection_init.
            header = self.connection_params.get("Authorization") or self.connection_params.get(
                "authorization"
            )
        return self.app_state.auth.authenticate(header if isinstance(header, str) else None)

    async def session(self) -> AsyncSession:
        """Opened on first use; TransactionExtension commits it before the response goes out.

        Root fields and DataLoader batches run concurrently and share this session: its
        operations take turns (SerializedSession). It is opened, and connected, once.
        """
        if self._session is None:
            async with self._opening:
                if self._session is None:
                    # The application's session configuration, in the serialized class.
                    session = SerializedSession(**self.app_state.db.sessionmaker.kw)
                    await session.begin()
                    await session.connection()
                    self._session = session
        return self._session

    @property
    def opened_session(self) -> AsyncSession | None:
        return self._session

    @cached_property
    def loaders(self) -> CatalogLoaders:
        return CatalogLoaders(self)

    @property
    def search(self) -> Any:
        return self.app_state.search

    @property
    def case_events(self) -> Any:
        return self.app_state.case_events

    async def end_transaction(self, commit: bool = True) -> None:
        """Commit (or roll back) and close the session, if one was opened; the next
        `session()` opens a new one."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if commit:
                await self.app_state.db.commit(session)
            else:
                await session.rollback()
        finally:
            await session.close()

    async def end_unit_of_work(self) -> None:
        """Between two subscription events: close the transaction, forget cached rows, so a
        long-lived subscription neither holds a connection nor serves stale relations."""
        await self.end_transaction()
        self.__dict__.pop("loaders", None)
