"""Settings, read once from the environment into one typed object."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import said


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FAILCAT_", extra="ignore", frozen=True)

    data_dir: Path = Path(".failcat")
    database_url: str | None = Field(
        default=None, description="Default: SQLite at $FAILCAT_DATA_DIR/catalog.db"
    )
    search_url: str = "embedded"
    search_index: str = "failcat-cases"
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "failcat"
    env: Literal["development", "production"] = "development"
    access_token_ttl_s: int = Field(default=900, ge=30, le=86400)
    # How often the indexer drains the outbox while writes come. Idle, its poll slows to once
    # a second (search.service.IDLE_POLL_MAX_S); this process's own writes wake it at once.
    indexer_poll_s: float = Field(default=0.05, gt=0, le=60)
    indexer_batch: int = Field(default=500, ge=1, le=10000)
    # Revocations reach resource servers through this poll interval (the 5 s contract).
    revocation_poll_s: float = Field(default=1.0, gt=0, le=5)
    run_indexer_in_process: bool = True
    # The retention job's period in the worker (and in an API that runs the indexer); 0: off.
    retention_interval_s: float = Field(default=3600, ge=0)
    log_level: str = "INFO"
    # The audit trail's signed checkpoints (services/audit/AUDIT.md): written every N entries
    # or T seconds by the background jobs, to this directory (default $FAILCAT_DATA_DIR/audit).
    audit_checkpoint_dir: Path | None = None
    audit_checkpoint_entries: int = Field(default=10_000, ge=1)
    audit_checkpoint_interval_s: float = Field(default=60.0, gt=0)
    # Off only to measure what auditing reads costs (benchmarks/audit.py); never in production.
    audit_reads: bool = True
    # May escalation webhooks post to loopback, private or link-local addresses? Unset: yes in
    # development (receivers on localhost), no in production (a rule cannot make the server
    # reach its own network's internal services).
    webhook_private_destinations: bool | None = None

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    @field_validator("search_url")
    @classmethod
    def _known_search(cls, v: str) -> str:
        if v != "embedded" and not v.startswith(("http://", "https://")):
            raise ValueError("must be 'embedded' or an http(s):// OpenSearch URL")
        return v.rstrip("/")

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return v.rstrip("/")

    @cached_property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'catalog.db'}"

    @property
    def audit_dir(self) -> Path:
        """Where the dedicated audit signing key lives (never the OAuth keys' place)."""
        return self.data_dir / "audit"

    @property
    def checkpoint_dir(self) -> Path:
        return self.audit_checkpoint_dir or self.audit_dir

    @property
    def embedded_search(self) -> bool:
        return self.search_url == "embedded"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def private_webhooks_allowed(self) -> bool:
        if self.webhook_private_destinations is not None:
            return self.webhook_private_destinations
        return not self.production


def load_settings(**overrides: object) -> Settings:
    """Read settings; on a bad value print one line naming the variable and exit 2."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "FAILCAT_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
        msg = said(err)
        print(f"failcat: invalid setting {name}: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
