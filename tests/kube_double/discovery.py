"""Discovery documents: what ``/api``, ``/apis`` and ``/version`` say.

kubectl maps a resource name (``pods``, ``po``, ``sts``) to a URL by reading
these, so they advertise exactly the resources the double serves.  Only the
legacy (unaggregated) discovery format is served; clients that ask for
aggregated discovery (``as=APIGroupDiscoveryList``) fall back to it when the
response does not carry that content type, as they do against older
apiservers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .resources import ResourceType, group_versions

JSON = dict[str, Any]


def version_info(major: int, minor: int) -> JSON:
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": f"v{major}.{minor}.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "go1.22.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def core_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_entry(group: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def group_names(served: Sequence[ResourceType]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for group, version in group_versions(served):
        if group:
            groups.setdefault(group, []).append(version)
    return groups


def group_list(served: Sequence[ResourceType]) -> JSON:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g, vs) for g, vs in group_names(served).items()],
    }


def api_group(group: str, served: Sequence[ResourceType]) -> JSON | None:
    versions = group_names(served).get(group)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def resource_list(group: str, version: str, served: Sequence[ResourceType]) -> JSON | None:
    resources = group_versions(served).get((group, version))
    if resources is None:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for resource in resources for entry in resource.discovery_entries()],
    }
