"""The resource types the double serves and their per-type behaviour.

Each :class:`ResourceType` says where the resource lives in the API
(group/version/plural), what discovery advertises for it, which field
selectors it supports, and how the apiserver's registry strategy treats it:
defaults on create, validation, whether ``status`` is a subresource (so that
writes to the main resource cannot change it and vice versa), and whether a
DELETE answers with the deleted object or a ``Status``.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .selectors import FieldGetter, getters_for, selector_from_label_selector_object

JSON = dict[str, Any]
Cause = tuple[str, str, str]  # (field, reason, message)

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _or_default(getter: FieldGetter, unset: str, obj: JSON) -> str:
    return getter(obj) or unset


def _no_causes(obj: JSON, old: JSON | None) -> list[Cause]:
    return []


def _no_defaults(obj: JSON) -> None:
    return None


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    has_status: bool = False
    has_scale: bool = False
    # Extra field selector paths beyond metadata.name/metadata.namespace.
    extra_fields: list[str] = field(default_factory=list)
    # What an extra field reads as when the object leaves it unset, where the registry's
    # field set says so (a Go bool is "false"); otherwise "".
    field_defaults: dict[str, str] = field(default_factory=dict)
    set_defaults: Callable[[JSON], None] = _no_defaults
    validate: Callable[[JSON, JSON | None], list[Cause]] = _no_causes
    # Pods answer DELETE with the object; most other registries with a Status.
    return_deleted_object: bool = False
    # Bump metadata.generation when the spec changes (workload controllers).
    tracks_generation: bool = False
    name_rule: re.Pattern[str] = _DNS_SUBDOMAIN
    # Another group/version this storage is also served under (events.k8s.io).
    storage_key: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Identity of the storage (shared by alternative API versions)."""
        return self.storage_key or f"{self.plural}.{self.group}"

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def field_getters(self) -> dict[str, FieldGetter]:
        paths = ["metadata.name"] + (["metadata.namespace"] if self.namespaced else [])
        getters = getters_for(paths + self.extra_fields)
        for path, unset in self.field_defaults.items():
            getters[path] = functools.partial(_or_default, getters[path], unset)
        return getters

    def discovery_entries(self) -> list[JSON]:
        entry: JSON = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        }
        if self.short_names:
            entry["shortNames"] = self.short_names
        if self.categories:
            entry["categories"] = self.categories
        entries = [entry]
        if self.has_status:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.has_scale:
            entries.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


# ---------------------------------------------------------------------------
# Pods


def _pod_defaults(pod: JSON) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for container in spec.get("containers") or []:
        if isinstance(container, dict):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("resources", {})


def _pod_spec_without_images(spec: JSON) -> JSON:
    stripped = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for container in stripped.get(key) or []:
            if isinstance(container, dict):
                container.pop("image", None)
    # Fields the apiserver lets an update change on a live pod.
    stripped.pop("activeDeadlineSeconds", None)
    stripped.pop("tolerations", None)
    stripped.pop("terminationGracePeriodSeconds", None)
    return stripped


