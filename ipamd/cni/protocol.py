"""The CNI protocol as the daemon speaks it through its plugin (docs/api.md, "CNI wire protocol").

The plugin on the node (plugin/main.go) is a pipe: it sends the raw network config and the
``CNI_*`` environment, and prints what comes back. Everything CNI means is decided here:
which verb, which version, what the environment and the config say, how an ADD result
looks in each version, and which error code each failure gets.

Pure functions, no I/O: ``ipamd.api.cni`` reads the request, calls these, runs the verb.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from ipamd.core import identity
from ipamd.core.text import printable
from ipamd.errors import (
    IncompatiblePlugin,
    IncompatibleVersion,
    InvalidEnvironment,
    InvalidInput,
    IpamError,
    UndecodableConfig,
)

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
WIRE_VERSION = 1
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# Verbs newer than some configs: refused as the reference skel does (code 1).
MINIMUM_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
ENVIRONMENT = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
# Route keys each result version knows; 1.1.0 added the attributes after dst and gw.
ROUTE_KEYS_1_1 = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
ROUTE_KEYS_OLD = ("dst", "gw")
DNS_KEYS = ("nameservers", "domain", "search", "options")


# ----------------------------------------------------------------------------- shapes
# ipamd's own: what the plugin's verbs become for the structured routes (/v1/cni/add, del,
# check, gc), and what those answer.


class Attachment(TypedDict):
    containerId: str
    ifName: str


class AttachmentRequest(TypedDict):
    """What ``/v1/cni/add`` (``del``, ``check``) takes: one attachment, and for an ADD the
    addresses and MAC asked for, for a CHECK the result to check."""

    containerId: str
    ifName: str
    netns: NotRequired[str]
    network: str
    podNamespace: str | None
    podName: str | None
    podUid: str | None
    ipam: dict[str, Any]
    ips: NotRequired[list[str]]
    mac: NotRequired[str | None]
    prevResult: NotRequired[dict[str, Any]]


class GcRequest(TypedDict):
    """What ``/v1/cni/gc`` takes: the network, and the attachments the runtime still has."""

    network: str
    ipam: dict[str, Any]
    validAttachments: list[Attachment]


class HeldAddress(TypedDict):
    address: str
    """With its prefix length (``192.0.2.7/24``)."""
    gateway: str | None
    family: int


class AddAnswer(TypedDict):
    """``/v1/cni/add``'s answer; ``add_result`` makes the CNI result of it."""

    allocationId: int
    subnet: str
    ips: list[HeldAddress]
    routes: list[dict[str, Any]]
    dns: dict[str, Any]
    mac: str | None


class DelAnswer(TypedDict):
    released: int
    kept: NotRequired[bool]
    """True when the policy kept the address past the DEL (ipamd.core.release)."""


class CheckAnswer(TypedDict):
    ips: list[HeldAddress]


class GcAnswer(TypedDict):
    released: int


# The CNI specification's (SPEC.md): what the plugin prints.


class ResultIp(TypedDict):
    version: NotRequired[str]
    """Results before 1.0.0 only."""
    address: str
    gateway: NotRequired[str]


class IpamResult(TypedDict):
    """An IPAM plugin's ADD result: no interfaces."""

    cniVersion: str
    ips: list[ResultIp]
    routes: list[dict[str, Any]]
    dns: dict[str, Any]


class VersionResult(TypedDict):
    cniVersion: str
    supportedVersions: list[str]


class ErrorResult(TypedDict):
    cniVersion: str
    code: int
    msg: str
    details: str


class PluginAnswer(TypedDict):
    """The wire answer the plugin passes on: what to print and how to exit."""

    exitCode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Invocation:
    """One plugin execution, checked: the verb, its environment and its config."""

    command: str
    env: Mapping[str, str]
    config: Mapping[str, Any]
    cni_version: str  # what the answer is written in


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def answer_version(body: object) -> str:
    """The version an answer is written in: the config's when supported, else the newest.

    An unsupported version is never echoed, so a runtime is not told that one is spoken here.
    """
    if isinstance(body, Mapping) and isinstance(body.get("config"), str):
        try:
            config = json.loads(body["config"])
        except ValueError:
            return LATEST_VERSION
        requested = config.get("cniVersion") if isinstance(config, dict) else None
        if requested in SUPPORTED_VERSIONS:
            return str(requested)
    return LATEST_VERSION


