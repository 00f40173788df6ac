"""A MAC is unique per network, enforced by the database.

The service checks before inserting, but two daemons can both pass that check at the same
moment; the constraint makes the second insert fail, and the allocation retry then reports
the holder.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("allocations") as batch:
        batch.create_unique_constraint("uq_allocations_network_key_mac", ["network_key", "mac"])


def downgrade() -> None:
    with op.batch_alter_table("allocations") as batch:
        batch.drop_constraint("uq_allocations_network_key_mac", type_="unique")
