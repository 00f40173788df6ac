"""The YAML operators write, parsed: the daemon's ``--config`` file and the manifests
``ipamctl apply`` accepts. No I/O here: callers read the text. Both the daemon
(ipamd.declarative) and the CLI (ipamd.ctl) import this module; the daemon never imports
the CLI.

The ``--config`` file (format in docs/cli.md) lists subnets, pools and reservations, and
may set ``clusterName`` and ``history.retention``; its errors are InvalidInput naming the
file and the entry at fault.

Manifests come in two vocabularies; their errors are ManifestError:

- ipamd's own ``apiVersion: ipamd.io/v1``, kinds ``Subnet``, ``Pool`` and ``Reservation``:
  ``metadata.name`` names the object and ``spec`` holds the fields of docs/api.md.
- Kube-OVN's ``kubeovn.io/v1`` ``Subnet`` and ``IPPool``, unchanged. The fields an
  attachment network uses are mapped; every other one is reported as a warning, never
  dropped silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ipamd.core import identity
from ipamd.core.addresses import parse_ip
from ipamd.core.allocation import canonical_mac
from ipamd.core.converge import Declared, Kind
from ipamd.core.history import parse_duration
from ipamd.core.placement import parse_placement
from ipamd.core.pool import POOL_FIELDS, RESERVATION_FIELDS
from ipamd.core.sanity import force_of
from ipamd.core.subnet import SUBNET_REQUEST_FIELDS, check_name, reject_unknown, requested_subnet
from ipamd.errors import InvalidInput

SECTIONS = frozenset({"subnets", "pools", "reservations", "history"})
HISTORY_FIELDS = frozenset({"retention"})
# Not a section of objects: the daemon's --cluster-name, read once at start.
CLUSTER_NAME = "clusterName"

IPAMD_API = "ipamd.io/v1"
KUBEOVN_API = "kubeovn.io/v1"
# What Kube-OVN assumes when a Subnet has no provider: its own OVN network.
KUBEOVN_DEFAULT_PROVIDER = "ovn"

KUBEOVN_SUBNET_FIELDS = ("cidrBlock", "gateway", "excludeIps", "provider", "namespaces")
KUBEOVN_POOL_FIELDS = ("subnet", "ips", "namespaces")
# Why some well-known Kube-OVN fields do not carry over; others get a generic reason.
KUBEOVN_REASONS = {
    "protocol": "ipamd derives the families from cidrBlock",
    "natOutgoing": "NAT is OVN routing, not address management",
    "gatewayType": "OVN gateway placement does not apply to attachment networks",
    "gatewayNode": "OVN gateway placement does not apply to attachment networks",
    "vlan": "the attachment's CNI plugin (macvlan, ipvlan, ...) owns the L2 setup",
    "private": "OVN ACLs do not apply to attachment networks",
    "allowSubnets": "OVN ACLs do not apply to attachment networks",
    "vpc": "OVN VPCs do not apply to attachment networks",
    "enableLb": "OVN load balancers do not apply to attachment networks",
    "default": "the default pod network is not an attachment",
    "logicalGateway": "OVN gateway placement does not apply to attachment networks",
    "disableGatewayCheck": "ipamd does not check gateways",
}


# ---------------------------------------------------------------------------- the --config file


@dataclass(frozen=True)
class DesiredState:
    """The file, validated: subnets and pools by name, reservations by ``SUBNET/ADDRESS``."""

    subnets: dict[str, Declared]
    pools: dict[str, Declared]
    reservations: dict[str, Declared]
    cluster_name: str | None = None
    # Seconds; None: the file does not say.
    history_retention: float | None = None

    @property
    def objects(self) -> list[Declared]:
        return [*self.subnets.values(), *self.pools.values(), *self.reservations.values()]


def parse_config_text(text: str, *, source: str) -> DesiredState:
    """Returns the desired state a ``--config`` file's text declares; raises InvalidInput naming the entry at fault."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidInput(f"{source}: {yaml_problem(e)}", field="config") from e
    return parse_config(raw, source=source)


