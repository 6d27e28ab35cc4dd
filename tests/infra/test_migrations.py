"""Migrations build exactly the schema the models describe, on SQLite and on Postgres."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from infra.migrations.schema import include_object_for, target_metadata
from shared.migrate import alembic_config


async def test_migrated_schema_matches_the_models(db):
    def diff(sync_conn):
        opts = {"compare_type": True, "include_object": include_object_for(sync_conn.dialect.name)}
        ctx = MigrationContext.configure(sync_conn, opts=opts)
        return compare_metadata(ctx, target_metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert differences == []
    # The one head of the chain (read from the scripts, so re-chaining keeps this true).
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1 and version == heads[0]


async def test_reference_data_is_seeded(db):
    async with db.engine.connect() as conn:
        modes = (
            await conn.execute(text("SELECT count(*) FROM failure_mode WHERE taxonomy_version = 1"))
        ).scalar()
        grades = (
            await conn.execute(
                text("SELECT grade FROM severity_grade WHERE rubric_version = 1 ORDER BY rank")
            )
        ).scalars()
        assert modes >= 9 * 3
        assert list(grades) == ["S0", "S1", "S2", "S3", "S4"]
