"""Addresses that running pods already carry from another IPAM, read from its recorded
state, as CNI ADDs that make ipamd hold exactly those addresses for those pods. No I/O:
callers hand in the objects and files they read.

- Kube-OVN: the result annotations ``<provider>.kubernetes.io/allocated``, ``ip_address``
  and ``mac_address`` of pods, and ``IP`` objects (``kubeovn.io/v1``, named
  ``<pod>.<namespace>[.<provider>]``, whose ``spec.containerID`` names the sandbox).
- Whereabouts: ``IPPool`` objects (``spec.range``, ``spec.allocations`` keyed by the offset
  from the range's first address, each with ``id`` (container), ``podref``, ``ifname``),
  matched to the NADs whose ranges they serve, and ``OverlappingRangeIPReservation``
  objects, which are checked against those allocations.
- host-local: its data directory, one directory per network name and one file per address
  holding the container id and (since CNI plugins 0.8) the interface name.

Each live address becomes one :class:`Adoption`; what cannot be adopted is a
:class:`Skipped` with its reason. Interfaces come from Multus' ``network-status``
annotation, else from the position in ``k8s.v1.cni.cncf.io/networks`` (``net1``, ``net2``...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import netaddr

from ipamd.core.release import TERMINAL_PHASES

NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
KUBE_OVN_SUFFIX = ".kubernetes.io/"
# Kube-OVN's own primary network: not an attachment ipamd serves.
KUBE_OVN_PRIMARY = "ovn"

JSON = dict[str, Any]


@dataclass(frozen=True)
class Adoption:
    """One live attachment: the CNI ADD that records its addresses in ipamd."""

    source: str
    network: str
    ipam: Mapping[str, Any]
    namespace: str
    pod: str | None
    interface: str
    container_id: str | None
    ips: tuple[str, ...]
    mac: str | None = None
    notes: tuple[str, ...] = field(default=())
    node: str | None = None

    @property
    def label(self) -> str:
        who = f"{self.namespace}/{self.pod}" if self.pod else f"container {self.container_id}"
        return f"{who} {self.interface} {','.join(self.ips)} ({self.source})"

    def cni_add(self) -> JSON:
        """Returns the body of ``POST /v1/cni/adopt`` asking for exactly these addresses."""
        body: JSON = {
            # Without the sandbox's id (Kube-OVN annotations alone) the next ADD of the pod
            # records its real one; "imported" only marks where the allocation came from.
            "containerId": self.container_id or "imported",
            "ifName": self.interface,
            "network": self.network,
            "ipam": dict(self.ipam),
            "ips": list(self.ips),
        }
        if self.pod:
            body["podNamespace"] = self.namespace
            body["podName"] = self.pod
        if self.mac:
            body["mac"] = self.mac
        if self.node:
            body["node"] = self.node
        return body


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class Plan:
    adoptions: list[Adoption] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


# ----------------------------------------------------------------------------- pods


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, str]:
    notes = _meta(pod).get("annotations")
    return notes if isinstance(notes, Mapping) else {}


def pod_ref(pod: Mapping[str, Any]) -> tuple[str, str]:
    return str(_meta(pod).get("namespace") or ""), str(_meta(pod).get("name") or "")


def node_of(pod: Mapping[str, Any]) -> str | None:
    spec = pod.get("spec")
    node = spec.get("nodeName") if isinstance(spec, Mapping) else None
    return node if isinstance(node, str) and node else None


def running(pod: Mapping[str, Any]) -> bool:
    """True while the pod may still use its addresses (anything but a terminal phase)."""
    status = pod.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    return phase not in TERMINAL_PHASES


def network_status(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Returns Multus' ``network-status`` entries of a pod ({name, interface, ips, mac})."""
    text = _annotations(pod).get(NETWORK_STATUS)
    if not isinstance(text, str):
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        return []
    return [entry for entry in parsed if isinstance(entry, Mapping)] if isinstance(parsed, list) else []


