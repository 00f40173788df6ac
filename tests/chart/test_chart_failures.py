"""Values the chart must refuse, with a message that says what to change."""

from __future__ import annotations

from typing import Any

import pytest

# --------------------------------------------------------------------------- SQLite on many nodes


def test_sqlite_on_several_nodes_fails(render_error: Any) -> None:
    message = render_error({"cluster": {"nodeCount": 3}})
    assert "database.type=sqlite cannot serve cluster.nodeCount=3 nodes" in message
    # The way out is in the message.
    assert "database.type=postgresql" in message
    assert "database.existingSecret" in message
    assert "database.sqlite.force=true" in message


def test_sqlite_explicitly_chosen_on_several_nodes_fails(render_error: Any) -> None:
    message = render_error({"database": {"type": "sqlite"}, "cluster": {"nodeCount": 2}})
    assert "cluster.nodeCount=2" in message


def test_sqlite_force_overrides_the_node_count(render: Any) -> None:
    rendered = render({"cluster": {"nodeCount": 3}, "database": {"sqlite": {"force": True, "hostPath": "/data/ipamd"}}})
    assert rendered.volume("data")["hostPath"]["path"] == "/data/ipamd"
    # The NOTES warning is for unknown node counts; a forced install does not repeat it.
    assert "could not count" not in rendered.notes


def test_sqlite_single_node_renders_with_a_warning_in_notes(render: Any) -> None:
    # Offline, lookup sees no nodes: the chart cannot know, and says so.
    assert "could not count the cluster's nodes" in render().notes


def test_postgresql_on_many_nodes_renders(render: Any) -> None:
    rendered = render({"cluster": {"nodeCount": 500}, "database": {"type": "postgresql", "existingSecret": "db"}})
    assert "could not count" not in rendered.notes


# --------------------------------------------------------------------------- other template checks


def test_postgresql_without_a_secret_fails(render_error: Any) -> None:
    message = render_error({"database": {"type": "postgresql"}, "cluster": {"nodeCount": 4}})
    assert "database.type=postgresql needs database.existingSecret" in message


def test_service_monitor_needs_metrics(render_error: Any) -> None:
    message = render_error({"metrics": {"serviceMonitor": {"enabled": True}}})
    assert "metrics.serviceMonitor.enabled=true needs metrics.enabled=true" in message


def test_duplicate_subnet_names_fail(render_error: Any) -> None:
    subnet = {"name": "net1", "cidrBlock": "192.0.2.0/24"}
    message = render_error({"ipam": {"subnets": [subnet, {**subnet, "cidrBlock": "198.51.100.0/24"}]}})
    assert 'ipam.subnets: the name "net1" is declared twice' in message


def test_duplicate_pool_names_fail(render_error: Any) -> None:
    pool = {"name": "db", "subnet": "net1", "ips": ["192.0.2.50"]}
    message = render_error({"ipam": {"pools": [pool, pool]}})
    assert 'ipam.pools: the name "db" is declared twice' in message


# --------------------------------------------------------------------------- values.schema.json

