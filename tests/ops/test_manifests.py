"""Manifest translation for `ipamctl apply`, without a daemon."""

from __future__ import annotations

import pytest

from ipamd.manifests import Manifest, ManifestError, parse_documents
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