def _validate_pod(pod: JSON, old: JSON | None) -> list[Cause]:
    causes: list[Cause] = []
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not containers:
        causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    else:
        seen: set[str] = set()
        for i, container in enumerate(containers):
            name = container.get("name") if isinstance(container, dict) else None
            if not name:
                causes.append((f"spec.containers[{i}].name", "FieldValueRequired", "Required value"))
            elif name in seen:
                causes.append((f"spec.containers[{i}].name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
            else:
                seen.add(name)
            if isinstance(container, dict) and not container.get("image") and old is None:
                causes.append((f"spec.containers[{i}].image", "FieldValueRequired", "Required value"))
    if old is not None and isinstance(spec, dict):
        old_spec = old.get("spec") or {}
        if _pod_spec_without_images(spec) != _pod_spec_without_images(old_spec):
            causes.append(
                (
                    "spec",
                    "FieldValueForbidden",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)",
                )
            )
    return causes


PODS = ResourceType(
    group="",
    version="v1",
    plural="pods",
    singular="pod",
    kind="Pod",
    namespaced=True,
    short_names=["po"],
    categories=["all"],
    has_status=True,
    extra_fields=[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ],
    set_defaults=_pod_defaults,
    validate=_validate_pod,
    return_deleted_object=True,
)


# ---------------------------------------------------------------------------
# Events (core/v1 storage, also served as events.k8s.io/v1)


def _validate_event(event: JSON, old: JSON | None) -> list[Cause]:
    causes: list[Cause] = []
    involved = event.get("involvedObject")
    if not isinstance(involved, dict):
        causes.append(("involvedObject", "FieldValueRequired", "Required value"))
    else:
        namespace = (event.get("metadata") or {}).get("namespace")
        involved_ns = involved.get("namespace")
        if involved_ns and involved_ns != namespace:
            causes.append(
                (
                    "involvedObject.namespace",
                    "FieldValueInvalid",
                    f'Invalid value: "{involved_ns}": does not match event.namespace',
                )
            )
    return causes


EVENTS = ResourceType(
    group="",
    version="v1",
    plural="events",
    singular="event",
    kind="Event",
    namespaced=True,
    short_names=["ev"],
    extra_fields=[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ],
    validate=_validate_event,
    storage_key="events.",
)

# events.k8s.io/v1 is another view of the same storage; see events_v1_* below.
EVENTS_V1 = ResourceType(
    group="events.k8s.io",
    version="v1",
    plural="events",
    singular="event",
    kind="Event",
    namespaced=True,
    short_names=["ev"],
    extra_fields=[
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "reason",
        "type",
        "reportingController",
    ],
    storage_key="events.",
)

_EVENT_FIELD_MAP = [
    # (events.k8s.io/v1 field, core/v1 field)
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
]


def event_v1_to_core(event: JSON) -> JSON:
    core = copy.deepcopy(event)
    core["apiVersion"] = "v1"
    for new, old in _EVENT_FIELD_MAP:
        if new in core:
            core[old] = core.pop(new)
    return core


def event_core_to_v1(event: JSON) -> JSON:
    out = copy.deepcopy(event)
    out["apiVersion"] = "events.k8s.io/v1"
    for new, old in _EVENT_FIELD_MAP:
        if old in out:
            out[new] = out.pop(old)
    return out


# ---------------------------------------------------------------------------
# Namespaces


def _namespace_defaults(ns: JSON) -> None:
    ns.setdefault("spec", {"finalizers": ["kubernetes"]})
    ns["status"] = {"phase": "Active"}
    labels = ns.setdefault("metadata", {}).setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = ns["metadata"].get("name", "")


NAMESPACES = ResourceType(
    group="",
    version="v1",
    plural="namespaces",
    singular="namespace",
    kind="Namespace",
    namespaced=False,
    short_names=["ns"],
    verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
    has_status=True,
    extra_fields=["status.phase"],
    set_defaults=_namespace_defaults,
    name_rule=_DNS_LABEL,
)


# ---------------------------------------------------------------------------
# Nodes (ipamd reads its own node's labels for placement rules)


def _node_defaults(node: JSON) -> None:
    labels = node.setdefault("metadata", {}).setdefault("labels", {})
    # The kubelet registers these on every node.
    labels.setdefault("kubernetes.io/hostname", node["metadata"].get("name", ""))
    labels.setdefault("kubernetes.io/os", "linux")
    node.setdefault("spec", {})
    node.setdefault("status", {"conditions": [{"type": "Ready", "status": "True"}]})


NODES = ResourceType(
    group="",
    version="v1",
    plural="nodes",
    singular="node",
    kind="Node",
    namespaced=False,
    short_names=["no"],
    has_status=True,
    extra_fields=["spec.unschedulable"],
    field_defaults={"spec.unschedulable": "false"},
    set_defaults=_node_defaults,
)


# ---------------------------------------------------------------------------
# StatefulSets


def _statefulset_defaults(sts: JSON) -> None:
    spec = sts.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})


