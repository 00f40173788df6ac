"""Manifest translation for `ipamctl apply`, without a daemon."""

from __future__ import annotations

import pytest
import yaml

from ipamd.core.converge import Kind
from ipamd.errors import InvalidInput
from ipamd.manifests import Manifest, ManifestError, parse_config_text, parse_documents
from tests.ops.support import FIXTURES


def test_kube_ovn_seed_subnet_maps_field_by_field() -> None:
    path = FIXTURES / "kubeovn-macvlan-subnet.yaml"
    [manifest] = parse_documents(path.read_text(), source=str(path))
    assert manifest == Manifest(
        kind="subnet",
        name="macvlan",
        body={
            "name": "macvlan",
            "cidrBlock": "198.18.0.0/16",
            "gateway": "198.18.0.1",
            "excludeIps": ["198.18.0.1..198.18.0.10"],
            "provider": "macvlan.default",
        },
        where=f"{path} document 1",
        warnings=("kubeovn.io/v1 Subnet macvlan: spec.protocol ignored: ipamd derives the families from cidrBlock",),
    )


def test_kubectl_list_output_with_status_is_accepted() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: kubeovn.io/v1
  kind: IPPool
  metadata: {name: web, uid: 0d9c, resourceVersion: "42"}
  spec: {subnet: lab, ips: [198.51.100.20], namespaces: [web]}
  status: {availableIPs: "1"}
"""
    [manifest] = parse_documents(text, source="list.yaml")
    # Kube-OVN's binding of the pool to namespaces carries over.
    assert (manifest.ref, manifest.body) == (
        "pool/web",
        {"name": "web", "subnet": "lab", "ips": ["198.51.100.20"], "namespaces": ["web"]},
    )
    assert manifest.warnings == ()


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param(
            "apiVersion: kubeovn.io/v1\nkind: Subnet\nspec: {cidrBlock: 192.0.2.0/24}\n",
            "x document 1: metadata.name is required",
            id="no-name",
        ),
        pytest.param(
            "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {name: a}\nspec: {}\n",
            "x document 1: spec.cidrBlock is required",
            id="no-cidr",
        ),
        pytest.param(
            "- a\n", "x document 1: expected a mapping with apiVersion, kind, metadata and spec", id="not-a-mapping"
        ),
        pytest.param(
            "apiVersion: ipamd.io/v1\nkind: Pool\nmetadata: {name: p}\n",
            "x document 1: spec is required and must be a mapping",
            id="no-spec",
        ),
    ],
)
def test_unusable_documents_are_named(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as raised:
        parse_documents(text, source="x")
    assert str(raised.value) == message


# ---------------------------------------------------------------------------- the --config file

SUBNET = {"name": "lab", "cidrBlock": "198.51.100.0/24", "provider": "lab.default"}
POOL = {"name": "web", "subnet": "lab", "ips": [" 198.51.100.20..198.51.100.29 "]}
RESERVATION = {"subnet": "lab", "address": "2001:db8:0::7", "mac": "02-00-00-00-00-07"}


def test_the_config_file_declares_objects_as_the_daemon_shows_them() -> None:
    state = parse_config_text(
        yaml.safe_dump(
            {
                "subnets": [{**SUBNET, "force": False}, {"name": "v6", "cidrBlock": "2001:db8::/64", "force": True}],
                "pools": [POOL],
                "reservations": [RESERVATION],
                "history": {"retention": "7d"},
            }
        ),
        source="ipamd.yaml",
    )
    assert [(d.kind, d.key, d.force) for d in state.objects] == [
        (Kind.SUBNET, "lab", False),
        (Kind.SUBNET, "v6", True),
        (Kind.POOL, "web", False),
        (Kind.RESERVATION, "lab/2001:db8::7", False),
    ]
    assert state.subnets["lab"].spec["gateway"] == "198.51.100.1"
    assert state.pools["web"].spec["ips"] == ["198.51.100.20..198.51.100.29"]
    assert state.reservations["lab/2001:db8::7"].spec["mac"] == "02:00:00:00:00:07"
    assert (state.history_retention, state.cluster_name) == (7 * 86400, None)


@pytest.mark.parametrize(
    "config, message",
    [
        ("[]", "f.yaml: expected a mapping with subnets, pools and reservations"),
        (
            "subnet: []",
            "f.yaml: unknown section 'subnet'; known sections are clusterName, history, pools, reservations, subnets",
        ),
        ("subnets: []\npools: {name: web}", "f.yaml: pools: expected a list"),
        ({"subnets": [SUBNET, SUBNET]}, "f.yaml: subnets[1]: subnet lab is declared twice"),
        ({"pools": [POOL, POOL]}, "f.yaml: pools[1]: pool web is declared twice"),
        (
            {"reservations": [RESERVATION, {**RESERVATION, "address": "2001:db8::7"}]},
            "f.yaml: reservations[1]: 2001:db8::7 in subnet lab is reserved twice",
        ),
        ({"subnets": [{**SUBNET, "force": "yes"}]}, "f.yaml: subnets[0]: force: expected true or false, got 'yes'"),
        (
            {"pools": [{**POOL, "ips": []}]},
            "f.yaml: pools[0]: ips: expected a non-empty list of addresses, a..b ranges or CIDRs",
        ),
        ({"reservations": [{**RESERVATION, "note": 7}]}, "f.yaml: reservations[0]: note: expected a string"),
        (
            "subnets: [\n",
            "f.yaml: not valid YAML at line 2, column 1: expected the node content, but found '<stream end>'",
        ),
    ],
)
def test_a_bad_config_file_is_refused_naming_the_entry(config: object, message: str) -> None:
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    with pytest.raises(InvalidInput) as refused:
        parse_config_text(text, source="f.yaml")
    # The field is the file itself, and leads the message.
    assert (refused.value.message, refused.value.field) == (f"config: {message}", "config")
