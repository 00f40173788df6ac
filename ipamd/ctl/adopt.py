"""``ipamctl import``: adopt the addresses running pods carry from Kube-OVN, Whereabouts or
host-local before ipamd hands out anything (docs/deploy.md, "Migrating with running pods").

The objects come from the Kubernetes API (``--kubeconfig``, or in-cluster credentials) or
from files saved with ``kubectl get -o json|yaml`` (``--from-file``); host-local leases from
its data directory. Each live attachment becomes one ADD (``POST /v1/cni/adopt``) asking
for exactly its addresses, so ipamd records them under the same key its later ADDs use,
for the pod's node; an address held by someone else is reported as a conflict and
nothing is overwritten.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ipamd.core import adopt
from ipamd.ctl.client import Client, CtlError
from ipamd.errors import IpamError, NotFound
from ipamd.manifests import yaml_problem

SOURCES = ("kube-ovn", "whereabouts", "host-local")
HOST_LOCAL_DIR = "/var/lib/cni/networks"

# Collection paths of the objects each source reads; kinds name them in saved files.
PATHS = {
    "Pod": "/api/v1/pods",
    "NetworkAttachmentDefinition": "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
    "IPPool": "/apis/whereabouts.cni.cncf.io/v1alpha1/ippools",
    "OverlappingRangeIPReservation": "/apis/whereabouts.cni.cncf.io/v1alpha1/overlappingrangeipreservations",
    "IP": "/apis/kubeovn.io/v1/ips",
}
NEEDS = {
    "kube-ovn": ("Pod", "IP"),
    "whereabouts": ("Pod", "NetworkAttachmentDefinition", "IPPool", "OverlappingRangeIPReservation"),
    "host-local": ("Pod", "NetworkAttachmentDefinition"),
}

JSON = dict[str, Any]


def gather_from_files(paths: list[str]) -> dict[str, list[JSON]]:
    """Returns the objects of saved ``kubectl get -o json|yaml`` output, by kind."""
    objects: dict[str, list[JSON]] = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise CtlError(f"cannot read {path}: {e.strerror or e}") from e
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise CtlError(f"{path} is neither JSON nor YAML: {yaml_problem(e)}") from e
        for document in documents:
            for item in _items(document):
                kind = item.get("kind")
                if isinstance(kind, str):
                    objects.setdefault(kind, []).append(item)
    return objects


def _items(document: object) -> list[JSON]:
    if not isinstance(document, dict):
        return []
    if isinstance(document.get("items"), list):
        kind = str(document.get("kind") or "")
        # A typed list (PodList) leaves kind off its items.
        item_kind = kind[:-4] if kind.endswith("List") and kind != "List" else None
        return [
            ({"kind": item_kind, **item} if item_kind and "kind" not in item else item)
            for item in document["items"]
            if isinstance(item, dict)
        ]
    return [document]


def gather_from_cluster(kubeconfig: str | None, kinds: tuple[str, ...]) -> tuple[dict[str, list[JSON]], list[str]]:
    """Lists the objects of ``kinds`` from the API server; missing CRDs are noted, not fatal."""
    from ipamd.k8s.client import KubeClient

    async def run() -> tuple[dict[str, list[JSON]], list[str]]:
        client = await KubeClient.connect(kubeconfig)
        found: dict[str, list[JSON]] = {}
        notes: list[str] = []
        try:
            for kind in kinds:
                try:
                    items, _ = await client.list_all(PATHS[kind])
                except NotFound:
                    notes.append(f"{kind} objects: the API server does not serve {PATHS[kind]} (CRD not installed)")
                    items = []
                found[kind] = items
        finally:
            await client.close()
        return found, notes

    try:
        return asyncio.run(run())
    except IpamError as e:
        raise CtlError(f"reading the cluster: {e.message}") from e


def read_host_local(data_dir: str) -> dict[str, dict[str, str]]:
    """Returns host-local's leases: network name -> file name -> content."""
    root = Path(data_dir)
    if not root.is_dir():
        raise CtlError(f"{data_dir} is not a directory (host-local's dataDir, default {HOST_LOCAL_DIR})")
    data: dict[str, dict[str, str]] = {}
    for network in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {}
        for lease in network.iterdir():
            if lease.is_file():
                try:
                    files[lease.name] = lease.read_text(encoding="utf-8", errors="replace")
                except OSError as e:
                    raise CtlError(f"cannot read {lease}: {e.strerror or e}") from e
        data[network.name] = files
    return data