def _selections(pod: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """Returns the pod's network selections as (namespace, name, interface or None)."""
    namespace = pod_ref(pod)[0]
    text = _annotations(pod).get(NETWORKS)
    if not isinstance(text, str) or not text.strip():
        return []
    selections: list[tuple[str, str, str | None]] = []
    if text.strip().startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            return []
        for item in parsed if isinstance(parsed, list) else []:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                interface = item.get("interface")
                selections.append(
                    (
                        str(item.get("namespace") or namespace),
                        item["name"],
                        interface if isinstance(interface, str) else None,
                    )
                )
        return selections
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        ref, _, interface = part.partition("@")
        ns, slash, name = ref.partition("/")
        selections.append((ns, name, interface or None) if slash else (namespace, ref, interface or None))
    return selections


def interface_of(pod: Mapping[str, Any], *, nad: tuple[str, str] | None, address: str | None) -> tuple[str, str | None]:
    """Returns the pod's interface on a NAD (namespace, name), or holding ``address``.

    The second value is a note when the interface had to be guessed.
    """
    for entry in network_status(pod):
        raw_ips = entry.get("ips")
        ips = raw_ips if isinstance(raw_ips, list) else []
        name = entry.get("name")
        if entry.get("default") or not isinstance(entry.get("interface"), str):
            continue
        if nad is not None and name == f"{nad[0]}/{nad[1]}":
            return str(entry["interface"]), None
        if nad is None and address is not None and address in [str(ip).partition("/")[0] for ip in ips]:
            return str(entry["interface"]), None
    if nad is not None:
        for index, (ns, name, interface) in enumerate(_selections(pod)):
            if (ns, name) == nad:
                return interface or f"net{index + 1}", None
    return "net1", "interface not recorded on the pod; assumed net1"


# ----------------------------------------------------------------------------- Kube-OVN


def _provider_nad(provider: str) -> tuple[str, str] | None:
    """Returns the NAD (namespace, name) of a Kube-OVN provider ``<nad>.<namespace>[.ovn]``."""
    parts = provider.split(".")
    return (parts[1], parts[0]) if len(parts) >= 2 else None


def _split_ips(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def kube_ovn(pods: Iterable[Mapping[str, Any]], ip_objects: Iterable[Mapping[str, Any]] = ()) -> Plan:
    """Returns the attachments Kube-OVN recorded on running pods and in ``IP`` objects."""
    plan = Plan()
    live = {pod_ref(pod): pod for pod in pods if running(pod)}
    from_ip: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for obj in ip_objects:
        spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
        assert isinstance(spec, Mapping)
        namespace, pod_name = str(spec.get("namespace") or ""), str(spec.get("podName") or "")
        name = str(_meta(obj).get("name") or "")
        prefix = f"{pod_name}.{namespace}"
        provider = (
            KUBE_OVN_PRIMARY if name == prefix else name[len(prefix) + 1 :] if name.startswith(prefix + ".") else ""
        )
        if provider:
            from_ip[(namespace, pod_name, provider)] = spec
    done: set[tuple[str, str, str]] = set()
    for (namespace, name), pod in sorted(live.items()):
        notes = _annotations(pod)
        for note_key in sorted(notes):
            if not note_key.endswith(f"{KUBE_OVN_SUFFIX}allocated") or notes[note_key] != "true":
                continue
            provider = note_key[: -len(f"{KUBE_OVN_SUFFIX}allocated")]
            source = f"pod {namespace}/{name} annotations of provider {provider}"
            done.add((namespace, name, provider))
            ips = _split_ips(str(notes.get(f"{provider}{KUBE_OVN_SUFFIX}ip_address") or ""))
            mac = notes.get(f"{provider}{KUBE_OVN_SUFFIX}mac_address") or None
            spec = from_ip.get((namespace, name, provider), {})
            _add_kube_ovn(plan, pod, provider, ips, mac, spec.get("containerID"), source)
    for (namespace, name, provider), spec in sorted(from_ip.items()):
        if (namespace, name, provider) in done:
            continue
        source = f"IP {name}.{namespace}.{provider}"
        owner = live.get((namespace, name))
        if owner is None:
            plan.skipped.append(Skipped(source, f"pod {namespace}/{name} is not running: nothing to adopt"))
            continue
        ips = tuple(
            a for a in (spec.get("v4IpAddress"), spec.get("v6IpAddress")) if isinstance(a, str) and a
        ) or _split_ips(str(spec.get("ipAddress") or ""))
        _add_kube_ovn(plan, owner, provider, ips, spec.get("macAddress") or None, spec.get("containerID"), source)
    return plan


def _add_kube_ovn(
    plan: Plan,
    pod: Mapping[str, Any],
    provider: str,
    ips: tuple[str, ...],
    mac: object,
    container_id: object,
    source: str,
) -> None:
    namespace, name = pod_ref(pod)
    if provider == KUBE_OVN_PRIMARY or provider.endswith(f".{KUBE_OVN_PRIMARY}"):
        plan.skipped.append(
            Skipped(source, f"provider {provider} is Kube-OVN's own OVN network, not an attachment ipamd serves")
        )
        return
    if not ips:
        plan.skipped.append(Skipped(source, "no ip_address recorded"))
        return
    nad = _provider_nad(provider)
    interface, note = interface_of(pod, nad=nad, address=ips[0].partition("/")[0])
    plan.adoptions.append(
        Adoption(
            source=source,
            network=nad[1] if nad else provider,
            ipam={"type": "ipamd", "provider": provider},
            namespace=namespace,
            pod=name,
            interface=interface,
            container_id=container_id if isinstance(container_id, str) and container_id else None,
            ips=ips,
            mac=mac if isinstance(mac, str) else None,
            notes=(note,) if note else (),
            node=node_of(pod),
        )
    )


# ----------------------------------------------------------------------------- NAD configs


def nad_ipam(nad: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """Returns (CNI network name, ipam section) of a NetworkAttachmentDefinition, if any."""
    spec = nad.get("spec")
    text = spec.get("config") if isinstance(spec, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        config = json.loads(text)
    except ValueError:
        return None
    return config_ipam(config)


def config_ipam(config: object) -> tuple[str, Mapping[str, Any]] | None:
    """Returns (network name, ipam section) of a CNI config or config list."""
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        return None
    listed = config.get("plugins")
    plugins: list[Any] = listed if isinstance(listed, list) else [config]
    for plugin in plugins:
        if isinstance(plugin, Mapping) and isinstance(plugin.get("ipam"), Mapping) and plugin["ipam"]:
            return config["name"], plugin["ipam"]
    return None


# ----------------------------------------------------------------------------- Whereabouts


def normalized_range(text: str) -> str:
    """Whereabouts' resource-name form of a range: ``192.0.2.0/24`` -> ``192.0.2.0-24``."""
    if text.endswith(":"):
        text += "0"
    return text.replace(":", "-").replace("/", "-")


def whereabouts_pool_name(range_text: str, network_name: str) -> str:
    """The IPPool name Whereabouts uses for a range (IPPoolName in its kubernetes storage)."""
    base = normalized_range(range_text)
    return f"{network_name}-{base}" if network_name else base


def _ranges(ipam: Mapping[str, Any]) -> list[str]:
    found = [ipam["range"]] if isinstance(ipam.get("range"), str) else []
    for item in ipam.get("ipRanges") or []:
        if isinstance(item, Mapping) and isinstance(item.get("range"), str):
            found.append(item["range"])
    return found


def _first_address(range_text: str) -> netaddr.IPAddress:
    """The address offsets count from: the one written before ``/`` (or before ``-``)."""
    return netaddr.IPAddress(range_text.partition("/")[0].partition("-")[0].strip())


def whereabouts(
    ippools: Iterable[Mapping[str, Any]],
    reservations: Iterable[Mapping[str, Any]],
    nads: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
) -> Plan:
    """Returns the live allocations of Whereabouts' IPPools, each through the NAD it serves."""
    plan = Plan()
    live = {pod_ref(pod): pod for pod in pods if running(pod)}
    serving: dict[str, list[tuple[tuple[str, str], str, Mapping[str, Any]]]] = {}
    for nad in nads:
        parsed = nad_ipam(nad)
        if parsed is None or not _ranges(parsed[1]):
            continue
        network, ipam = parsed
        network_name = ipam.get("network_name") if isinstance(ipam.get("network_name"), str) else ""
        for range_text in _ranges(ipam):
            serving.setdefault(whereabouts_pool_name(range_text, str(network_name)), []).append(
                ((str(_meta(nad).get("namespace") or ""), str(_meta(nad).get("name") or "")), network, ipam)
            )
    adopted: set[tuple[str, str, str]] = set()
    for pool in ippools:
        pool_name = str(_meta(pool).get("name") or "")
        spec = pool.get("spec") if isinstance(pool.get("spec"), Mapping) else {}
        assert isinstance(spec, Mapping)
        pool_range = spec.get("range")
        allocations = spec.get("allocations") if isinstance(spec.get("allocations"), Mapping) else {}
        assert isinstance(allocations, Mapping)
        if not isinstance(pool_range, str):
            plan.skipped.append(Skipped(f"IPPool {pool_name}", "no spec.range"))
            continue
        try:
            first = _first_address(pool_range)
        except (netaddr.AddrFormatError, ValueError):
            plan.skipped.append(Skipped(f"IPPool {pool_name}", f"spec.range {pool_range!r} is not a range"))
            continue
        candidates = serving.get(pool_name, [])
        for offset, allocation in sorted(allocations.items(), key=lambda item: str(item[0])):
            source = f"IPPool {pool_name} offset {offset}"
            if not isinstance(allocation, Mapping) or not str(offset).isdigit():
                plan.skipped.append(Skipped(source, "not an allocation Whereabouts writes"))
                continue
            address = str(netaddr.IPAddress(int(first) + int(offset), first.version))
            podref = str(allocation.get("podref") or "")
            namespace, _, name = podref.partition("/")
            pod = live.get((namespace, name))
            if pod is None:
                plan.skipped.append(
                    Skipped(source, f"{address}: pod {podref or '(none)'} is not running: a stale allocation")
                )
                continue
            chosen = _pick_nad(pod, candidates, address)
            if chosen is None:
                reason = (
                    f"no NAD has a Whereabouts range whose IPPool is {pool_name}"
                    if not candidates
                    else f"NADs {', '.join(f'{n[0]}/{n[1]}' for n, _, _ in candidates)} all serve it and the pod's network-status does not say which"
                )
                plan.skipped.append(Skipped(source, f"{address} of {podref}: {reason}"))
                continue
            nad_ref, network, ipam = chosen
            interface, note = interface_of(pod, nad=nad_ref, address=address)
            recorded_if = allocation.get("ifname")
            if isinstance(recorded_if, str) and recorded_if:
                interface, note = recorded_if, None
            container = allocation.get("id")
            plan.adoptions.append(
                Adoption(
                    source=source,
                    network=network,
                    ipam=ipam,
                    namespace=namespace,
                    pod=name,
                    interface=interface,
                    container_id=container if isinstance(container, str) and container else None,
                    ips=(address,),
                    notes=(note,) if note else (),
                    node=node_of(pod),
                )
            )
            adopted.add((namespace, name, address))
    for reservation in reservations:
        name = str(_meta(reservation).get("name") or "")
        spec = reservation.get("spec") if isinstance(reservation.get("spec"), Mapping) else {}
        assert isinstance(spec, Mapping)
        podref = str(spec.get("podref") or "")
        namespace, _, pod_name = podref.partition("/")
        reserved = _reservation_address(name)
        if (namespace, pod_name) not in live:
            continue  # stale: its pod is gone, nothing holds the address
        if reserved is not None and (namespace, pod_name, reserved) in adopted:
            continue
        plan.skipped.append(
            Skipped(
                f"OverlappingRangeIPReservation {name}",
                f"{reserved or name} is reserved for running pod {podref} but no IPPool allocation records it; "
                "adopt it by hand (a static address for that pod, or an ipamd reservation)",
            )
        )
    return plan


_TRAILING_V4 = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3})$")


def _reservation_address(name: str) -> str | None:
    """The address of an OverlappingRangeIPReservation name (``[network_name-]normalized IP``)."""
    match = _TRAILING_V4.search(name)
    if match:
        return match.group(1)
    # IPv6: colons became dashes; try the longest suffix that parses.
    parts = name.split("-")
    for start in range(len(parts)):
        candidate = ":".join(parts[start:])
        try:
            return str(netaddr.IPAddress(candidate, 6))
        except (netaddr.AddrFormatError, ValueError):
            continue
    return None


def _pick_nad(
    pod: Mapping[str, Any],
    candidates: list[tuple[tuple[str, str], str, Mapping[str, Any]]],
    address: str,
) -> tuple[tuple[str, str], str, Mapping[str, Any]] | None:
    statuses = {str(entry.get("name")): entry for entry in network_status(pod)}
    attached = [c for c in candidates if f"{c[0][0]}/{c[0][1]}" in statuses]
    holding = [
        c
        for c in attached
        if address in [str(ip).partition("/")[0] for ip in statuses[f"{c[0][0]}/{c[0][1]}"].get("ips") or []]
    ]
    for group in (holding, attached):
        if len(group) == 1:
            return group[0]
    if len(candidates) == 1:
        return candidates[0]
    selected = {(ns, name) for ns, name, _ in _selections(pod)}
    chosen = [c for c in candidates if c[0] in selected]
    return chosen[0] if len(chosen) == 1 else None


# ----------------------------------------------------------------------------- host-local


def host_local(
    data: Mapping[str, Mapping[str, str]],
    configs: Mapping[str, Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    data_dir: str = "/var/lib/cni/networks",
) -> Plan:
    """Returns the addresses host-local leased, per network directory.

    ``data`` maps a network name to its directory's files (name -> content); ``configs``
    maps a network name to the ipam section of its config.
    """
    plan = Plan()
    # Parsed once: every lease file is matched against every running pod's network-status.
    live = [(pod, network_status(pod)) for pod in pods if running(pod)]
    for network in sorted(data):
        files = data[network]
        for file_name in sorted(files):
            try:
                address = str(netaddr.IPAddress(file_name))
            except (netaddr.AddrFormatError, ValueError):
                continue  # last_reserved_ip.0, lock
            source = f"host-local {data_dir}/{network}/{file_name}"
            ipam = configs.get(network)
            if ipam is None:
                plan.skipped.append(
                    Skipped(source, f"no CNI config named {network}: pass it with --cni-config or create its NAD")
                )
                continue
            lines = [line.strip() for line in files[file_name].replace("\r", "\n").split("\n") if line.strip()]
            if not lines:
                plan.skipped.append(Skipped(source, "empty lease file"))
                continue
            container_id, interface = lines[0], lines[1] if len(lines) > 1 else None
            owners = [pod for pod, statuses in live if _holds(statuses, address, interface)]
            notes: tuple[str, ...] = ()
            node = None
            if len(owners) == 1:
                namespace, pod_name = pod_ref(owners[0])
                node = node_of(owners[0])
                if interface is None:
                    interface, _ = interface_of(owners[0], nad=None, address=address)
            else:
                namespace, pod_name = "", None
                notes = ("no pod's network-status shows this address: held by its container id",)
            plan.adoptions.append(
                Adoption(
                    source=source,
                    network=network,
                    ipam=ipam,
                    namespace=namespace,
                    pod=pod_name,
                    interface=interface or "eth0",
                    container_id=container_id,
                    ips=(address,),
                    notes=notes,
                    node=node,
                )
            )
    return plan


def _holds(statuses: list[Mapping[str, Any]], address: str, interface: str | None) -> bool:
    for entry in statuses:
        ips = [str(ip).partition("/")[0] for ip in entry.get("ips") or []]
        if address in ips and (interface is None or entry.get("interface") == interface):
            return True
    return False
