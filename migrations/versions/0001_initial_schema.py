"""Initial schema: subnets, pools, reservations, allocations, free ranges, released addresses, audit history.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 00:00:46.430408
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "address_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("subnet", sa.String(length=253), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.LargeBinary(length=16), nullable=False),
        sa.Column("allocation_id", sa.Integer(), nullable=True),
        sa.Column("network_key", sa.String(length=253), nullable=True),
        sa.Column("namespace", sa.String(length=253), nullable=True),
        sa.Column("pod", sa.String(length=253), nullable=True),
        sa.Column("interface", sa.String(length=64), nullable=True),
        sa.Column("container_id", sa.String(length=253), nullable=True),
        sa.Column("reason", sa.String(length=253), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_events")),
    )
    with op.batch_alter_table("address_events", schema=None) as batch_op:
        batch_op.create_index("ix_address_events_address", ["address", "id"], unique=False)

    op.create_table(
        "subnets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("provider", sa.String(length=253), nullable=True),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("origin", sa.String(length=16), server_default="api", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subnets")),
        sa.UniqueConstraint("name", name=op.f("uq_subnets_name")),
    )
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subnets_provider"), ["provider"], unique=False)

    op.create_table(
        "pools",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("ips", sa.JSON(), nullable=False),
        sa.Column("origin", sa.String(length=16), server_default="api", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"], ["subnets.id"], name=op.f("fk_pools_subnet_id_subnets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_pools_name")),
    )
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pools_subnet_id"), ["subnet_id"], unique=False)

    op.create_table(
        "released",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.LargeBinary(length=16), nullable=False),
        sa.Column(
            "released_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"], ["subnets.id"], name=op.f("fk_released_subnet_id_subnets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_released")),
        sa.UniqueConstraint("subnet_id", "address", name=op.f("uq_released_subnet_id_address")),
    )
    with op.batch_alter_table("released", schema=None) as batch_op:
        batch_op.create_index("ix_released_order", ["subnet_id", "family", "id"], unique=False)

    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("address", sa.LargeBinary(length=16), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("owner", sa.String(length=1024), nullable=True),
        sa.Column("note", sa.String(length=1024), nullable=True),
        sa.Column("origin", sa.String(length=16), server_default="api", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"], ["subnets.id"], name=op.f("fk_reservations_subnet_id_subnets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        sa.UniqueConstraint("subnet_id", "address", name=op.f("uq_reservations_subnet_id_address")),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("network_key", sa.String(length=253), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=False),
        sa.Column("pod", sa.String(length=253), nullable=False),
        sa.Column("interface", sa.String(length=64), nullable=False),
        sa.Column("address_v4", sa.LargeBinary(length=16), nullable=True),
        sa.Column("address_v6", sa.LargeBinary(length=16), nullable=True),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("pool_id", sa.Integer(), nullable=True),
        sa.Column("container_id", sa.String(length=253), nullable=True),
        sa.Column("pod_uid", sa.String(length=64), nullable=True),
        sa.Column("netns", sa.String(length=1024), nullable=True),
        sa.Column("node", sa.String(length=253), nullable=True),
        sa.Column("hold", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_allocations_pool_id_pools"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"], ["subnets.id"], name=op.f("fk_allocations_subnet_id_subnets"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint(
            "network_key",
            "namespace",
            "pod",
            "interface",
            name=op.f("uq_allocations_network_key_namespace_pod_interface"),
        ),
        sa.UniqueConstraint("subnet_id", "address_v4", name=op.f("uq_allocations_subnet_id_address_v4")),
        sa.UniqueConstraint("subnet_id", "address_v6", name=op.f("uq_allocations_subnet_id_address_v6")),
    )
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.create_index("ix_allocations_container_id", ["container_id"], unique=False)
        batch_op.create_index("ix_allocations_namespace_pod", ["namespace", "pod"], unique=False)

    op.create_table(
        "free_ranges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subnet_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=True),
        sa.Column("first", sa.LargeBinary(length=16), nullable=False),
        sa.Column("last", sa.LargeBinary(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name=op.f("fk_free_ranges_pool_id_pools"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"], ["subnets.id"], name=op.f("fk_free_ranges_subnet_id_subnets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_free_ranges")),
    )
    with op.batch_alter_table("free_ranges", schema=None) as batch_op:
        batch_op.create_index("ix_free_ranges_lookup", ["subnet_id", "family", "first"], unique=False)
        batch_op.create_index("ix_free_ranges_pool", ["pool_id", "first"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("free_ranges", schema=None) as batch_op:
        batch_op.drop_index("ix_free_ranges_pool")
        batch_op.drop_index("ix_free_ranges_lookup")

    op.drop_table("free_ranges")
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.drop_index("ix_allocations_namespace_pod")
        batch_op.drop_index("ix_allocations_container_id")

    op.drop_table("allocations")
    op.drop_table("reservations")
    with op.batch_alter_table("released", schema=None) as batch_op:
        batch_op.drop_index("ix_released_order")

    op.drop_table("released")
    with op.batch_alter_table("pools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pools_subnet_id"))

    op.drop_table("pools")
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subnets_provider"))

    op.drop_table("subnets")
    with op.batch_alter_table("address_events", schema=None) as batch_op:
        batch_op.drop_index("ix_address_events_address")

    op.drop_table("address_events")
