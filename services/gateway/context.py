"""Per-request GraphQL context: the caller, one lazily opened transaction, the DataLoaders."""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from services.gateway.catalog.loaders import CatalogLoaders
from shared.security import Principal


class Context(BaseContext):
    def __init__(self, connection: HTTPConnection) -> None:
        super().__init__()
        self._connection = connection
        self.app_state = connection.app.state
        self._session: AsyncSession | None = None
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

        Root fields and DataLoader batches run concurrently and share this session. The
        driver adapters serialize statements on its one connection, but a session still
        connecting refuses a second caller: so the connection is made here, once, under a lock.
        """
        if self._session is None:
            async with self._opening:
                if self._session is None:
                    session = self.app_state.db.sessionmaker()
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

    async def end_unit_of_work(self) -> None:
        """Between two subscription events: close the transaction, forget cached rows, so a
        long-lived subscription neither holds a connection nor serves stale relations."""
        if self._session is not None:
            session, self._session = self._session, None
            try:
                await session.commit()
            finally:
                await session.close()
        self.__dict__.pop("loaders", None)
