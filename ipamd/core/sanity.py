"""Subnet sanity: the CIDRs no attachment network is meant to cover.

A new or changed CIDR is refused, the error naming the rule it breaks, when:

- ``minimum-prefix``: its IPv4 prefix is shorter than /8, or its IPv6 prefix shorter than
  /16. ``0.0.0.0/0`` or ``::/0`` is a typo or a test, never a network of pods;
- ``loopback``, ``multicast``, ``unspecified``, ``limited-broadcast``: it overlaps address
  space that cannot be given to an interface (127.0.0.0/8 and ::1; 224.0.0.0/4 and
  ff00::/8; 0.0.0.0/8, IPv4's "this network", and ::; 255.255.255.255).

``force: true`` in the request (REST, the ``--config`` file, ``ipamctl apply``) overrides
every rule for someone who does mean it. An inline NAD range cannot say so: such a network
is created through the API and named by its provider. Stored subnets are never checked
again: a subnet made before these rules keeps working. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import netaddr
from netaddr.ip import IPV4_LOOPBACK, IPV4_MULTICAST, IPV6_LOOPBACK, IPV6_MULTICAST

from ipamd.errors import ImplausibleSubnet, InvalidInput

MINIMUM_PREFIX = {4: 8, 6: 16}
# In the order they are reported: "::/120" is the unspecified block before it holds ::1.
SPECIAL_PURPOSE: tuple[tuple[str, netaddr.IPNetwork], ...] = (
    ("unspecified", netaddr.IPNetwork("0.0.0.0/8")),
    ("unspecified", netaddr.IPNetwork("::/128")),
    ("loopback", IPV4_LOOPBACK),
    ("loopback", IPV6_LOOPBACK),
    ("multicast", IPV4_MULTICAST),
    ("multicast", IPV6_MULTICAST),
    ("limited-broadcast", netaddr.IPNetwork("255.255.255.255/32")),
)
FORCE_REMEDY = 'add "force": true to the request if this subnet is really meant'
INLINE_REMEDY = "an inline range cannot be forced: create the subnet through the API with force: true and name its provider in ipam.provider"


def broken_rule(network: netaddr.IPNetwork) -> tuple[str, str] | None:
    """Returns the rule ``network`` breaks and what is wrong with it, or None."""
    shortest = MINIMUM_PREFIX[network.version]
    if network.prefixlen < shortest:
        return "minimum-prefix", f"is shorter than /{shortest}, the shortest IPv{network.version} prefix of a subnet"
    for rule, space in SPECIAL_PURPOSE:
        if space.version == network.version and (space in network or network in space):
            return rule, f"overlaps {rule} space {space.cidr}"
    return None


def check(
    networks: Iterable[netaddr.IPNetwork], *, field: str, force: bool = False, remedy: str = FORCE_REMEDY
) -> None:
    """Raises ImplausibleSubnet for the first of ``networks`` that breaks a rule, unless ``force``."""
    if force:
        return
    for network in networks:
        broken = broken_rule(network)
        if broken is not None:
            rule, problem = broken
            raise ImplausibleSubnet(f"{network.cidr} {problem} (rule {rule}); {remedy}", field=field, rule=rule)


def force_of(raw: Mapping[str, Any]) -> bool:
    """Returns the request's ``force`` flag (absent: false)."""
    force = raw.get("force", False)
    if not isinstance(force, bool):
        raise InvalidInput(f"expected true or false, got {force!r}", field="force")
    return force
