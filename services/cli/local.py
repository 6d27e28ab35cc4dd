"""Local (operator) mode: the commands that open the database check it first, read-only.

Opening SQLite through the engine would create an empty file (and its directory) wherever the
command happens to run; a read or a typo must never do that. Only `failcat db upgrade` (and
`failcat serve` on the embedded backend, which migrates) create a database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from services.cli.errors import CliError
from shared.settings import Settings

UPGRADE_HINT = "run `failcat db upgrade` (or pass --url URL to use a running server)"


def sqlite_path(settings: Settings) -> Path | None:
    url = settings.catalog_url
    if not url.startswith("sqlite"):
        return None
    return Path(url.split("///", 1)[-1])


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from shared.migrate import alembic_config

    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def require_database(settings: Settings) -> None:
    """Refuse, with one line, a database that does not exist or is not at the head revision."""
    path = sqlite_path(settings)
    if path is not None:
        where = str(path.resolve())
        if not path.is_file():
            raise CliError(
                f"no database at {where} (FAILCAT_DATA_DIR={settings.data_dir}): {UPGRADE_HINT}"
            )
        revisions = _sqlite_revisions(path)
    else:
        where = _redacted(settings.catalog_url)
        revisions = asyncio.run(_postgres_revisions(settings.catalog_url, where))
    heads = head_revisions()
    if revisions != heads:
        at = ", ".join(sorted(revisions)) or "none (empty)"
        raise CliError(
            f"the database at {where} is not migrated (revision {at}, "
            f"expected {', '.join(sorted(heads))}): {UPGRADE_HINT}"
        )


def require_search_index(settings: Settings) -> None:
    """The embedded index is a file too: a search must not create an empty one."""
    if settings.embedded_search and not (settings.data_dir / "search.db").is_file():
        where = (settings.data_dir / "search.db").resolve()
        raise CliError(
            f"no search index at {where}: run `failcat reindex` to build it from the catalog"
        )


def _sqlite_revisions(path: Path) -> set[str]:
    # mode=ro: never creates the file, never takes a write lock.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.DatabaseError:
        return set()  # no alembic_version table (or not a database at all)
    finally:
        conn.close()


async def _postgres_revisions(url: str, where: str) -> set[str]:
    import asyncpg

    try:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    except asyncpg.InvalidCatalogNameError:
        raise CliError(f"no database at {where}: {UPGRADE_HINT}") from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise CliError(f"cannot open the database at {where}: {exc}") from None
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {r["version_num"] for r in rows}


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