def version_result(cni_version: str) -> VersionResult:
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_invocation(body: Mapping[str, Any]) -> Invocation:
    """Returns the checked invocation a plugin request describes."""
    wire = body.get("wire")
    if wire != WIRE_VERSION:
        raise IncompatiblePlugin(
            f"the ipamd CNI plugin on this node speaks wire protocol {wire!r}, this daemon speaks {WIRE_VERSION}: "
            "install the plugin of this daemon's release (ipamd install-cni)"
        )
    raw_env = body.get("env")
    if not isinstance(raw_env, Mapping) or not all(isinstance(v, str) for v in raw_env.values()):
        raise InvalidInput("expected an object of strings", field="env")
    # Variables a newer plugin may add are ignored, like unknown CNI_ARGS.
    env = {name: raw_env[name] for name in ENVIRONMENT if raw_env.get(name)}
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise InvalidEnvironment("CNI_COMMAND is required")
    if command not in COMMANDS:
        raise InvalidEnvironment(f"unknown CNI_COMMAND {command!r}")
    text = body.get("config")
    if not isinstance(text, str) or not text.strip():
        raise UndecodableConfig("failed to decode the network config: stdin is empty")
    try:
        config = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise UndecodableConfig(f"failed to decode the network config: {e}") from None
    if not isinstance(config, dict):
        raise UndecodableConfig("failed to decode the network config: stdin must hold a JSON object")
    requested = config.get("cniVersion")
    if command == "VERSION":
        return Invocation(command, env, config, answer_version(body))
    if requested not in SUPPORTED_VERSIONS:
        raise IncompatibleVersion(f"unsupported cniVersion {requested!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    minimum = MINIMUM_VERSION.get(command)
    if minimum and _version_key(requested) < _version_key(minimum):
        raise IncompatibleVersion(f"{command} needs cniVersion {minimum} or newer, the config says {requested}")
    return Invocation(command, env, config, requested)


# ----------------------------------------------------------------------------- environment


def parse_cni_args(raw: str) -> dict[str, str]:
    """Splits CNI_ARGS ``K1=V1;K2=V2``. Unknown keys are kept and ignored by the caller,
    with or without ``IgnoreUnknown``: only the keys ipamd knows are read."""
    pairs: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue  # a trailing or doubled ';'
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidEnvironment(f"invalid CNI_ARGS: pair {item!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs


def _variable(env: Mapping[str, str], name: str, check: Callable[..., str]) -> str:
    """Returns the CNI_* variable ``name`` checked by its identity rule; code 4 naming it
    otherwise, as SPEC.md says of invalid environment variables."""
    value = env.get(name, "")
    if not value:
        raise InvalidEnvironment(f"{name} is required")
    try:
        return check(value, field=name)
    except InvalidInput as e:
        raise InvalidEnvironment(e.message) from None


def _pod_argument(cni_args: Mapping[str, str], name: str, check: Callable[..., str]) -> str | None:
    """A CNI_ARGS key of the Kubernetes conventions (``K8S_POD_NAME``...), checked by its rule.

    Values in CNI_ARGS are request input, like IP= and MAC=: code 7 naming the key."""
    return check(cni_args[name], field=name) if cni_args.get(name) else None


# ----------------------------------------------------------------------------- config


def ipam_of(config: Mapping[str, Any]) -> dict[str, Any]:
    ipam = config.get("ipam")
    if ipam is None:
        raise InvalidInput("the network config has no ipam section")
    if not isinstance(ipam, dict):
        raise InvalidInput("expected an object", field="ipam")
    return ipam


def network_name_of(config: Mapping[str, Any]) -> str:
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("the network config needs a non-empty name", field="name")
    return identity.network_name(name, field="name")


def _string_list(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("expected a list of strings", field=field)
    return value


def static_ips_of(config: Mapping[str, Any], cni_args: Mapping[str, str]) -> list[str]:
    """Merges the three standard ways to ask for addresses, first mention first."""
    merged: list[str] = []
    runtime_config = config.get("runtimeConfig")
    if isinstance(runtime_config, dict) and runtime_config.get("ips") is not None:
        merged += _string_list(runtime_config["ips"], "runtimeConfig.ips")
    args = config.get("args")
    cni_section = args.get("cni") if isinstance(args, dict) else None
    if isinstance(cni_section, dict) and cni_section.get("ips") is not None:
        merged += _string_list(cni_section["ips"], "args.cni.ips")
    if cni_args.get("IP"):
        merged += cni_args["IP"].split(",")
    # The same address often arrives twice (Multus fills runtimeConfig.ips and users add
    # IP= too), with or without a prefix length: keep its first mention only.
    unique: list[str] = []
    seen: set[str] = set()
    for ip in merged:
        ip = ip.strip()
        address = ip.split("/", 1)[0].lower()
        if ip and address not in seen:
            seen.add(address)
            unique.append(ip)
    return unique


def mac_of(config: Mapping[str, Any], cni_args: Mapping[str, str]) -> str | None:
    # runtimeConfig wins over CNI_ARGS, as in the reference tuning plugin.
    runtime_config = config.get("runtimeConfig")
    if isinstance(runtime_config, dict) and runtime_config.get("mac") is not None:
        mac = runtime_config["mac"]
        if not isinstance(mac, str):
            raise InvalidInput("expected a string", field="runtimeConfig.mac")
        if mac:
            return mac
    return cni_args.get("MAC") or None


def attachment_request(invocation: Invocation) -> AttachmentRequest:
    """The attachment an ADD, DEL or CHECK is about, as ``/v1/cni/add`` takes it."""
    config, env = invocation.config, invocation.env
    cni_args = parse_cni_args(env.get("CNI_ARGS", ""))
    # Checked in this order: the first invalid one is the error.
    container_id = _variable(env, "CNI_CONTAINERID", identity.container_id)
    interface = _variable(env, "CNI_IFNAME", identity.interface)
    # DEL may come without a namespace once it is gone.
    netns = _variable(env, "CNI_NETNS", identity.netns) if env.get("CNI_NETNS") else None
    body: AttachmentRequest = {
        "containerId": container_id,
        "ifName": interface,
        "network": network_name_of(config),
        "podNamespace": _pod_argument(cni_args, "K8S_POD_NAMESPACE", identity.namespace),
        "podName": _pod_argument(cni_args, "K8S_POD_NAME", identity.pod),
        "podUid": _pod_argument(cni_args, "K8S_POD_UID", identity.pod_uid),
        "ipam": ipam_of(config),
    }
    if netns is not None:
        body["netns"] = netns
    if invocation.command == "ADD":
        # A chained ADD may carry prevResult; an IPAM plugin has nothing to merge it into.
        body["ips"] = static_ips_of(config, cni_args)
        body["mac"] = mac_of(config, cni_args)
    elif invocation.command == "CHECK":
        previous = config.get("prevResult")
        if not isinstance(previous, dict):
            raise InvalidInput("CHECK needs a prevResult object in the config", field="prevResult")
        body["prevResult"] = previous
    return body


def gc_request(invocation: Invocation) -> GcRequest:
    """What a GC asks, as ``/v1/cni/gc`` takes it."""
    config = invocation.config
    if VALID_ATTACHMENTS not in config:
        # An absent list would read as "nothing is valid" and release the whole network.
        raise InvalidInput(f"GC needs {VALID_ATTACHMENTS} in the config")
    raw = config[VALID_ATTACHMENTS]
    if not isinstance(raw, list):
        raise InvalidInput("expected a list", field=VALID_ATTACHMENTS)
    valid: list[Attachment] = []
    for index, item in enumerate(raw):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("containerID"), str)
            or not isinstance(item.get("ifname"), str)
        ):
            raise InvalidInput("expected {containerID, ifname} strings", field=f"{VALID_ATTACHMENTS}[{index}]")
        valid.append({"containerId": item["containerID"], "ifName": item["ifname"]})
    return {"network": network_name_of(config), "ipam": ipam_of(config), "validAttachments": valid}


# ----------------------------------------------------------------------------- answers


def add_result(answer: AddAnswer, cni_version: str) -> IpamResult:
    """The daemon's add answer as an IPAM result of ``cni_version`` (no interfaces)."""
    with_ip_version = _version_key(cni_version) < (1, 0, 0)
    ips: list[ResultIp] = []
    for entry in answer["ips"]:
        address = entry["address"]
        ip: ResultIp = (
            {"version": str(entry.get("family") or (6 if ":" in address else 4)), "address": address}
            if with_ip_version
            else {"address": address}
        )
        gateway = entry.get("gateway")
        if gateway:
            ip["gateway"] = gateway
        ips.append(ip)
    route_keys = ROUTE_KEYS_1_1 if cni_version == "1.1.0" else ROUTE_KEYS_OLD
    routes = [
        {key: route[key] for key in route_keys if route.get(key) not in (None, "")}
        for route in answer.get("routes") or []
        if isinstance(route, Mapping) and route.get("dst")
    ]
    dns_in = answer.get("dns")
    dns = (
        {key: dns_in[key] for key in DNS_KEYS if dns_in.get(key) not in (None, "", [])}
        if isinstance(dns_in, Mapping)
        else {}
    )
    return {"cniVersion": cni_version, "ips": ips, "routes": routes, "dns": dns}


def error_result(error: IpamError, cni_version: str) -> ErrorResult:
    return {"cniVersion": cni_version, "code": error.cni_code, "msg": error.message, "details": error.code}


def success(output: Mapping[str, object] | None) -> PluginAnswer:
    """The wire answer of a verb that succeeded: its result (if any) on stdout, exit 0."""
    stdout = json.dumps(output, separators=(",", ":")) + "\n" if output is not None else ""
    return {"exitCode": 0, "stdout": stdout, "stderr": ""}


def failure(error: IpamError, cni_version: str, command: str) -> PluginAnswer:
    """The wire answer of a verb that failed: the CNI error on stdout, one line on stderr."""
    result = error_result(error, cni_version)
    line = f"ipamd-cni: {printable(command) or '?'} failed with code {error.cni_code}: {printable(error.message)}\n"
    return {"exitCode": 1, "stdout": json.dumps(result, separators=(",", ":")) + "\n", "stderr": line}
