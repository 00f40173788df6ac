"""Placement rules on pools: which pods, namespaces and nodes may take a pool's addresses.

Subnets keep their rules in their ``spec`` JSON; pools store only their members, so their
rules get a column of their own. Null (every existing pool) means no rules: the pool serves
whoever names it, as before.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("rules", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("rules")
