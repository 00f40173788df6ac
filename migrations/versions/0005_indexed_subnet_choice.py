"""Indexes that keep an ADD's cost independent of how many subnets and pool members there are.

- ``subnets (provider, priority, name)``: the first subnet of a provider with free space,
  in priority order, is found walking this index instead of reading every subnet.
- ``free_ranges (subnet_id, family, pool_id, first)``: the lowest free dynamic range of a
  subnet no longer walks past the free members of its pools (a 25,000-member pool below
  the dynamic space made every dynamic ADD step over 25,000 rows).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subnets_provider_order", "subnets", ["provider", "priority", "name"])
    op.create_index("ix_free_ranges_dynamic", "free_ranges", ["subnet_id", "family", "pool_id", "first"])


def downgrade() -> None:
    op.drop_index("ix_free_ranges_dynamic", table_name="free_ranges")
    op.drop_index("ix_subnets_provider_order", table_name="subnets")
