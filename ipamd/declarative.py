"""Declarative configuration: ``ipamd serve --config FILE`` (format in docs/cli.md).

The file lists subnets, pools and reservations, and may set ``history.retention`` (used
when ``--history-retention`` is not given). At start-up and on SIGHUP the daemon makes
the objects it created from the file (``origin: config``) equal to the file: missing ones
are created, changed subnets patched, changed pools and reservations replaced, removed
ones deleted unless they still have live allocations (then kept, and said so in the log).
Objects created over the API or from a NAD are never touched, even when the file names them.

I/O: reads the file; changes state only through ``Ipam``'s public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ipamd import retention
from ipamd.config import Settings
from ipamd.core.history import format_duration
from ipamd.core.placement import RULE_FIELDS
from ipamd.errors import AlreadyExists, InUse, InvalidInput, IpamError, NotFound
from ipamd.manifests import DesiredState, parse_config_text
from ipamd.service import Ipam

log = logging.getLogger("ipamd.config")

ORIGIN = "config"
# The subnet fields the file owns; usage, origin and createdAt are the daemon's.
SUBNET_SPEC_KEYS = ("name", "cidrBlock", "gateway", "excludeIps", "provider", "priority", "routes", "dns")


@dataclass
class Report:
    """What one application of the file did, one line per object."""

    changes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load(path: str | Path) -> DesiredState:
    """Returns the desired state the file declares; raises InvalidInput naming the entry at fault."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}", field="config") from e
    return parse_config_text(text, source=str(path))


def _subnet_spec(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: body.get(key) for key in SUBNET_SPEC_KEYS}


def _live_allocations(subnet: Mapping[str, Any]) -> int:
    return sum(int(family.get("used", 0)) for family in subnet.get("usage", {}).values())