def read_cni_configs(paths: list[str]) -> dict[str, Mapping[str, Any]]:
    """Returns network name -> ipam section of CNI config files (.conf or .conflist)."""
    configs: dict[str, Mapping[str, Any]] = {}
    for path in paths:
        try:
            parsed = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise CtlError(f"cannot read {path}: {e.strerror or e}") from e
        except ValueError as e:
            raise CtlError(f"{path} is not a JSON CNI config: {e}") from e
        found = adopt.config_ipam(parsed)
        if found is None:
            raise CtlError(f"{path}: no network name or no ipam section")
        configs[found[0]] = found[1]
    return configs


def plan_for(
    source: str, objects: Mapping[str, list[JSON]], *, data_dir: str, cni_configs: Mapping[str, Mapping[str, Any]]
) -> adopt.Plan:
    pods = objects.get("Pod", [])
    if source == "kube-ovn":
        return adopt.kube_ovn(pods, objects.get("IP", []))
    nads = objects.get("NetworkAttachmentDefinition", [])
    if source == "whereabouts":
        return adopt.whereabouts(
            objects.get("IPPool", []), objects.get("OverlappingRangeIPReservation", []), nads, pods
        )
    configs: dict[str, Mapping[str, Any]] = {}
    for nad in nads:
        found = adopt.nad_ipam(nad)
        if found is not None:
            configs.setdefault(found[0], found[1])
    configs.update(cni_configs)
    return adopt.host_local(read_host_local(data_dir), configs, pods, data_dir=data_dir)


def run_import(client: Client, args: Any, say: Callable[[str], None], warn: Callable[[str], None]) -> int:
    """Adopts what the source recorded; returns the number of conflicts and failures."""
    if args.from_file:
        objects = gather_from_files(args.from_file)
    elif args.source == "host-local" and not args.kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        objects = {}
        warn("ipamctl: no --kubeconfig: host-local leases are adopted by container id, not by pod")
    else:
        objects, notes = gather_from_cluster(args.kubeconfig, NEEDS[args.source])
        for note in notes:
            warn(f"ipamctl: {note}")
    plan = plan_for(args.source, objects, data_dir=args.data_dir, cni_configs=read_cni_configs(args.cni_config or []))
    problems = 0
    for skipped in plan.skipped:
        say(f"skipped   {skipped.source}: {skipped.reason}")
    for adoption in plan.adoptions:
        suffix = "".join(f" [{note}]" for note in adoption.notes)
        if args.dry_run:
            say(f"would adopt {adoption.label}{suffix}")
            continue
        try:
            result = client.post("/v1/cni/adopt", adoption.cni_add())
        except CtlError as e:
            if e.status is None or e.status >= 500 or e.code == "unavailable":
                raise
            problems += 1
            kind = "conflict " if e.code == "address_conflict" else "failed   "
            say(f"{kind} {adoption.label}: {e.message}")
            continue
        held = ",".join(ip["address"] for ip in result.get("ips") or [])
        say(
            f"adopted   {adoption.label} as allocation {result.get('allocationId')} ({held}) in subnet {result.get('subnet')}{suffix}"
        )
    verb = "would adopt" if args.dry_run else "adopted"
    say(f"{verb} {len(plan.adoptions) - problems}, conflicts or failures {problems}, skipped {len(plan.skipped)}")
    return problems
