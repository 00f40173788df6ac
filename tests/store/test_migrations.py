"""The migrations build exactly the schema the code describes, on both databases."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ipamd.store.database import open_database
from ipamd.store.engine import create_engine, head_revision
from ipamd.store.schema import metadata


def test_migrated_schema_matches_the_tables_in_code(database_url: str):
    async def scenario() -> list[object]:
        database = open_database(database_url)
        await database.upgrade()
        assert await database.revision() == head_revision()
        await database.dispose()
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == []


def test_upgrade_twice_is_harmless(database_url: str):
    async def scenario() -> None:
        database = open_database(database_url)
        try:
            await database.upgrade()
            await database.upgrade()
            assert await database.revision() == head_revision()
        finally:
            await database.dispose()

    asyncio.run(scenario())