SCHEMA_CASES = {
    "database type enum": (
        {"database": {"type": "mysql"}},
        "at '/database/type': value must be one of 'sqlite', 'postgresql'",
    ),
    "log format enum": ({"log": {"format": "xml"}}, "at '/log/format': value must be one of 'text', 'json'"),
    "log level enum": ({"log": {"level": "verbose"}}, "at '/log/level': value must be one of"),
    "subnet needs cidrBlock": (
        {"ipam": {"subnets": [{"name": "a"}]}},
        "at '/ipam/subnets/0': missing property 'cidrBlock'",
    ),
    "subnet needs name": (
        {"ipam": {"subnets": [{"cidrBlock": "192.0.2.0/24"}]}},
        "at '/ipam/subnets/0': missing property 'name'",
    ),
    "subnet field typo": (
        {"ipam": {"subnets": [{"name": "a", "cidrBlock": "192.0.2.0/24", "excludeIPs": []}]}},
        "at '/ipam/subnets/0': additional properties 'excludeIPs' not allowed",
    ),
    "subnet priority type": (
        {"ipam": {"subnets": [{"name": "a", "cidrBlock": "192.0.2.0/24", "priority": "high"}]}},
        "at '/ipam/subnets/0/priority': got string, want integer",
    ),
    "pool needs ips": (
        {"ipam": {"pools": [{"name": "p", "subnet": "a"}]}},
        "at '/ipam/pools/0': missing property 'ips'",
    ),
    "reservation needs address": (
        {"ipam": {"reservations": [{"subnet": "a"}]}},
        "at '/ipam/reservations/0': missing property 'address'",
    ),
    "reservation mac shape": (
        {"ipam": {"reservations": [{"subnet": "a", "address": "192.0.2.3", "mac": "zz"}]}},
        "at '/ipam/reservations/0/mac': 'zz' does not match pattern",
    ),
    "unknown top-level key": ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
    "relative CNI dir": (
        {"cni": {"binDir": "opt/cni/bin"}},
        "at '/cni/binDir': 'opt/cni/bin' does not match pattern '^/'",
    ),
    "kube-ovn alias is a boolean": (
        {"cni": {"alsoAsKubeOvn": "yes"}},
        "at '/cni/alsoAsKubeOvn': got string, want boolean",
    ),
    "listener port type": ({"listener": {"port": "9733"}}, "at '/listener/port': got string, want integer"),
    "privileged listener port": ({"listener": {"port": 80}}, "at '/listener/port': minimum: got 80, want 1"),
    "cluster name is a DNS label": (
        {"cluster": {"name": "Prod_East"}},
        "at '/cluster/name': 'Prod_East' does not match pattern",
    ),
    "node count positive": ({"cluster": {"nodeCount": 0}}, "at '/cluster/nodeCount': minimum: got 0, want 1"),
    "socket group numeric": ({"socket": {"group": "wheel"}}, "at '/socket/group'"),
    "history retention unit": ({"history": {"retention": "30 days"}}, "at '/history/retention'"),
    "history retention number": ({"history": {"retention": 30}}, "at '/history/retention'"),
    "metrics flag boolean": ({"metrics": {"enabled": "true"}}, "at '/metrics/enabled': got string, want boolean"),
}


@pytest.mark.parametrize("values,expected", list(SCHEMA_CASES.values()), ids=list(SCHEMA_CASES))
def test_schema_rejects_bad_values(render_error: Any, values: dict[str, Any], expected: str) -> None:
    message = render_error(values)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message


def test_schema_knows_the_fields_of_subnets_and_pools() -> None:
    """A field the daemon's config takes (a new placement rule, say) must not be refused by the chart."""
    import json
    from pathlib import Path

    from ipamd.core.pool import POOL_FIELDS
    from ipamd.core.subnet import SUBNET_FIELDS

    schema = json.loads((Path(__file__).resolve().parents[2] / "charts/ipamd/values.schema.json").read_text())
    ipam = schema["properties"]["ipam"]["properties"]
    assert set(ipam["subnets"]["items"]["properties"]) == SUBNET_FIELDS
    assert set(ipam["pools"]["items"]["properties"]) == POOL_FIELDS


def test_schema_validation_alone_agrees(chart: Any) -> None:
    """validate_schema (what `helm install` runs first) accepts the defaults and a full set."""
    chart.validate_schema({})
    chart.validate_schema(
        {
            "database": {"type": "postgresql", "existingSecret": "db", "secretKey": "url"},
            "ipam": {
                "subnets": [
                    {
                        "name": "a",
                        "cidrBlock": "192.0.2.0/24",
                        "routes": [{"dst": "198.51.100.0/24"}],
                        "dns": {"nameservers": ["192.0.2.53"]},
                    }
                ],
                "pools": [{"name": "p", "subnet": "a", "ips": ["192.0.2.50..192.0.2.59"]}],
                "reservations": [{"subnet": "a", "address": "192.0.2.7", "mac": "02:00:00:00:00:07"}],
            },
            "socket": {"group": 1234},
        }
    )
