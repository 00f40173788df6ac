"""Alembic environment: runs on the connection ``ipamd.store`` hands over.

The daemon (and ``ipamd db upgrade``) migrate over their own engine and lock (see
``ipamd.store.engine.upgrade``), so this file never creates an engine; there is no
``alembic.ini`` for the ``alembic`` command to run without one.
"""

from __future__ import annotations

from alembic import context

from ipamd.store.schema import metadata

config = context.config


def run_on(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("migrations run through ipamd (ipamd db upgrade), which hands alembic a connection")
run_on(connection)
