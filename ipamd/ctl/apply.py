"""``ipamctl apply``: make the daemon hold what the manifests say, idempotently.

Subnets are created, or patched with the whole declared spec when they differ; pools and
reservations cannot be edited in the API, so a changed one is deleted and created again.
Applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ipamd.core.addresses import ip_text
from ipamd.core.placement import RULE_FIELDS
from ipamd.core.pool import canonical_pool, canonical_reservation
from ipamd.core.sanity import force_of
from ipamd.core.subnet import SubnetSpec, canonical_subnet, requested_subnet
from ipamd.ctl.client import Client, CtlError, segment
from ipamd.errors import InvalidInput
from ipamd.manifests import Manifest

SUBNET_SPEC_KEYS = ("name", "cidrBlock", "gateway", "excludeIps", "provider", "priority", "routes", "dns")


def apply_all(
    client: Client, manifests: list[Manifest], *, say: Callable[[str], None], warn: Callable[[str], None]
) -> int:
    """Applies each manifest in order; returns how many failed (each failure is reported, the rest still applied)."""
    failures = 0
    for manifest in manifests:
        for warning in manifest.warnings:
            warn(f"warning: {warning}")
        try:
            action = APPLIERS[manifest.kind](client, manifest, warn)
        except (InvalidInput, CtlError) as e:
            warn(f"error: {manifest.ref} ({manifest.where}): {e.message}")
            failures += 1
        else:
            say(f"{manifest.ref} {action}")
    return failures


def _spec_of(subnet: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields of a subnet as the API shows it; placement rules only when set, as
    ``SubnetSpec.to_json`` writes them."""
    return {
        **{key: subnet.get(key) for key in SUBNET_SPEC_KEYS},
        **{key: subnet[key] for key in RULE_FIELDS if subnet.get(key) is not None},
    }


def _subnet_spec(client: Client, name: object) -> SubnetSpec:
    """Returns the canonical spec of an existing subnet (pools and reservations are checked against it)."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("required: the name of the subnet", field="subnet")
    subnet = client.find(f"/v1/subnets/{segment(name)}")
    if subnet is None:
        raise CtlError(f"subnet {name} not found; apply it first (subnets in the same file are applied first)")
    return canonical_subnet(_spec_of(subnet))


def _warn_managed(current: Mapping[str, Any], manifest: Manifest, warn: Callable[[str], None]) -> None:
    if current.get("origin") == "config":
        warn(f"warning: {manifest.ref} is declared in the daemon's --config file; its next reload undoes this change")
    elif current.get("origin") == "inline":
        warn(
            f"warning: {manifest.ref} was created from a NAD's inline range; attachments of that NAD may no longer match it"
        )


def apply_subnet(client: Client, manifest: Manifest, warn: Callable[[str], None]) -> str:
    desired = requested_subnet(manifest.body).to_json()
    # force (ipamd.core.sanity) goes with the request, never into the spec compared below.
    request = {**desired, "force": True} if force_of(manifest.body) else desired
    current = client.find(f"/v1/subnets/{segment(manifest.name)}")
    if current is None:
        client.post("/v1/subnets", request)
        return "created"
    if _spec_of(current) == desired:
        return "unchanged"
    _warn_managed(current, manifest, warn)
    # The whole spec, not a diff: a field left out of the manifest returns to its default
    # (a rule left out is dropped: PATCH keeps what it is not told to change).
    client.patch(f"/v1/subnets/{segment(manifest.name)}", {**{key: None for key in RULE_FIELDS}, **request})
    return "configured"


def apply_pool(client: Client, manifest: Manifest, warn: Callable[[str], None]) -> str:
    spec = canonical_pool(manifest.body, subnet=_subnet_spec(client, manifest.body.get("subnet")))
    desired = spec.to_json()
    current = client.find(f"/v1/pools/{segment(manifest.name)}")
    if current is None:
        client.post("/v1/pools", desired)
        return "created"
    if {
        key: current[key] for key in ("name", "subnet", "ips", *RULE_FIELDS) if current.get(key) is not None
    } == desired:
        return "unchanged"
    _warn_managed(current, manifest, warn)
    if int(current.get("usage", {}).get("used", 0)):
        warn(
            f"warning: {manifest.ref} has {current['usage']['used']} member(s) allocated; they keep their addresses but leave the pool"
        )
    client.put(f"/v1/pools/{segment(manifest.name)}", desired)
    return "configured"


def apply_reservation(client: Client, manifest: Manifest, warn: Callable[[str], None]) -> str:
    spec = canonical_reservation(manifest.body, subnet=_subnet_spec(client, manifest.body.get("subnet")))
    address = ip_text(spec.address, spec.version)
    desired = {"subnet": spec.subnet, "address": address, "mac": spec.mac, "owner": spec.owner, "note": spec.note}
    current = next(
        (r for r in client.get("/v1/reservations")["items"] if r["subnet"] == spec.subnet and r["address"] == address),
        None,
    )
    if current is None:
        client.post("/v1/reservations", desired)
        return "created"
    if all(current.get(key) == desired[key] for key in ("mac", "owner", "note")):
        return "unchanged"
    _warn_managed(current, manifest, warn)
    client.delete(f"/v1/reservations/{current['id']}")
    client.post("/v1/reservations", desired)
    return "configured (replaced)"


APPLIERS: dict[str, Callable[[Client, Manifest, Callable[[str], None]], str]] = {
    "subnet": apply_subnet,
    "pool": apply_pool,
    "reservation": apply_reservation,
}
