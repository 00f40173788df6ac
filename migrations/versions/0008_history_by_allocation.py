"""The history of an address is read a page of allocations at a time.

``address_events (address, family, allocation_id)`` replaces ``(address, id)``: a page of
``/v1/ips/{address}`` is the next allocations after the continue token's, read in index
order, so its cost does not grow with the history kept (docs/operations.md, history
retention). The old index served only the whole-history read this replaces.

``CREATE INDEX`` blocks inserts into the table while it builds, so allocations wait: 3 to 7 s
per million events on PostgreSQL, 4 to 11 s on SQLite, on a busy 2-core machine
(benchmarks/history_retention.py). On PostgreSQL with a long history, build it beforehand
without blocking, and this migration keeps it:
``CREATE INDEX CONCURRENTLY ix_address_events_address_family_allocation_id ON address_events (address, family, allocation_id)``.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NEW = "ix_address_events_address_family_allocation_id"
OLD = "ix_address_events_address"


def upgrade() -> None:
    op.create_index(NEW, "address_events", ["address", "family", "allocation_id"], if_not_exists=True)
    op.drop_index(OLD, table_name="address_events")


def downgrade() -> None:
    op.create_index(OLD, "address_events", ["address", "id"])
    op.drop_index(NEW, table_name="address_events")
