"""A reservation whose MAC, owner or note changed is edited in place, in one transaction, on
both databases: through ``Ipam.replace_reservation`` and through a ``--config`` reload
(ipamd.declarative). Its address is never free meanwhile, so a concurrent static ADD (or a
pool member, or the released-addresses queue) can never take the router's address, and the
row keeps its id, origin and creation time."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, cast

import pytest
import yaml

from ipamd.core import model
from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.declarative import Applier, Report
from ipamd.errors import AddressConflict, InvalidInput, NotFound
from ipamd.manifests import DesiredState, parse_config_text
from ipamd.service import AddRequest, Ipam

PROVIDER = "reservations.default"
NETWORK = NetworkRequest(PROVIDER, None)
SUBNET = {"name": "lab", "cidrBlock": "192.0.2.0/24", "gateway": "192.0.2.1", "provider": PROVIDER}
ROUTER = "192.0.2.254"
DECLARED: dict[str, Any] = {
    "subnet": "lab",
    "address": ROUTER,
    "mac": "02:00:00:00:00:fe",
    "owner": "infra/router-a",
    "note": "lab router",
}
SOURCE = "ipamd.yaml"


def declaring(**changes: object) -> DesiredState:
    """The ``--config`` file with the lab subnet and its router's reservation, edited by ``changes``."""
    text = yaml.safe_dump({"subnets": [SUBNET], "reservations": [{**DECLARED, **changes}]})
    return parse_config_text(text, source=SOURCE)


def static_add(namespace: str, pod: str) -> AddRequest:
    """A static-IP ADD of the router's address."""
    return AddRequest(
        owner=Owner(PROVIDER, namespace, pod, "net1"),
        network=NETWORK,
        container_id=f"c-{namespace}-{pod}",
        static_ips=(ROUTER,),
    )


async def apply(service: Ipam | Interleaved, desired: DesiredState) -> Report:
    return await Applier(cast(Ipam, service), SOURCE).apply(desired)


async def the_reservation(ipam: Ipam) -> model.Reservation:
    [reservation] = [r for r in await ipam.list_reservations() if r.address == ROUTER]
    return reservation


