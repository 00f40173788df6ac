"""``write_checks``: the row a daemon rewrites to learn that database writes work again.

While writes fail (a full disk, a read-only file system or standby), readiness stays false
until a write lands; without requests to try, the daemon tries this one (ipamd.store.faults).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "write_checks",
        sa.Column("node", sa.String(253), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("node", name="pk_write_checks"),
    )


def downgrade() -> None:
    op.drop_table("write_checks")