def _validate_statefulset(sts: JSON, old: JSON | None) -> list[Cause]:
    causes: list[Cause] = []
    spec = sts.get("spec") or {}
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(
            ("spec.replicas", "FieldValueInvalid", f"Invalid value: {replicas}: must be greater than or equal to 0")
        )
    selector = spec.get("selector")
    if not selector:
        causes.append(("spec.selector", "FieldValueRequired", "Required value"))
    else:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector_from_label_selector_object(selector).matches(labels):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    "FieldValueInvalid",
                    "Invalid value: `selector` does not match template `labels`",
                )
            )
    if old is not None:
        old_spec = old.get("spec") or {}
        # The apiserver forbids changing anything but a handful of fields.
        mutable = {
            "replicas",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "persistentVolumeClaimRetentionPolicy",
            "ordinals",
            "revisionHistoryLimit",
        }
        frozen_new = {k: v for k, v in spec.items() if k not in mutable}
        frozen_old = {k: v for k, v in old_spec.items() if k not in mutable}
        if frozen_new != frozen_old:
            causes.append(
                (
                    "spec",
                    "FieldValueForbidden",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', "
                    "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
    return causes


STATEFULSETS = ResourceType(
    group="apps",
    version="v1",
    plural="statefulsets",
    singular="statefulset",
    kind="StatefulSet",
    namespaced=True,
    short_names=["sts"],
    categories=["all"],
    has_status=True,
    has_scale=True,
    set_defaults=_statefulset_defaults,
    validate=_validate_statefulset,
    tracks_generation=True,
)


# ---------------------------------------------------------------------------
# Leases


def _validate_lease(lease: JSON, old: JSON | None) -> list[Cause]:
    duration = (lease.get("spec") or {}).get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        return [
            ("spec.leaseDurationSeconds", "FieldValueInvalid", f"Invalid value: {duration}: must be greater than 0")
        ]
    return []


LEASES = ResourceType(
    group="coordination.k8s.io",
    version="v1",
    plural="leases",
    singular="lease",
    kind="Lease",
    namespaced=True,
    validate=_validate_lease,
)


# ---------------------------------------------------------------------------
# Custom resources of the IPAMs ipamd migrates from, served as if their CRDs were
# installed (no schema validation: CRDs with x-kubernetes-preserve-unknown-fields).

NETWORK_ATTACHMENT_DEFINITIONS = ResourceType(
    group="k8s.cni.cncf.io",
    version="v1",
    plural="network-attachment-definitions",
    singular="network-attachment-definition",
    kind="NetworkAttachmentDefinition",
    namespaced=True,
    short_names=["net-attach-def"],
)

WHEREABOUTS_IPPOOLS = ResourceType(
    group="whereabouts.cni.cncf.io",
    version="v1alpha1",
    plural="ippools",
    singular="ippool",
    kind="IPPool",
    namespaced=True,
)

# KubeVirt (kubevirt.io/v1). A VirtualMachine owns, while it runs, one
# VirtualMachineInstance of the same name; the instance owns its virt-launcher pod(s):
# two during a live migration. The controllers are not simulated: tests create what they
# would (``KubeApiDouble.launcher_pod``).


def _validate_virtual_machine(vm: JSON, old: JSON | None) -> list[Cause]:
    spec = vm.get("spec") or {}
    if "template" not in spec:
        return [("spec.template", "FieldValueRequired", "Required value")]
    if "running" in spec and "runStrategy" in spec:
        return [("spec.running", "FieldValueInvalid", "Invalid value: running and runStrategy are mutually exclusive")]
    return []


VIRTUAL_MACHINES = ResourceType(
    group="kubevirt.io",
    version="v1",
    plural="virtualmachines",
    singular="virtualmachine",
    kind="VirtualMachine",
    namespaced=True,
    short_names=["vm", "vms"],
    categories=["all"],
    has_status=True,
    validate=_validate_virtual_machine,
    tracks_generation=True,
)

VIRTUAL_MACHINE_INSTANCES = ResourceType(
    group="kubevirt.io",
    version="v1",
    plural="virtualmachineinstances",
    singular="virtualmachineinstance",
    kind="VirtualMachineInstance",
    namespaced=True,
    short_names=["vmi", "vmis"],
    categories=["all"],
    has_status=True,
)

WHEREABOUTS_RESERVATIONS = ResourceType(
    group="whereabouts.cni.cncf.io",
    version="v1alpha1",
    plural="overlappingrangeipreservations",
    singular="overlappingrangeipreservation",
    kind="OverlappingRangeIPReservation",
    namespaced=True,
)

KUBE_OVN_IPS = ResourceType(
    group="kubeovn.io",
    version="v1",
    plural="ips",
    singular="ip",
    kind="IP",
    namespaced=False,
)


ALL_RESOURCES: list[ResourceType] = [
    PODS,
    EVENTS,
    NAMESPACES,
    NODES,
    STATEFULSETS,
    LEASES,
    EVENTS_V1,
    NETWORK_ATTACHMENT_DEFINITIONS,
    WHEREABOUTS_IPPOOLS,
    WHEREABOUTS_RESERVATIONS,
    KUBE_OVN_IPS,
    VIRTUAL_MACHINES,
    VIRTUAL_MACHINE_INSTANCES,
]


def group_versions(served: Sequence[ResourceType] = ALL_RESOURCES) -> dict[tuple[str, str], list[ResourceType]]:
    """The ``served`` resources grouped by (group, version), in discovery order."""
    grouped: dict[tuple[str, str], list[ResourceType]] = {}
    for resource in served:
        grouped.setdefault((resource.group, resource.version), []).append(resource)
    return grouped


def lookup(
    group: str, version: str, plural: str, served: Sequence[ResourceType] = ALL_RESOURCES
) -> ResourceType | None:
    for resource in served:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def check_name(resource: ResourceType, name: str) -> list[Cause]:
    if not name:
        return [("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")]
    if len(name) > 253 or not resource.name_rule.match(name):
        return [
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        ]
    return []


__all__ = [
    "ALL_RESOURCES",
    "EVENTS",
    "EVENTS_V1",
    "KUBE_OVN_IPS",
    "LEASES",
    "NETWORK_ATTACHMENT_DEFINITIONS",
    "WHEREABOUTS_IPPOOLS",
    "WHEREABOUTS_RESERVATIONS",
    "NAMESPACES",
    "NODES",
    "VIRTUAL_MACHINES",
    "VIRTUAL_MACHINE_INSTANCES",
    "PODS",
    "STATEFULSETS",
    "ResourceType",
    "check_name",
    "event_core_to_v1",
    "event_v1_to_core",
    "group_versions",
    "lookup",
]
