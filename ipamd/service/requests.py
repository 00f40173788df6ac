"""Allocation requests after parsing, whatever door they came through (CNI, REST, Kubernetes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ipamd.core import identity
from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.core.subnet import Route
from ipamd.errors import InvalidInput, IpamError, StalePod


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
    # The Kubernetes pod behind the request when the owner is not that pod (a VM's
    # virt-launcher pod): results and Events go to it. None: the owner's pod.
    pod_name: str | None = None
    # Labels the placement rules match (ipamd.core.placement); None: not known. The node
    # is ``node`` (else the daemon's own), the namespace the owner's.
    pod_labels: Mapping[str, str] | None = None
    namespace_labels: Mapping[str, str] | None = None
    node_labels: Mapping[str, str] | None = None
    # Label kinds ("namespace", ...) left None here that the caller can still read: a rule
    # needing one raises LabelsNeeded instead of refusing, and the caller asks again.
    labels_on_demand: frozenset[str] = field(default_factory=frozenset)

    @property
    def kube_pod(self) -> str:
        """The name of the pod the request came from."""
        return self.pod_name or self.owner.pod


class HeldByAnotherPod(StalePod):
    """A ``check_uid`` ADD for an attachment held for another pod UID (``held_uid``).

    Refused as stale unless the caller confirms with the API server that the request's pod
    replaced the holder and asks again with ``replaces_uid=held_uid``.
    """

    def __init__(self, message: str, *, held_uid: str) -> None:
        super().__init__(message)
        self.held_uid = held_uid


class LabelsNeeded(IpamError):
    """A placement rule needs labels the request left to be read on demand (``kinds``);
    the caller reads them and asks again. Never answered to a client."""

    def __init__(self, kinds: frozenset[str]) -> None:
        super().__init__(f"placement rules need the labels of the {', '.join(sorted(kinds))}")
        self.kinds = kinds


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
