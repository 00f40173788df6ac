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


def test_origin_of_existing_allocations_follows_their_container_id(tmp_path):
    """0003: rows made by a CNI ADD (they carry a container id) become origin "cni", so a
    CNI GC after the upgrade still collects them; REST rows become "api"."""
    import sqlalchemy as sa
    from alembic import command

    from ipamd.store.engine import alembic_config

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.exec_driver_sql("INSERT INTO subnets (id, name, spec) VALUES (1, 'net1', '{}')")
        for row_id, container in ((1, "'c1'"), (2, "NULL")):
            conn.exec_driver_sql(
                "INSERT INTO allocations (id, subnet_id, network_key, namespace, pod, interface, container_id) "
                f"VALUES ({row_id}, 1, 'net1', 'default', 'p{row_id}', 'net1', {container})"
            )
        command.upgrade(config, "0003")
        origins = dict(conn.exec_driver_sql("SELECT id, origin FROM allocations ORDER BY id").all())
    engine.dispose()
    assert origins == {1: "cni", 2: "api"}