def parse_config(raw: object, *, source: str) -> DesiredState:
    """Returns the desired state of a ``--config`` file already read as YAML."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{source}: expected a mapping with subnets, pools and reservations", field="config")
    unknown = sorted(set(raw) - SECTIONS - {CLUSTER_NAME})
    if unknown:
        raise InvalidInput(
            f"{source}: unknown section {unknown[0]!r}; known sections are {', '.join(sorted({CLUSTER_NAME, *SECTIONS}))}",
            field="config",
        )
    cluster_name = None
    if raw.get(CLUSTER_NAME) is not None:
        with _located(source, CLUSTER_NAME):
            cluster_name = identity.cluster_name(raw[CLUSTER_NAME], field=CLUSTER_NAME)
    readers = {"subnets": _config_subnet, "pools": _config_pool, "reservations": _config_reservation}
    sections = {}
    for name in readers:
        entries = raw.get(name) or []
        if not isinstance(entries, list):
            raise InvalidInput(f"{source}: {name}: expected a list", field="config")
        sections[name] = entries
    declared: dict[str, dict[str, Declared]] = {name: {} for name in readers}
    for name, read in readers.items():
        for index, entry in enumerate(sections[name]):
            with _located(source, f"{name}[{index}]"):
                item = read(entry)
                if item.key in declared[name]:
                    raise InvalidInput(_declared_twice(item))
                declared[name][item.key] = item
    subnets, pools, reservations = declared["subnets"], declared["pools"], declared["reservations"]
    return DesiredState(
        subnets, pools, reservations, cluster_name, _history_retention(raw.get("history"), source=source)
    )


def _history_retention(section: object, *, source: str) -> float | None:
    if section is None:
        return None
    with _located(source, "history"):
        if not isinstance(section, Mapping):
            raise InvalidInput("expected a mapping {retention}")
        reject_unknown(section, HISTORY_FIELDS)
        return None if section.get("retention") is None else parse_duration(section["retention"], field="retention")


@contextlib.contextmanager
def _located(source: str, where: str) -> Iterator[None]:
    """Prefixes a validation error with the file and the entry it is about."""
    try:
        yield
    except InvalidInput as e:
        raise InvalidInput(f"{source}: {where}: {e.message}", field="config") from e


def _declared_twice(item: Declared) -> str:
    if item.kind is Kind.RESERVATION:
        return f"{item.spec['address']} in subnet {item.spec['subnet']} is reserved twice"
    return f"{item.kind} {item.key} is declared twice"


def _config_subnet(entry: object) -> Declared:
    # force (ipamd.core.sanity) is said again with each change, never compared.
    force = force_of(entry) if isinstance(entry, Mapping) else False
    return Declared.of(Kind.SUBNET, requested_subnet(entry).to_json(), force=force)


def _config_pool(entry: object) -> Declared:
    if not isinstance(entry, Mapping):
        raise InvalidInput("expected a mapping {name, subnet, ips}")
    reject_unknown(entry, POOL_FIELDS)
    ips = entry.get("ips")
    if not isinstance(ips, list) or not ips or not all(isinstance(item, str) for item in ips):
        raise InvalidInput("expected a non-empty list of addresses, a..b ranges or CIDRs", field="ips")
    subnet = entry.get("subnet")
    if not isinstance(subnet, str):
        raise InvalidInput("required: the name of the subnet", field="subnet")
    # The daemon stores members as written, stripped, and rules as it writes them: compare in that form.
    pool = {
        "name": check_name(entry.get("name")),
        "subnet": subnet,
        "ips": [item.strip() for item in ips],
        **parse_placement(entry).to_json(),
    }
    return Declared.of(Kind.POOL, pool)


def _config_reservation(entry: object) -> Declared:
    if not isinstance(entry, Mapping):
        raise InvalidInput("expected a mapping {subnet, address, mac, owner, note}")
    reject_unknown(entry, RESERVATION_FIELDS)
    subnet = entry.get("subnet")
    if not isinstance(subnet, str):
        raise InvalidInput("required: the name of the subnet", field="subnet")
    mac = entry.get("mac")
    reservation = {
        "subnet": subnet,
        "address": str(parse_ip(entry.get("address"), field="address")),
        "mac": canonical_mac(mac, field="mac") if mac is not None else None,
        "owner": entry.get("owner"),
        "note": entry.get("note"),
    }
    for key in ("owner", "note"):
        if reservation[key] is not None and not isinstance(reservation[key], str):
            raise InvalidInput("expected a string", field=key)
    return Declared.of(Kind.RESERVATION, reservation)


# ---------------------------------------------------------------------------- ipamctl apply's manifests


class ManifestError(Exception):
    """A manifest ipamctl cannot use: the message names the document and the field."""


@dataclass(frozen=True)
class Manifest:
    kind: str
    """``subnet``, ``pool`` or ``reservation``: the API resource."""
    name: str
    """The object's name; for reservations ``SUBNET/ADDRESS``."""
    body: dict[str, Any]
    """The API request body (docs/api.md)."""
    where: str
    """Where it came from, e.g. ``subnets.yaml document 2``."""
    warnings: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``subnet/macvlan`` as kubectl would print it."""
        return f"{self.kind}/{self.name}"


def parse_documents(text: str, *, source: str) -> list[Manifest]:
    """Returns the manifests of a (multi-document) YAML text, subnets first, then pools, then reservations."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: {yaml_problem(e)}") from e
    manifests: list[Manifest] = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        manifests += _document(document, where=f"{source} document {index}")
    if not manifests:
        raise ManifestError(f"{source}: no Subnet, Pool, Reservation or IPPool document")
    order = {"subnet": 0, "pool": 1, "reservation": 2}
    return sorted(manifests, key=lambda manifest: order[manifest.kind])


