"""The cluster is part of every attachment's identity (``--cluster-name``).

- ``allocations.cluster``: rows made before this revision belong to cluster ``default``
  (the flag's default), and the attachment key becomes (cluster, network, namespace, pod,
  interface), so two clusters sharing a database each get their own address for a pod of
  the same name. The address keys stay as they were: shared by every cluster.
- ``address_events.cluster``: the history says which cluster held an address.
- ``clusters``: the names that have used the database; ``default`` when it holds
  allocations already.

Downgrading is refused while allocations of more than one cluster exist: the older key
would merge their attachments.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_KEY = ["network_key", "namespace", "pod", "interface"]
NEW_KEY = ["cluster", *OLD_KEY]


def _allocations_batch(sqlite: bool):  # type: ignore[no-untyped-def]
    # SQLite recreates the table to change a constraint: keep AUTOINCREMENT (see 0004).
    return op.batch_alter_table("allocations", **({"table_kwargs": {"sqlite_autoincrement": True}} if sqlite else {}))


def _keep_sqlite_sequence(sqlite: bool) -> int | None:
    if not sqlite:
        return None
    return op.get_bind().exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'allocations'").scalar()


def _restore_sqlite_sequence(seq: int | None) -> None:
    # The recreated table's counter starts at its highest row: ids released above it before
    # the migration would be given out again, and a stale DELETE by id would then hit them.
    if seq is not None:
        op.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'allocations'").bindparams(seq=seq)
        )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    seq = _keep_sqlite_sequence(sqlite)
    with _allocations_batch(sqlite) as batch:
        batch.add_column(sa.Column("cluster", sa.String(63), nullable=False, server_default="default"))
        batch.drop_constraint(f"uq_allocations_{'_'.join(OLD_KEY)}", type_="unique")
        batch.create_unique_constraint(f"uq_allocations_{'_'.join(NEW_KEY)}", NEW_KEY)
    _restore_sqlite_sequence(seq)
    with op.batch_alter_table("address_events") as batch:
        batch.add_column(sa.Column("cluster", sa.String(63), nullable=True))
    op.execute("UPDATE address_events SET cluster = 'default'")
    op.create_table(
        "clusters",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("name", name="pk_clusters"),
    )
    op.execute("INSERT INTO clusters (name) SELECT 'default' WHERE EXISTS (SELECT 1 FROM allocations)")


def downgrade() -> None:
    bind = op.get_bind()
    names = [row[0] for row in bind.exec_driver_sql("SELECT DISTINCT cluster FROM allocations ORDER BY cluster")]
    if len(names) > 1:
        raise RuntimeError(
            f"cannot downgrade below revision 0006: the database holds allocations of clusters {', '.join(names)}, "
            "and the older schema cannot tell their attachments apart; release one cluster's allocations first"
        )
    sqlite = bind.dialect.name == "sqlite"
    op.drop_table("clusters")
    with op.batch_alter_table("address_events") as batch:
        batch.drop_column("cluster")
    seq = _keep_sqlite_sequence(sqlite)
    with _allocations_batch(sqlite) as batch:
        batch.drop_constraint(f"uq_allocations_{'_'.join(NEW_KEY)}", type_="unique")
        batch.create_unique_constraint(f"uq_allocations_{'_'.join(OLD_KEY)}", OLD_KEY)
        batch.drop_column("cluster")
    _restore_sqlite_sequence(seq)
