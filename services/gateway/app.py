"""The ASGI app: builds every engine and client once in the lifespan and mounts each API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.annotation.api import router as annotation_router
from services.auth import protocol
from services.auth.api import router as auth_router
from services.auth.service import AuthService
from services.catalog.api import router as catalog_router
from services.gateway.ui.api import mount_ui
from services.governance.escalation.runtime import attach as attach_escalation
from services.governance.redaction import service as redaction
from services.safeguards.api import router as safeguards_router
from services.search.api import router as search_router
from services.search.service import SearchService
from services.sharing.api import router as sharing_router
from shared.changes import ChangeFeed
from shared.db import Database
from shared.settings import Settings, load_settings
from shared.telemetry import configure_tracing
from shared.web import install_error_handlers

log = logging.getLogger("failcat.app")


def create_app(settings: Settings | None = None, role: str = "all") -> FastAPI:
    """role: "all" (API + authorization server), "api" (API only), "auth" (OAuth only)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tracing()  # exports spans only when OTEL_EXPORTER_OTLP_ENDPOINT is set
        db = Database(settings.catalog_url, audit_reads=settings.audit_reads)
        redaction.install(db, settings)  # the instance key of hash-mode redaction
        feed = None
        bus = getattr(app.state, "case_events", None)
        if bus is not None:
            # Changes committed by any process (Postgres NOTIFY) reach this one's subscribers.
            feed = ChangeFeed(db)
            feed.subscribe(bus.publish_changes)
            await feed.start()
        auth = await AuthService.start(settings, db)
        search = await SearchService.start(settings, db) if role != "auth" else None
        app.state.settings, app.state.db, app.state.auth, app.state.search = (
            settings,
            db,
            auth,
            search,
        )
        created = await auth.ensure_bootstrap_client()
        if created is not None:
            print(bootstrap_banner(settings, created), file=sys.stderr, flush=True)
        if role == "all" and not settings.production:
            # After the bootstrap client: on a fresh install that one must come first.
            from services.gateway.graphiql import ensure_sign_in

            app.state.graphiql_sign_in = await ensure_sign_in(auth, settings)
        tasks = []
        if search is not None:
            app.state.escalation = attach_escalation(
                db, search, allow_private=settings.private_webhooks_allowed
            )
        if search is not None and settings.run_indexer_in_process:
            from services.audit.service import run_checkpoints

            tasks.append(asyncio.create_task(search.run_indexer(), name="indexer"))
            tasks.append(asyncio.create_task(app.state.escalation.run(), name="escalation"))
            tasks.append(asyncio.create_task(run_checkpoints(db, settings), name="audit"))
            if settings.retention_interval_s > 0:
                # The worker's other job, where the API is the worker (the embedded default).
                from services.governance.retention.service import retention_loop

                tasks.append(
                    asyncio.create_task(
                        retention_loop(db, settings.retention_interval_s), name="retention"
                    )
                )
        # Everything built so far lives as long as the process: out of the collector's
        # sight, a full collection walks only what requests allocate (a walk of the schema,
        # the engines and the compiled-statement caches paused the loop 0.6 s every ~60
        # searches).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if search is not None:
                await app.state.escalation.close()
                await search.close()
            await auth.close()
            if feed is not None:
                await feed.close()
            await db.dispose()

    app = FastAPI(
        title="failcat",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None if settings.production else "/openapi.json",
    )
    install_error_handlers(app)
    _install_gateway_middleware(app)
    if role != "auth":
        from services.gateway.events import CaseEventBus
        from services.gateway.schema import graphql_app

        app.state.case_events = CaseEventBus()
        # First in the route table: the busiest route is matched without scanning the others.
        graphql = graphql_app(settings)
        app.add_route("/graphql", graphql, methods=["GET", "POST"], include_in_schema=False)
        app.router.add_websocket_route("/graphql", graphql)
        if not settings.production:
            from services.gateway import graphiql

            app.mount(graphiql.ASSETS_PATH, graphiql.assets(), name="graphiql-assets")
    # "api" serves the resource APIs only: tokens are issued by a separate `--role auth`
    # process and validated here locally against the shared keys.
    if role != "api":
        app.include_router(auth_router)
    from services.gateway.health import router as health_router

    app.include_router(health_router)
    if role != "auth":
        app.include_router(catalog_router)
        app.include_router(search_router)
        app.include_router(safeguards_router)
        app.include_router(annotation_router)
        app.include_router(sharing_router)
        mount_ui(app, role)

    @app.get("/", include_in_schema=False)
    async def root() -> JSONResponse:
        return JSONResponse({"graphql": "/graphql", "oauth_metadata": protocol.METADATA})

    return app


def _install_gateway_middleware(app: FastAPI) -> None:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it costs tens of microseconds a request).
    Added last runs first: the correlation id is set before the body limit can refuse."""
    from services.gateway.http_limits import BodyLimitMiddleware
    from services.gateway.observability import CorrelationIdMiddleware, metrics_router

    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(CorrelationIdMiddleware)
    app.include_router(metrics_router)


def bootstrap_banner(settings: Settings, created: dict[str, str]) -> str:
    return (
        "failcat: created the bootstrap admin client (shown once; also in "
        f"{settings.data_dir / 'bootstrap-client.json'}):\n"
        f"  client_id:     {created['client_id']}\n"
        f"  client_secret: {created['client_secret']}\n"
        f"  GraphQL:       {settings.issuer}/graphql\n"
        f"  OAuth metadata: {settings.issuer}{protocol.METADATA}"
    )


def app_from_environment() -> FastAPI:
    """The factory `failcat serve --workers N` gives uvicorn (one app per worker process)."""
    import os

    from shared.runtime import prepare_process

    settings = load_settings()
    prepare_process(settings.log_level)
    return create_app(settings, role=os.environ.get("FAILCAT_SERVE_ROLE", "all"))
