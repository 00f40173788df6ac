"""Allocation and reservation ids are never reused; released and reserved addresses are
unique per family.

- SQLite hands a deleted row's id to the next insert unless the table is AUTOINCREMENT, so
  a stale ``DELETE /v1/allocations/{id}`` could release another pod's address. The two
  tables are rebuilt with AUTOINCREMENT (batch mode copies every row), and the allocation
  counter starts above every id the audit history has seen, released ones included.
  PostgreSQL sequences never go back: nothing to do there.
- IPv4 192.0.2.5 and IPv6 ::192.0.2.5 are the same 16-byte integer: the unique keys of
  ``released`` and ``reservations`` now include the family, as every lookup does.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _rebuild(sqlite: bool, table: str, old_key: list[str], new_key: list[str] | None, autoincrement: bool) -> None:
    # On SQLite batch mode recreates the table (the only way to add AUTOINCREMENT); on
    # PostgreSQL it emits plain ALTER TABLE statements.
    options = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": autoincrement}} if sqlite else {}
    with op.batch_alter_table(table, **options) as batch:
        if new_key is not None:
            batch.drop_constraint(f"uq_{table}_{'_'.join(old_key)}", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_{'_'.join(new_key)}", new_key)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _rebuild(sqlite, "released", ["subnet_id", "address"], ["subnet_id", "family", "address"], autoincrement=False)
    _rebuild(sqlite, "reservations", ["subnet_id", "address"], ["subnet_id", "family", "address"], autoincrement=True)
    if sqlite:
        _rebuild(sqlite, "allocations", [], None, autoincrement=True)
        # Ids released before this revision may be above today's highest row.
        op.execute("DELETE FROM sqlite_sequence WHERE name = 'allocations'")
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('allocations', max("
            "coalesce((SELECT max(id) FROM allocations), 0), "
            "coalesce((SELECT max(allocation_id) FROM address_events), 0)))"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _rebuild(sqlite, "reservations", ["subnet_id", "family", "address"], ["subnet_id", "address"], autoincrement=False)
    _rebuild(sqlite, "released", ["subnet_id", "family", "address"], ["subnet_id", "address"], autoincrement=False)
    if sqlite:
        _rebuild(sqlite, "allocations", [], None, autoincrement=False)