class Applier:
    """Makes the daemon's ``origin: config`` objects match the desired state."""

    def __init__(self, ipam: Ipam, source: str) -> None:
        self.ipam = ipam
        self.source = source
        self.report = Report()

    def _changed(self, line: str) -> None:
        self.report.changes.append(line)
        log.info("config: %s", line)

    def _kept(self, line: str) -> None:
        self.report.kept.append(line)
        log.warning("config: %s", line)

    def _failed(self, what: str, error: IpamError) -> None:
        line = f"{what}: {error.message}"
        self.report.errors.append(line)
        log.error("config: %s", line)

    async def apply(self, desired: DesiredState) -> Report:
        subnets = {body["name"]: body for body in await self.ipam.list_subnets()}
        pools = {body["name"]: body for body in await self.ipam.list_pools()}
        reservations = {(body["subnet"], body["address"]): body for body in await self.ipam.list_reservations()}

        # Removals first: a renamed subnet or pool may reuse the space of the old one.
        for key, body in reservations.items():
            if body["origin"] == ORIGIN and key not in desired.reservations:
                await self._delete_reservation(body)
        for name, body in pools.items():
            if body["origin"] == ORIGIN and name not in desired.pools:
                await self._remove_pool(body)
        for name, body in subnets.items():
            if body["origin"] == ORIGIN and name not in desired.subnets:
                await self._remove_subnet(body)

        for name, spec in desired.subnets.items():
            await self._converge_subnet(spec, subnets.get(name), force=name in desired.forced)
        for name, pool in desired.pools.items():
            await self._converge_pool(pool, pools.get(name))
        for key, reservation in desired.reservations.items():
            await self._converge_reservation(reservation, reservations.get(key))
        return self.report

    # ------------------------------------------------------------------ subnets

    async def _remove_subnet(self, body: Mapping[str, Any]) -> None:
        name = body["name"]
        live = _live_allocations(body)
        if live:
            self._kept(
                f"subnet {name} is no longer in {self.source} but has {live} live allocation(s); kept until they are released"
            )
            return
        try:
            await self.ipam.delete_subnet(name)
        except InUse as e:
            self._kept(f"subnet {name} is no longer in {self.source} but is in use ({e.message}); kept")
        except NotFound:
            pass
        except IpamError as e:
            self._failed(f"deleting subnet {name}", e)
        else:
            self._changed(f"subnet {name} deleted (no longer in {self.source})")

    async def _converge_subnet(self, spec: dict[str, Any], current: Mapping[str, Any] | None, *, force: bool) -> None:
        name = spec["name"]
        request = {**spec, "force": True} if force else spec
        try:
            if current is None:
                try:
                    await self.ipam.create_subnet(request, origin=ORIGIN)
                except AlreadyExists:
                    # Another daemon on the same database may have applied the same file first.
                    if not await _found(self.ipam.get_subnet(name), lambda found: _subnet_spec(found) == spec):
                        raise
                    return
                self._changed(f"subnet {name} created")
            elif current["origin"] != ORIGIN:
                self._kept(
                    f"subnet {name} exists with origin {current['origin']}; the declaration in {self.source} is ignored"
                )
            elif _subnet_spec(current) != spec:
                await self.ipam.patch_subnet(name, request)
                self._changed(f"subnet {name} updated")
        except IpamError as e:
            self._failed(f"subnet {name}", e)

    # ------------------------------------------------------------------ pools

    async def _remove_pool(self, body: Mapping[str, Any]) -> None:
        name = body["name"]
        used = int(body["usage"]["used"])
        if used:
            self._kept(
                f"pool {name} is no longer in {self.source} but has {used} address(es) allocated; kept until they are released"
            )
            return
        try:
            await self.ipam.delete_pool(name)
        except NotFound:
            pass
        except IpamError as e:
            self._failed(f"deleting pool {name}", e)
        else:
            self._changed(f"pool {name} deleted (no longer in {self.source})")

    async def _converge_pool(self, pool: dict[str, Any], current: Mapping[str, Any] | None) -> None:
        name = pool["name"]
        try:
            if current is None:
                try:
                    await self.ipam.create_pool(pool, origin=ORIGIN)
                except AlreadyExists:
                    if not await _found(self.ipam.get_pool(name), lambda found: _same_pool(found, pool)):
                        raise
                    return
                self._changed(f"pool {name} created")
            elif current["origin"] != ORIGIN:
                self._kept(
                    f"pool {name} exists with origin {current['origin']}; the declaration in {self.source} is ignored"
                )
            elif not _same_pool(current, pool):
                # One transaction: an ip_pool ADD never finds the pool missing. Held members
                # stay held (they are allocations, not pool state).
                await self.ipam.replace_pool(name, pool, origin=ORIGIN)
                self._changed(f"pool {name} replaced")
        except IpamError as e:
            self._failed(f"pool {name}", e)

    # ------------------------------------------------------------------ reservations

    async def _delete_reservation(self, body: Mapping[str, Any]) -> None:
        label = f"reservation of {body['address']} in subnet {body['subnet']}"
        try:
            await self.ipam.delete_reservation(body["id"])
        except NotFound:
            pass
        except IpamError as e:
            self._failed(f"deleting {label}", e)
        else:
            self._changed(f"{label} deleted (no longer in {self.source})")

    async def _converge_reservation(self, reservation: dict[str, Any], current: Mapping[str, Any] | None) -> None:
        label = f"reservation of {reservation['address']} in subnet {reservation['subnet']}"
        try:
            if current is None:
                try:
                    await self.ipam.create_reservation(reservation, origin=ORIGIN)
                except AlreadyExists:
                    if not await _found(
                        self._reservation_at(reservation), lambda found: _same_reservation(found, reservation)
                    ):
                        raise
                    return
                self._changed(f"{label} created")
            elif current["origin"] != ORIGIN:
                self._kept(
                    f"{label} exists with origin {current['origin']}; the declaration in {self.source} is ignored"
                )
            elif not _same_reservation(current, reservation):
                await self.ipam.delete_reservation(current["id"])
                await self.ipam.create_reservation(reservation, origin=ORIGIN)
                self._changed(f"{label} replaced")
        except IpamError as e:
            self._failed(label, e)

    async def _reservation_at(self, reservation: Mapping[str, Any]) -> dict[str, Any]:
        for body in await self.ipam.list_reservations():
            if (body["subnet"], body["address"]) == (reservation["subnet"], reservation["address"]):
                return body
        raise NotFound(f"no reservation of {reservation['address']} in subnet {reservation['subnet']}")


