"""Parsing and formatting of addresses, CIDRs and address-set entries.

An address-set entry is what users write in ``excludeIps``, pool ``ips`` and Whereabouts
``exclude``: a single address, an ``a..b`` range (Kube-OVN's form) or a CIDR.
"""

from __future__ import annotations

from collections.abc import Iterable

import netaddr

from ipamd.core.intervals import Interval, normalize
from ipamd.errors import InvalidInput


def parse_ip(text: object, *, field: str) -> netaddr.IPAddress:
    """Returns the address written in ``text``; raises InvalidInput naming ``field``."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"expected an IP address, got {text!r}", field=field)
    candidate = text.strip()
    if "/" in candidate:
        raise InvalidInput(f"expected an IP address without prefix length, got {candidate!r}", field=field)
    try:
        # INET_PTON rejects shorthand such as "10.1" that inet_aton would accept.
        return netaddr.IPAddress(candidate, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError) as e:
        raise InvalidInput(f"{candidate!r} is not a valid IP address", field=field) from e


def parse_cidr(text: object, *, field: str) -> netaddr.IPNetwork:
    """Returns the network written in ``text``; host bits must be zero."""
    if not isinstance(text, str) or "/" not in text:
        raise InvalidInput(f"expected a CIDR such as 192.0.2.0/24, got {text!r}", field=field)
    address_text, _, prefix_text = text.strip().partition("/")
    address = parse_ip(address_text, field=field)
    max_prefix = 32 if address.version == 4 else 128
    if not (prefix_text.isascii() and prefix_text.isdigit()) or not 0 <= int(prefix_text) <= max_prefix:
        raise InvalidInput(f"{text!r} has an invalid prefix length", field=field)
    network = netaddr.IPNetwork(f"{address}/{prefix_text}")
    if network.ip != network.network:
        raise InvalidInput(f"{text!r} has host bits set; did you mean {network.cidr}?", field=field)
    return network


def parse_entry(text: object, *, field: str) -> tuple[int, Interval]:
    """Returns ``(ip_version, interval)`` for one address-set entry."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"expected an address, a..b range or CIDR, got {text!r}", field=field)
    entry = text.strip()
    if ".." in entry:
        first_text, _, last_text = entry.partition("..")
        first = parse_ip(first_text, field=field)
        last = parse_ip(last_text, field=field)
        if first.version != last.version:
            raise InvalidInput(f"range {entry!r} mixes IPv4 and IPv6", field=field)
        if int(first) > int(last):
            raise InvalidInput(f"range {entry!r} ends before it starts", field=field)
        return first.version, (int(first), int(last))
    if "/" in entry:
        address_text, _, prefix_text = entry.partition("/")
        # Exclusions written with host bits (192.0.2.5/30) mean the enclosing block.
        address = parse_ip(address_text, field=field)
        max_prefix = 32 if address.version == 4 else 128
        if not (prefix_text.isascii() and prefix_text.isdigit()) or not 0 <= int(prefix_text) <= max_prefix:
            raise InvalidInput(f"{entry!r} has an invalid prefix length", field=field)
        network = netaddr.IPNetwork(f"{address}/{prefix_text}")
        return address.version, (int(network.first), int(network.last))
    address = parse_ip(entry, field=field)
    return address.version, (int(address), int(address))


def parse_entries(entries: object, *, field: str, version: int, within: Interval | None = None) -> list[Interval]:
    """Returns the ``version`` intervals of a list of entries, clipped to ``within``.

    Entries of the other IP version are skipped: a dual-stack subnet keeps both families'
    exclusions in one list.
    """
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidInput("expected a list of addresses, a..b ranges or CIDRs", field=field)
    intervals: list[Interval] = []
    for index, entry in enumerate(entries):
        entry_version, (first, last) = parse_entry(entry, field=f"{field}[{index}]")
        if entry_version != version:
            continue
        if within is not None:
            first, last = max(first, within[0]), min(last, within[1])
            if first > last:
                continue
        intervals.append((first, last))
    return normalize(intervals)


def ip_text(value: int, version: int) -> str:
    """Returns the textual form of an integer address."""
    return str(netaddr.IPAddress(value, version))


def format_intervals(intervals: Iterable[Interval], version: int) -> list[str]:
    """Returns intervals as ``a-b`` strings (single addresses stand alone)."""
    return [
        ip_text(first, version) if first == last else f"{ip_text(first, version)}-{ip_text(last, version)}"
        for first, last in intervals
    ]
