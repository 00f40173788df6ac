"""Allocations record the door they came through (``origin``: "cni" or "api").

A CNI GC may only collect attachments that a CNI ADD made on the same node; allocations
made through the REST API are released by DELETE alone. Rows made before this revision are
"cni" when they carry a container id (only the CNI path sets one), else "api".

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("allocations") as batch:
        batch.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="api"))
    op.execute("UPDATE allocations SET origin = 'cni' WHERE container_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("allocations") as batch:
        batch.drop_column("origin")