async def _found(lookup: Awaitable[dict[str, Any]], same: Callable[[dict[str, Any]], bool]) -> bool:
    """Returns whether the object a create collided with is this file's, as declared (created by a peer daemon)."""
    try:
        found = await lookup
    except NotFound:
        # The collision was with something else (an overlapping CIDR, say): report that.
        return False
    return bool(found["origin"] == ORIGIN and same(found))


def _same_reservation(current: Mapping[str, Any], reservation: Mapping[str, Any]) -> bool:
    return all(current.get(key) == reservation[key] for key in ("mac", "owner", "note"))


def _same_pool(current: Mapping[str, Any], pool: Mapping[str, Any]) -> bool:
    return all(current.get(key) == pool.get(key) for key in ("subnet", *RULE_FIELDS)) and list(current["ips"]) == list(
        pool["ips"]
    )


RetentionSetter = Callable[[float | None], None]


async def apply_file(ipam: Ipam, path: str, *, set_retention: RetentionSetter | None = None) -> Report:
    """Reads ``path`` and applies it; returns what changed. Raises InvalidInput for a bad file."""
    desired = load(path)
    if desired.cluster_name is not None and desired.cluster_name != ipam.cluster:
        # Every attachment this daemon holds carries its name: it changes only with a restart.
        raise InvalidInput(
            f"{path}: clusterName {desired.cluster_name}, but this daemon serves cluster {ipam.cluster}; "
            "a cluster name changes only with a restart",
            field="config",
        )
    if set_retention is not None:
        set_retention(desired.history_retention)
    report = await Applier(ipam, path).apply(desired)
    log.info(
        "config %s applied: %d change(s), %d kept, %d error(s)",
        path,
        len(report.changes),
        len(report.kept),
        len(report.errors),
    )
    return report


class Reloader:
    """Re-applies the file on SIGHUP, one application at a time; a bad file changes nothing."""

    def __init__(self, ipam: Ipam, path: str, *, set_retention: RetentionSetter | None = None) -> None:
        self.ipam = ipam
        self.path = path
        self.set_retention = set_retention
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    def on_sighup(self) -> None:
        log.info("SIGHUP: reloading %s", self.path)
        task = asyncio.get_running_loop().create_task(self.reload())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reload(self) -> None:
        async with self.lock:
            try:
                await apply_file(self.ipam, self.path, set_retention=self.set_retention)
            except IpamError as e:
                log.error("config %s not applied: %s", self.path, e.message)
            except Exception:
                # A reload must never take the daemon down; the traceback is for the developers.
                log.exception("config %s not applied: unexpected error", self.path)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def start_hook(ipam: Ipam, settings: Settings, app: web.Application) -> Callable[[], Awaitable[None]] | None:
    """Applies ``--config`` before the daemon serves and installs the SIGHUP handler.

    An unreadable or invalid file stops the start (better than serving without the
    declared subnets); on SIGHUP it only logs an error and keeps the running state.
    """
    loop = asyncio.get_running_loop()
    reloader: Reloader | None = None
    if settings.config_file is None:
        # SIGHUP's default action ends the process: a stray `kill -HUP` must not.
        loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP: no --config file; nothing to reload"))
    else:
        set_retention = _retention_setter(settings, app)
        await apply_file(ipam, settings.config_file, set_retention=set_retention)
        reloader = Reloader(ipam, settings.config_file, set_retention=set_retention)
        loop.add_signal_handler(signal.SIGHUP, reloader.on_sighup)

    async def stop() -> None:
        loop.remove_signal_handler(signal.SIGHUP)
        if reloader is not None:
            await reloader.stop()

    return stop


def _retention_setter(settings: Settings, app: web.Application) -> RetentionSetter | None:
    """Returns what hands the file's history.retention to the pruner: the flag wins over it."""
    pruner = app.get(retention.HISTORY_PRUNER)
    if pruner is None:
        return None

    def set_retention(seconds: float | None) -> None:
        if settings.history_retention is None:
            pruner.set_retention(retention.DEFAULT_RETENTION if seconds is None else seconds)
        elif seconds is not None and seconds != settings.history_retention:
            log.warning(
                "config: history.retention %s ignored: --history-retention %s is given",
                format_duration(seconds),
                format_duration(settings.history_retention),
            )

    return set_retention
