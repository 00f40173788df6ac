"""Allocation requests after parsing, whatever door they came through (CNI, REST, Kubernetes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ipamd.core import identity
from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.core.subnet import Route
from ipamd.errors import InvalidInput, StalePod


@dataclass(frozen=True)
class AddRequest:
    """An allocation request after parsing, whatever door it came through."""

    owner: Owner
    network: NetworkRequest
    container_id: str | None = None
    pod_uid: str | None = None
    netns: str | None = None
    static_ips: tuple[str, ...] = ()
    mac: str | None = None
    subnet_name: str | None = None
    pool_name: str | None = None
    # Kube-OVN ip_pool given as a list of addresses: each entry one address per family.
    pool_entries: tuple[tuple[str, ...], ...] = ()
    ordinal: int | None = None
    hold: str | None = None
    node: str | None = None
    # "cni" for attachments made by a CNI ADD: only those are a CNI GC's to collect.
    origin: str = "api"
    field_prefix: str = "ips"
    # Kube-OVN ``ip_family`` (4 or 6): one family of a dual-stack subnet; ``family_field``
    # names where it was asked, for errors.
    family: int | None = None
    family_field: str = "ip_family"
    # Routes the pod asks for (Kube-OVN ``routes`` annotation), added to the result.
    routes: tuple[Route, ...] = ()
    # Kubernetes mode: pod_uid is authoritative. An allocation held for another pod UID is
    # reused only when that UID is ``replaces_uid``, the one the API server confirmed gone.
    check_uid: bool = False
    replaces_uid: str | None = None


class HeldByAnotherPod(StalePod):
    """A ``check_uid`` ADD for an attachment held for another pod UID (``held_uid``).

    Refused as stale unless the caller confirms with the API server that the request's pod
    replaced the holder and asks again with ``replaces_uid=held_uid``.
    """

    def __init__(self, message: str, *, held_uid: str) -> None:
        super().__init__(message)
        self.held_uid = held_uid



def owner_from(raw: object, *, network_key: str, field: str = "owner") -> Owner:
    """Returns the owner of a REST allocation request, its names checked as a CNI ADD's are
    (ipamd.core.identity): namespace optional, pod required, interface eth0 by default."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected an object {namespace, pod, interface}", field=field)
    unknown = sorted(set(raw) - {"namespace", "pod", "interface"})
    if unknown:
        raise InvalidInput("unknown field", field=f"{field}.{unknown[0]}")
    namespace = raw.get("namespace")
    interface = raw.get("interface")
    return Owner(
        network_key=network_key,
        namespace="" if namespace in (None, "") else identity.namespace(namespace, field=f"{field}.namespace"),
        pod=identity.pod(raw.get("pod"), field=f"{field}.pod"),
        interface="eth0" if interface is None else identity.interface(interface, field=f"{field}.interface"),
    )


def with_network(request: AddRequest, network: NetworkRequest) -> AddRequest:
    return replace(request, network=network, owner=replace(request.owner, network_key=network.network_key))
