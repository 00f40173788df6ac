"""The service's typed results (ipamd.core.model) in tests: read in assertions, or made up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ipamd.core.addresses import ip_text
from ipamd.core.allocation import Owner
from ipamd.core.intervals import Interval
from ipamd.core.model import Allocation, FamilyUsage, HeldAddress, Pool, Subnet


def family_usage(subnet: Subnet, family: int) -> FamilyUsage:
    """The usage of one family of ``subnet``; fails the test if the subnet lacks it."""
    found = [usage for usage in subnet.usage if usage.family == family]
    assert len(found) == 1, (family, subnet.usage)
    return found[0]


def addresses_in(intervals: Iterable[Interval], family: int) -> set[str]:
    """Every address of ``intervals`` as text (keep them small)."""
    return {ip_text(value, family) for first, last in intervals for value in range(first, last + 1)}


def pool_free(pool: Pool, family: int | None = None) -> set[str]:
    """The pool's free members as text: of one family, or of every family."""
    return {
        text
        for member_family, free in pool.free
        if family is None or member_family == family
        for text in addresses_in(free, member_family)
    }


def allocation_of(*addresses: HeldAddress, **fields: Any) -> Allocation:
    """An allocation as the service returns one, made by a CNI ADD for pod default/web-0 of
    network macvlan.default; ``fields`` change it."""
    made_by_cni = Allocation(
        id=1,
        subnet="net1",
        cluster="default",
        owner=Owner("macvlan.default", "default", "web-0", "net1"),
        container_id="sandbox",
        pod_uid=None,
        addresses=addresses,
        mac=None,
        pool=None,
        node=None,
        hold=None,
        origin="cni",
        routes=(),
        dns={},
        created_at=None,
    )
    return replace(made_by_cni, **fields)
