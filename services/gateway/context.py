"""Per-request GraphQL context: the caller, one lazily opened transaction, the DataLoaders."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from strawberry.fastapi import BaseContext

from services.gateway.catalog.loaders import CatalogLoaders
from shared.security import Principal


class Context(BaseContext):
    def __init__(self, request: Request) -> None:
        super().__init__()
        self._request = request
        self.app_state = request.app.state
        self._session: AsyncSession | None = None

    @cached_property
    def principal(self) -> Principal:
        return self.app_state.auth.authenticate(self._request.headers.get("authorization"))

    async def session(self) -> AsyncSession:
        """Opened on first use; TransactionExtension commits it before the response goes out."""
        if self._session is None:
            self._session = self.app_state.db.sessionmaker()
            await self._session.begin()
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