def yaml_problem(error: yaml.YAMLError) -> str:
    """Returns a YAML syntax error as one line: where, and what is wrong."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def _document(document: object, *, where: str) -> list[Manifest]:
    if not isinstance(document, Mapping):
        raise ManifestError(f"{where}: expected a mapping with apiVersion, kind, metadata and spec")
    api, kind = document.get("apiVersion"), document.get("kind")
    if kind == "List" and isinstance(document.get("items"), list):
        # `kubectl get subnets -o yaml` wraps objects in a List.
        items: list[Manifest] = []
        for number, item in enumerate(document["items"], start=1):
            items += _document(item, where=f"{where} item {number}")
        return items
    if api == IPAMD_API and kind in ("Subnet", "Pool", "Reservation"):
        return [_ipamd(document, kind, where=where)]
    if api == KUBEOVN_API and kind == "Subnet":
        return [_kubeovn_subnet(document, where=where)]
    if api == KUBEOVN_API and kind == "IPPool":
        return [_kubeovn_pool(document, where=where)]
    raise ManifestError(
        f"{where}: apiVersion {api!r} kind {kind!r} is not supported; "
        f"use {IPAMD_API} Subnet/Pool/Reservation or {KUBEOVN_API} Subnet/IPPool"
    )


def _name(document: Mapping[str, Any], *, where: str, required: bool = True) -> str | None:
    metadata = document.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if name is None and not required:
        return None
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: metadata.name is required")
    return name


def _spec(document: Mapping[str, Any], *, where: str) -> Mapping[str, Any]:
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise ManifestError(f"{where}: spec is required and must be a mapping")
    return spec


def _ipamd(document: Mapping[str, Any], kind: str, *, where: str) -> Manifest:
    spec = _spec(document, where=where)
    known = {"Subnet": SUBNET_REQUEST_FIELDS, "Pool": POOL_FIELDS, "Reservation": RESERVATION_FIELDS}[kind] - {"name"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ManifestError(
            f"{where}: spec.{unknown[0]} is not a {kind} field; known fields are {', '.join(sorted(known))}"
        )
    if kind == "Reservation":
        subnet, address = spec.get("subnet"), spec.get("address")
        if not isinstance(subnet, str) or not isinstance(address, str):
            raise ManifestError(f"{where}: spec.subnet and spec.address are required")
        return Manifest("reservation", f"{subnet}/{address}", dict(spec), where)
    name = _name(document, where=where)
    assert name is not None
    return Manifest(kind.lower(), name, {"name": name, **spec}, where)


def _ignored(spec: Mapping[str, Any], used: tuple[str, ...], *, label: str) -> list[str]:
    """Returns one warning per spec field that has no meaning for an attachment network."""
    warnings = []
    for key in spec:
        if key in used:
            continue
        reason = KUBEOVN_REASONS.get(key, "it has no meaning for attachment networks")
        warnings.append(f"{label}: spec.{key} ignored: {reason}")
    return warnings


def _kubeovn_subnet(document: Mapping[str, Any], *, where: str) -> Manifest:
    name = _name(document, where=where)
    assert name is not None
    spec = _spec(document, where=where)
    label = f"{KUBEOVN_API} Subnet {name}"
    if not isinstance(spec.get("cidrBlock"), str):
        raise ManifestError(f"{where}: spec.cidrBlock is required")
    body: dict[str, Any] = {"name": name, "cidrBlock": spec["cidrBlock"]}
    warnings = _ignored(spec, KUBEOVN_SUBNET_FIELDS, label=label)
    if spec.get("gateway") not in (None, ""):
        body["gateway"] = spec["gateway"]
    if spec.get("excludeIps"):
        body["excludeIps"] = spec["excludeIps"]
    if spec.get("namespaces"):
        # Kube-OVN's binding: only pods of these namespaces get the subnet's addresses.
        body["namespaces"] = spec["namespaces"]
    provider = spec.get("provider")
    if provider in (None, ""):
        provider = KUBEOVN_DEFAULT_PROVIDER
        warnings.append(
            f"{label}: spec.provider is not set; using Kube-OVN's default {KUBEOVN_DEFAULT_PROVIDER!r}, which no attachment "
            "asks for: set it to the NetworkAttachmentDefinition's <name>.<namespace>"
        )
    body["provider"] = provider
    return Manifest("subnet", name, body, where, tuple(warnings))


def _kubeovn_pool(document: Mapping[str, Any], *, where: str) -> Manifest:
    name = _name(document, where=where)
    assert name is not None
    spec = _spec(document, where=where)
    label = f"{KUBEOVN_API} IPPool {name}"
    if not isinstance(spec.get("subnet"), str) or not isinstance(spec.get("ips"), list):
        raise ManifestError(f"{where}: spec.subnet and spec.ips are required")
    body = {"name": name, "subnet": spec["subnet"], "ips": list(spec["ips"])}
    if spec.get("namespaces"):
        body["namespaces"] = spec["namespaces"]
    return Manifest("pool", name, body, where, tuple(_ignored(spec, KUBEOVN_POOL_FIELDS, label=label)))
