"""``ipamctl apply``: make the daemon hold what the manifests say, idempotently.

Each manifest in turn is compared with what the daemon holds under its name, and
ipamd.core.converge's plan says what to do: subnets are created, or patched with the whole
declared spec when they differ; a changed pool is replaced in one request; a changed
reservation (its MAC, owner or note: its subnet and address name it) is rewritten in place
in one request, ``PUT /v1/reservations/{id}``, so its address is reserved throughout and an
apply interrupted anywhere never leaves it missing. Nothing is deleted for being left out.
Applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipamd.core.addresses import ip_text
from ipamd.core.converge import Action, Declared, Existing, Kind, key_of, plan, spec_of
from ipamd.core.pool import canonical_pool, canonical_reservation
from ipamd.core.sanity import force_of
from ipamd.core.subnet import SubnetSpec, canonical_subnet, requested_subnet
from ipamd.ctl.client import Client, CtlError, segment
from ipamd.errors import InvalidInput
from ipamd.manifests import Manifest


def apply_all(
    client: Client, manifests: list[Manifest], *, say: Callable[[str], None], warn: Callable[[str], None]
) -> int:
    """Applies each manifest in order; returns how many failed (each failure is reported, the rest still applied)."""
    failures = 0
    for manifest in manifests:
        for warning in manifest.warnings:
            warn(f"warning: {warning}")
        try:
            action = apply_one(client, manifest, warn)
        except (InvalidInput, CtlError) as e:
            warn(f"error: {manifest.ref} ({manifest.where}): {e.message}")
            failures += 1
        else:
            say(f"{manifest.ref} {action}")
    return failures


def apply_one(client: Client, manifest: Manifest, warn: Callable[[str], None]) -> str:
    """Applies one manifest; returns what happened, as kubectl says it."""
    desired = _declared(client, manifest)
    current = _held(client, desired)
    changes = plan([desired], [] if current is None else [Existing.of(desired.kind, current)])
    if not changes:
        return "unchanged"
    [change] = changes
    if change.action is Action.CREATE:
        client.post(f"/v1/{desired.kind}s", desired.request())
        return "created"
    assert change.current is not None
    _warn_managed(change.current, manifest, warn)
    if change.action is Action.PATCH:
        client.patch(f"/v1/subnets/{segment(desired.key)}", desired.patch())
        return "configured"
    if change.action is Action.REPLACE:
        if change.current.in_use:
            warn(
                f"warning: {manifest.ref} has {change.current.in_use} member(s) allocated; "
                "they keep their addresses but leave the pool"
            )
        client.put(f"/v1/pools/{segment(desired.key)}", desired.request())
        return "configured"
    assert change.action is Action.REWRITE and change.current.id is not None
    # The plan pairs a declaration with the reservation of the same subnet and address (its
    # key): only the MAC, owner or note differ, and one PUT rewrites them in one transaction.
    # A DELETE then a POST would free the address between the two, for a static ADD, a pool
    # member or the released queue to take, and an apply interrupted there would leave it gone.
    client.put(f"/v1/reservations/{change.current.id}", desired.request())
    return "configured"


def _declared(client: Client, manifest: Manifest) -> Declared:
    """Returns what the manifest declares, in the API's canonical form. Pools and
    reservations are checked against their subnet as the daemon holds it."""
    if manifest.kind == Kind.SUBNET:
        return Declared.of(Kind.SUBNET, requested_subnet(manifest.body).to_json(), force=force_of(manifest.body))
    subnet = _subnet_spec(client, manifest.body.get("subnet"))
    if manifest.kind == Kind.POOL:
        return Declared.of(Kind.POOL, canonical_pool(manifest.body, subnet=subnet).to_json())
    spec = canonical_reservation(manifest.body, subnet=subnet)
    address = ip_text(spec.address, spec.version)
    return Declared.of(
        Kind.RESERVATION,
        {"subnet": spec.subnet, "address": address, "mac": spec.mac, "owner": spec.owner, "note": spec.note},
    )


def _held(client: Client, desired: Declared) -> dict[str, Any] | None:
    """Returns the object the daemon holds under the declared one's name, if any."""
    if desired.kind is not Kind.RESERVATION:
        found: dict[str, Any] | None = client.find(f"/v1/{desired.kind}s/{segment(desired.key)}")
        return found
    return next(
        (
            reservation
            for reservation in client.get("/v1/reservations")["items"]
            if key_of(Kind.RESERVATION, reservation) == desired.key
        ),
        None,
    )


def _subnet_spec(client: Client, name: object) -> SubnetSpec:
    """Returns the canonical spec of an existing subnet (pools and reservations are checked against it)."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("required: the name of the subnet", field="subnet")
    subnet = client.find(f"/v1/subnets/{segment(name)}")
    if subnet is None:
        raise CtlError(f"subnet {name} not found; apply it first (subnets in the same file are applied first)")
    return canonical_subnet(spec_of(Kind.SUBNET, subnet))


def _warn_managed(current: Existing, manifest: Manifest, warn: Callable[[str], None]) -> None:
    if current.origin == "config" and manifest.kind in ("subnet", "reservation"):
        # A subnet's PATCH and a reservation's PUT keep its origin, so the file still owns it.
        warn(f"warning: {manifest.ref} is declared in the daemon's --config file; its next reload undoes this change")
    elif current.origin == "config":
        # A pool's PUT makes the pool the API's.
        warn(
            f"warning: {manifest.ref} was declared in the daemon's --config file; it is now the API's,"
            " and reloads of the file leave it as it is"
        )
    elif current.origin == "inline":
        warn(
            f"warning: {manifest.ref} was created from a NAD's inline range; attachments of that NAD may no longer match it"
        )
