"""The store's named commands on each database: SQLAlchemy errors leave them as ``ipamd.errors``
(a unique name taken: NameTaken), and a migration says whether waiting may help."""

from __future__ import annotations

import pytest

from ipamd.errors import AlreadyExists, NameTaken, Unavailable
from ipamd.store import catalog, clusters
from ipamd.store.database import Connection, open_database, try_upgrade
from ipamd.store.engine import normalize_url
from tests.support.postgres import free_port


async def test_a_taken_name_leaves_the_insert_as_name_taken(database_url: str) -> None:
    database = open_database(database_url)
    await database.upgrade()
    try:

        def subnet(conn: Connection) -> int:
            return catalog.insert_subnet(conn, name="net-a", provider=None, priority=0, spec={}, origin="api")

        subnet_id = await database.write(subnet)
        with pytest.raises(NameTaken, match="^subnet net-a already exists$") as taken:
            await database.write(subnet)
        assert isinstance(taken.value, AlreadyExists) and taken.value.http_status == 409

        def pool(conn: Connection) -> int:
            return catalog.insert_pool(conn, name="pool-a", subnet_id=subnet_id, ips=[], rules=None, origin="api")

        await database.write(pool)
        with pytest.raises(NameTaken, match="^pool pool-a already exists$"):
            await database.write(pool)
        await database.write(lambda conn: clusters.register(conn, "east"))
        with pytest.raises(NameTaken, match="cluster east"):
            await database.write(lambda conn: clusters.register(conn, "east"))
        # The refused inserts left nothing behind, and the database takes writes after them.
        await database.write(lambda conn: clusters.register(conn, "west"))
        assert [row.name for row in await database.read(catalog.all_subnets)] == ["net-a"]
        assert await database.read(catalog.pool_ids) == [
            await database.read(lambda conn: catalog.pool_by_name(conn, "pool-a").id)
        ]
        assert await database.read(clusters.cluster_names) == ["east", "west"]
    finally:
        await database.dispose()


async def test_a_migration_waits_for_a_database_not_up_yet() -> None:
    url = normalize_url(f"postgresql://ipamd:secret@127.0.0.1:{free_port()}/ipamd")
    database = open_database(url)
    try:
        reason = await try_upgrade(database, url)
    finally:
        await database.dispose()
    assert reason is not None and reason.startswith("database not reachable yet (") and "secret" not in reason


async def test_a_migration_refused_by_the_database_is_not_waited_for(postgres_url: str) -> None:
    url = normalize_url(postgres_url).set(database="no_such_database")
    database = open_database(url)
    try:
        with pytest.raises(Unavailable, match="refused the connection") as refused:
            await try_upgrade(database, url)
    finally:
        await database.dispose()
    assert "no_such_database" in refused.value.message


async def test_a_migration_done_says_nothing(database_url: str) -> None:
    database = open_database(database_url)
    try:
        assert await try_upgrade(database, normalize_url(database_url)) is None
        assert await try_upgrade(database, normalize_url(database_url)) is None
    finally:
        await database.dispose()
