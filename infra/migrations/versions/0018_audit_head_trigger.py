"""SQLite: the audit head follows each appended entry (a trigger), so a read's entry is one
INSERT ... SELECT from the head (shared/audit.py `_append_one_sqlite`), one trip to the
driver's thread instead of three. Postgres appends in one statement already (a CTE).

Revision ID: 0018
Revises: 0022
"""

from alembic import op

revision = "0018"
down_revision = "0022"
branch_labels = None
depends_on = None

TRIGGER = "audit_log_moves_head"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Entries are appended in seq order under the head's write lock, so the newest entry is
    # the head: setting it from each insert leaves what the multi-entry path writes as well.
    op.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON audit_log BEGIN "
        "UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