class Interleaved:
    """The service as the Applier sees it, with what a concurrent request could do in each
    gap between two of its calls: a static ADD of the reserved address by a pod the
    reservation does not admit, and a look at whether the address is still reserved."""

    def __init__(self, ipam: Ipam) -> None:
        self.ipam = ipam
        self.steps: list[str] = []
        self.taken: list[tuple[str, model.Allocation]] = []
        self.unreserved: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.ipam, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def step(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            self.steps.append(name)
            await self._intrude(after=name)
            return result

        return step

    async def _intrude(self, *, after: str) -> None:
        if not any(r.address == ROUTER for r in await self.ipam.list_reservations()):
            self.unreserved.append(after)
        try:
            taken = await self.ipam.allocate(static_add("default", f"intruder-{len(self.steps)}"))
        except AddressConflict:
            return
        self.taken.append((after, taken))


async def test_a_reload_never_leaves_the_address_free_between_its_steps(ipam: Ipam) -> None:
    assert not (await apply(ipam, declaring())).errors
    interleaved = Interleaved(ipam)

    report = await apply(interleaved, declaring(note="lab router, rack 2", owner="infra/router-b"))

    assert report.errors == []
    assert report.changes == [f"reservation of {ROUTER} in subnet lab updated"]
    # Before the fix: "delete_reservation" here, the intruder holding the router's address,
    # and the re-create refused with AddressConflict.
    assert interleaved.unreserved == []
    assert interleaved.taken == []
    reservation = await the_reservation(ipam)
    assert (reservation.note, reservation.owner) == ("lab router, rack 2", "infra/router-b")
    assert await ipam.list_allocations() == []


class Cancelled(Interleaved):
    """The service as the Applier sees it, the reload cancelled after its ``after_calls``-th
    call returns: what Reloader.stop does to a reload in flight (a cancellation at an await)."""

    def __init__(self, ipam: Ipam, *, after_calls: int) -> None:
        super().__init__(ipam)
        self.after_calls = after_calls

    async def _intrude(self, *, after: str) -> None:
        if len(self.steps) == self.after_calls:
            raise asyncio.CancelledError


async def test_a_reload_cancelled_after_any_step_leaves_the_reservation(ipam: Ipam) -> None:
    assert not (await apply(ipam, declaring())).errors
    edit = declaring(note="lab router, rack 2")
    # Cancelled right after its first call, then (the edit not made yet) its second, ...
    for after_calls in range(1, 10):
        with pytest.raises(asyncio.CancelledError):
            await apply(Cancelled(ipam, after_calls=after_calls), edit)
        # Reserved, with the old fields or the new ones: never missing.
        note = (await the_reservation(ipam)).note
        assert note in {"lab router", "lab router, rack 2"}
        if note == "lab router, rack 2":
            break
    else:
        pytest.fail("the reload never got to the edit")


async def test_an_edit_keeps_the_row_and_tells_no_release_or_allocation(ipam: Ipam) -> None:
    assert not (await apply(ipam, declaring())).errors
    before = await the_reservation(ipam)
    usage_before = (await ipam.get_subnet("lab")).usage
    events: list[model.Event] = []
    ipam.listeners.append(events.append)

    assert not (await apply(ipam, declaring(note="lab router, rack 2"))).errors

    after = await the_reservation(ipam)
    assert (after.id, after.created_at, after.origin) == (before.id, before.created_at, "config")
    assert after.note == "lab router, rack 2"
    assert events == []
    assert (await ipam.get_subnet("lab")).usage == usage_before


async def test_static_adds_concurrent_with_many_edits_never_take_the_address(ipam: Ipam) -> None:
    assert not (await apply(ipam, declaring())).errors
    done = asyncio.Event()
    taken: list[model.Allocation] = []
    reports: list[Report] = []

    async def edits() -> None:
        try:
            for revision in range(25):
                reports.append(await apply(ipam, declaring(note=f"lab router, revision {revision}")))
        finally:
            done.set()

    async def intruder(name: str) -> int:
        attempts = 0
        while not done.is_set():
            try:
                taken.append(await ipam.allocate(static_add("default", f"{name}-{attempts}")))
            except AddressConflict:
                pass
            attempts += 1
        return attempts

    _, *attempts = await asyncio.gather(edits(), intruder("a"), intruder("b"))

    assert all(attempts)
    assert taken == []
    assert [report.errors for report in reports] == [[]] * 25
    assert (await the_reservation(ipam)).note == "lab router, revision 24"


async def test_an_edit_of_a_reservation_its_owner_holds_keeps_the_holder(ipam: Ipam) -> None:
    """Deleting then creating again refused the create (the address is held): the reload
    failed and left the router's address unreserved."""
    assert not (await apply(ipam, declaring())).errors
    router = await ipam.allocate(static_add("infra", "router-a"))
    before = await the_reservation(ipam)

    report = await apply(ipam, declaring(note="lab router, rack 2"))

    assert report.errors == []
    after = await the_reservation(ipam)
    assert (after.id, after.note) == (before.id, "lab router, rack 2")
    assert (await ipam.get_allocation(router.id)).address_texts == [ROUTER]


async def test_replace_reservation_changes_the_fields(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    created = await ipam.create_reservation(DECLARED)

    edited = await ipam.replace_reservation(
        created.id, {**DECLARED, "mac": "02:00:00:00:01:fe", "owner": "infra/router-b", "note": "rack 2"}
    )

    assert edited == model.Reservation(
        id=created.id,
        subnet="lab",
        family=4,
        address=ROUTER,
        mac="02:00:00:00:01:fe",
        owner="infra/router-b",
        note="rack 2",
        origin="api",
        created_at=created.created_at,
    )
    assert await ipam.get_reservation(created.id) == edited
    # The new owner is admitted, with the new MAC; the old one no longer is.
    with pytest.raises(AddressConflict):
        await ipam.allocate(static_add("infra", "router-a"))
    held = await ipam.allocate(static_add("infra", "router-b"))
    assert (held.address_texts, held.mac) == ([ROUTER], "02:00:00:00:01:fe")


async def test_replace_reservation_takes_the_whole_body(ipam: Ipam) -> None:
    """A field left out becomes null; the subnet and address default to the reservation's."""
    await ipam.create_subnet(SUBNET)
    created = await ipam.create_reservation(DECLARED)

    edited = await ipam.replace_reservation(created.id, {"note": "spare"})

    assert (edited.address, edited.mac, edited.owner, edited.note) == (ROUTER, None, None, "spare")


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"address": "192.0.2.253"}, "address"), ({"subnet": "other"}, "subnet"), ({"mac": "not a mac"}, "mac")],
)
async def test_replace_reservation_refuses_another_identity_or_a_bad_field(
    ipam: Ipam, changes: dict[str, str], field: str
) -> None:
    await ipam.create_subnet(SUBNET)
    await ipam.create_subnet({"name": "other", "cidrBlock": "198.51.100.0/24", "provider": "other.default"})
    created = await ipam.create_reservation(DECLARED)

    with pytest.raises(InvalidInput) as refused:
        await ipam.replace_reservation(created.id, {**DECLARED, "note": "changed", **changes})

    assert refused.value.field == field
    assert await ipam.get_reservation(created.id) == created


async def test_replace_reservation_of_a_missing_one_is_not_found(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    created = await ipam.create_reservation(DECLARED)
    await ipam.delete_reservation(created.id)

    for missing in (created.id, created.id + 1000):
        with pytest.raises(NotFound):
            await ipam.replace_reservation(missing, DECLARED)
    assert await ipam.list_reservations() == []
