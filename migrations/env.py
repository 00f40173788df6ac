"""Alembic environment: runs on a connection handed over by ``ipamd.store.migrate``.

The daemon migrates over its own async engine, so this file never creates an engine of
its own when a connection is given; the offline/standalone path exists for `alembic` CLI use.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

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
if connection is not None:
    run_on(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or ""
    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    with create_engine(sync_url).connect() as sync_connection:
        run_on(sync_connection)
