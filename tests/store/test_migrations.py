"""The migrations build exactly the schema the code describes, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ipamd.store.database import open_database
from ipamd.store.engine import create_engine, head_revision
from ipamd.store.schema import metadata

T = TypeVar("T")


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
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": False}), metadata
                    )
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


def _at_revision(database_url: str, revision: str, body: Callable[[sa.Connection], T], *, downgrade: bool = False) -> T:
    """Migrates the database to ``revision`` (up, or down), then returns ``body`` run on it, in one transaction."""
    from alembic import command

    from ipamd.store.engine import alembic_config

    async def scenario() -> T:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:

                def run(sync: sa.Connection) -> T:
                    config = alembic_config()
                    config.attributes["connection"] = sync
                    (command.downgrade if downgrade else command.upgrade)(config, revision)
                    return body(sync)

                return await conn.run_sync(run)
        finally:
            await engine.dispose()

    return asyncio.run(scenario())


def _rows(conn: sa.Connection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.exec_driver_sql(sql).all()]


def _insert_pre_cluster_rows(conn: sa.Connection) -> None:
    """Rows as a database before revision 0006 holds them: one subnet, two allocations
    (id 3 released before, so the next id is 4), their audit rows."""
    conn.exec_driver_sql("INSERT INTO subnets (id, name, spec) VALUES (1, 'net1', '{}')")
    for row_id, pod, address in ((1, "db-0", 11), (2, "db-1", 12), (3, "gone", 13)):
        conn.execute(
            sa.text(
                "INSERT INTO allocations (id, subnet_id, network_key, namespace, pod, interface, address_v4, origin) "
                "VALUES (:id, 1, 'net1', 'prod', :pod, 'net1', :address, 'cni')"
            ),
            {"id": row_id, "pod": pod, "address": (0xC0000200 + address).to_bytes(16, "big")},
        )
        conn.execute(
            sa.text(
                "INSERT INTO address_events (action, subnet, family, address, allocation_id, network_key, namespace, pod, interface) "
                "VALUES ('allocate', 'net1', 4, :address, :id, 'net1', 'prod', :pod, 'net1')"
            ),
            {"id": row_id, "pod": pod, "address": (0xC0000200 + address).to_bytes(16, "big")},
        )
    conn.exec_driver_sql("DELETE FROM allocations WHERE id = 3")
    if conn.dialect.name == "postgresql":
        # Where the sequence of a real database would stand after those three inserts.
        conn.exec_driver_sql("SELECT setval('allocations_id_seq', 3)")


def _insert_allocation(conn: sa.Connection, *, cluster: str | None, pod: str, address: int) -> int:
    columns = "subnet_id, network_key, namespace, pod, interface, address_v4" + (", cluster" if cluster else "")
    values = "1, 'net1', 'prod', :pod, 'net1', :address" + (", :cluster" if cluster else "")
    return int(
        conn.execute(
            sa.text(f"INSERT INTO allocations ({columns}) VALUES ({values}) RETURNING id"),
            {"pod": pod, "address": (0xC0000200 + address).to_bytes(16, "big"), "cluster": cluster},
        ).scalar_one()
    )


def _insert_refused(conn: sa.Connection, **allocation: object) -> bool:
    """Returns whether the database refuses the allocation (a unique key); changes nothing."""
    savepoint = conn.begin_nested()
    try:
        _insert_allocation(conn, **allocation)  # type: ignore[arg-type]
    except sa.exc.IntegrityError:
        return True
    finally:
        if savepoint.is_active:
            savepoint.rollback()
    return False


def test_0006_puts_existing_rows_in_cluster_default_and_keys_attachments_by_cluster(database_url: str):
    """0006 up: rows from before belong to cluster ``default`` (and the registry says so),
    the same attachment may now exist once per cluster, an address still only once, and
    released ids are still never given again (SQLite rebuilds the table)."""
    _at_revision(database_url, "0005", _insert_pre_cluster_rows)

    def after_upgrade(conn: sa.Connection) -> dict[str, object]:
        found: dict[str, object] = {
            "allocations": _rows(conn, "SELECT id, cluster, pod FROM allocations ORDER BY id"),
            "events": _rows(conn, "SELECT allocation_id, cluster FROM address_events ORDER BY id"),
            "registry": _rows(conn, "SELECT name FROM clusters"),
        }
        found["west db-0"] = _insert_allocation(conn, cluster="west", pod="db-0", address=20)
        found["same attachment twice in one cluster refused"] = _insert_refused(
            conn, cluster="default", pod="db-0", address=21
        )
        found["held address in another cluster refused"] = _insert_refused(
            conn, cluster="east", pod="other", address=11
        )
        return found

    found = _at_revision(database_url, "0006", after_upgrade)
    assert found == {
        "allocations": [(1, "default", "db-0"), (2, "default", "db-1")],
        "events": [(1, "default"), (2, "default"), (3, "default")],
        "registry": [("default",)],
        "west db-0": 4,
        "same attachment twice in one cluster refused": True,
        "held address in another cluster refused": True,
    }


def test_0006_down_restores_the_old_key_and_refuses_while_two_clusters_hold_allocations(database_url: str):
    _at_revision(database_url, "0005", _insert_pre_cluster_rows)
    west = _at_revision(
        database_url, "0006", lambda conn: _insert_allocation(conn, cluster="west", pod="db-0", address=20)
    )

    with pytest.raises(RuntimeError, match="holds allocations of clusters default, west"):
        _at_revision(database_url, "0005", lambda conn: None, downgrade=True)
    assert _at_revision(database_url, "0006", lambda conn: _rows(conn, "SELECT count(*) FROM allocations")) == [(3,)]

    def release_west(conn: sa.Connection) -> None:
        conn.execute(sa.text("DELETE FROM allocations WHERE id = :id"), {"id": west})

    _at_revision(database_url, "0006", release_west)

    def after_downgrade(conn: sa.Connection) -> dict[str, object]:
        found: dict[str, object] = {
            "allocations": _rows(conn, "SELECT id, pod FROM allocations ORDER BY id"),
            "columns": sorted(column["name"] for column in sa.inspect(conn).get_columns("allocations")),
            "tables": sorted(sa.inspect(conn).get_table_names()),
        }
        found["same attachment twice refused"] = _insert_refused(conn, cluster=None, pod="db-0", address=21)
        found["next id"] = _insert_allocation(conn, cluster=None, pod="db-9", address=30)
        return found

    found = _at_revision(database_url, "0005", after_downgrade, downgrade=True)
    assert found["allocations"] == [(1, "db-0"), (2, "db-1")]
    assert "cluster" not in found["columns"] and "clusters" not in found["tables"]
    assert found["same attachment twice refused"] is True
    # Id 4 was west's, released: never given again (PostgreSQL's refused insert above took 5).
    assert found["next id"] == (5 if database_url.startswith("sqlite") else 6)
    # And up again, to the schema the code describes.
    assert _at_revision(
        database_url, "0006", lambda conn: _rows(conn, "SELECT cluster FROM allocations ORDER BY id")
    ) == [
        ("default",),
        ("default",),
        ("default",),
    ]


def test_write_checks_migrates_up_and_down_keeping_rows(database_url: str):
    """0007 adds write_checks (ipamd.store.faults) beside rows made before it, and drops it
    again without touching them."""

    def tables(conn: sa.Connection) -> set[str]:
        return set(sa.inspect(conn).get_table_names())

    def check_writes(conn: sa.Connection) -> set[str]:
        conn.exec_driver_sql("INSERT INTO write_checks (node) VALUES ('n1')")
        return tables(conn)

    _at_revision(
        database_url,
        "0006",
        lambda conn: conn.exec_driver_sql("INSERT INTO subnets (name, spec) VALUES ('before', '{}')"),
    )
    assert "write_checks" in _at_revision(database_url, "0007", check_writes)
    down = _at_revision(
        database_url, "0006", lambda conn: (tables(conn), _rows(conn, "SELECT name FROM subnets")), downgrade=True
    )
    assert "write_checks" not in down[0] and down[1] == [("before",)]
    assert "write_checks" in _at_revision(database_url, "head", tables)


def test_one_call_functions_come_and_go_with_their_revision(database_url: str):
    """0009: PostgreSQL gains the allocation and release functions, and loses them on the
    way down; rows written through them stay, and the daemon allocates again once back up."""
    from alembic import command

    from ipamd.core.allocation import Owner
    from ipamd.core.nad import NetworkRequest
    from ipamd.service import AddRequest, Ipam
    from ipamd.store.engine import alembic_config

    def add(pod: str) -> AddRequest:
        return AddRequest(
            owner=Owner("fn", "lab", pod, "net1"), network=NetworkRequest("fn", None), container_id=f"c-{pod}"
        )

    def functions(sync: sa.Connection) -> list[str]:
        if sync.dialect.name != "postgresql":
            return []
        return list(
            sync.exec_driver_sql("SELECT proname FROM pg_proc WHERE proname LIKE 'ipamd%' ORDER BY proname").scalars()
        )

    def migrate(sync: sa.Connection, direction: str, target: str) -> tuple[list[str], list[str]]:
        config = alembic_config()
        config.attributes["connection"] = sync
        getattr(command, direction)(config, target)
        return functions(sync), list(sync.exec_driver_sql("SELECT pod FROM allocations ORDER BY id").scalars())

    async def run(direction: str, target: str) -> tuple[list[str], list[str]]:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(migrate, direction, target)
        finally:
            await engine.dispose()

    async def allocate(pod: str) -> list[str]:
        ipam = Ipam(open_database(database_url))
        try:
            await ipam.allocate(add(pod))
            return [allocation.owner.pod for allocation in await ipam.list_allocations()]
        finally:
            await ipam.close()

    async def scenario() -> None:
        database = open_database(database_url)
        await database.upgrade()
        ipam = Ipam(database)
        await ipam.create_subnet({"name": "fn", "cidrBlock": "192.0.2.0/24", "provider": "fn"})
        await ipam.close()
        assert await allocate("before") == ["before"]
        expected = [
            "ipamd_allocate",
            "ipamd_next_address",
            "ipamd_pools_of",
            "ipamd_release",
            "ipamd_take_dynamic",
            "ipamd_take_in_subnet",
        ]
        functions_at_head = expected if "postgresql" in database_url else []
        assert await run("upgrade", "head") == (functions_at_head, ["before"])
        assert await run("downgrade", "0008") == ([], ["before"])
        assert await run("upgrade", "head") == (functions_at_head, ["before"])
        assert await allocate("after") == ["before", "after"]

    asyncio.run(scenario())


def test_0010_pools_from_before_have_no_rules_and_going_back_keeps_them(database_url: str):
    """0010: pools made before it have no rules (null: they serve whoever names them);
    going back drops only the column."""

    def before(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO subnets (id, name, spec) VALUES (1, 'net1', '{}')")
        conn.exec_driver_sql("INSERT INTO pools (id, name, subnet_id, ips) VALUES (1, 'db', 1, '[\"192.0.2.5\"]')")

    _at_revision(database_url, "0009", before)
    assert _at_revision(database_url, "0010", lambda conn: _rows(conn, "SELECT name, rules FROM pools")) == [
        ("db", None)
    ]
    _at_revision(
        database_url, "0010", lambda conn: conn.exec_driver_sql('UPDATE pools SET rules = \'{"namespaces": ["db"]}\'')
    )

    def after_downgrade(conn: sa.Connection) -> tuple[list[str], list[tuple[object, ...]]]:
        return [column["name"] for column in sa.inspect(conn).get_columns("pools")], _rows(
            conn, "SELECT name FROM pools"
        )

    columns, names = _at_revision(database_url, "0009", after_downgrade, downgrade=True)
    assert "rules" not in columns and names == [("db",)]


@pytest.mark.parametrize(
    "revision, before, rule",
    [
        # 0011: the walk stops at any placement rule; at 0010 it allocated there.
        ("0011", "0010", {"namespaces": ["lab"]}),
        # 0012: also at a subnet whose only rule is clusters; at 0011 any cluster allocated there.
        ("0012", "0011", {"clusters": ["east"]}),
    ],
)
def test_the_walk_stops_at_a_placement_rule_and_going_back_restores_the_walk_before(
    database_url: str, revision: str, before: str, rule: dict[str, list[str]]
):
    """PostgreSQL's ipamd_allocate answers 'placement' (writing nothing) when the provider's
    walk reaches a subnet with the rule, for a pod of namespace lab in cluster west; at the
    revision before, it allocated there. SQLite has no function: its rows come through both ways."""
    from ipamd.service import Ipam

    async def create() -> None:
        database = open_database(database_url)
        await database.upgrade()
        ipam = Ipam(database)
        try:
            await ipam.create_subnet({"name": "ruled", "cidrBlock": "192.0.2.0/24", "provider": "walk", **rule})
        finally:
            await ipam.close()

    def add(pod: str) -> Callable[[sa.Connection], tuple[object, ...]]:
        def run(conn: sa.Connection) -> tuple[object, ...]:
            subnets = _rows(conn, "SELECT name FROM subnets")
            if conn.dialect.name != "postgresql":
                return ("no function", subnets)
            outcome = conn.execute(
                sa.text(
                    "SELECT outcome FROM ipamd_allocate(NULL, NULL, 'west', 'walk', 'lab', :pod, 'net1', NULL, NULL, NULL, NULL, "
                    "'api', NULL, false, NULL, now() + interval '1 minute')"
                ),
                {"pod": pod},
            ).scalar_one()
            return (outcome, subnets, _rows(conn, "SELECT pod FROM allocations ORDER BY id"))

        return run

    asyncio.run(create())
    postgresql = "postgresql" in database_url
    sqlite = ("no function", [("ruled",)])
    assert _at_revision(database_url, revision, add("first")) == (
        ("placement", [("ruled",)], []) if postgresql else sqlite
    )
    assert _at_revision(database_url, before, add("second"), downgrade=True) == (
        ("created", [("ruled",)], [("second",)]) if postgresql else sqlite
    )
    assert _at_revision(database_url, revision, add("third")) == (
        ("placement", [("ruled",)], [("second",)]) if postgresql else sqlite
    )
