"""Declarative configuration: ``ipamd serve --config FILE`` (format in docs/cli.md).

The file lists subnets, pools and reservations, and may set ``history.retention`` (used
when ``--history-retention`` is not given). At start-up and on SIGHUP the daemon makes
the objects it created from the file (``origin: config``) equal to the file: missing ones
are created, changed subnets and reservations updated in place, changed pools replaced, removed
ones deleted unless they still have live allocations (then kept, and said so in the log).
Objects created over the API or from a NAD are never touched, even when the file names them.
What to change, and in which order, is ipamd.core.converge's plan; the file's text is
parsed by ipamd.manifests.

I/O: reads the file; changes state only through ``Ipam``'s public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ipamd import retention
from ipamd.config import Settings
from ipamd.core.converge import Action, Change, Declared, Existing, Kind, Why, plan
from ipamd.core.history import format_duration
from ipamd.errors import AlreadyExists, InUse, InvalidInput, IpamError, NotFound
from ipamd.manifests import DesiredState, parse_config_text
from ipamd.service import Ipam

log = logging.getLogger("ipamd.config")

ORIGIN = "config"


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


class Applier:
    """Makes the daemon's ``origin: config`` objects match the desired state: carries out
    ipamd.core.converge's plan through the service, logging one line per object."""

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
        current = [
            *(Existing.subnet(subnet) for subnet in await self.ipam.list_subnets()),
            *(Existing.pool(pool) for pool in await self.ipam.list_pools()),
            *(Existing.reservation(reservation) for reservation in await self.ipam.list_reservations()),
        ]
        for change in plan(desired.objects, current, owner=ORIGIN):
            if change.action is Action.KEEP:
                self._kept(self._why_kept(change))
            elif change.action is Action.DELETE:
                await self._delete(change)
            else:
                await self._converge(change)
        return self.report

    def _why_kept(self, change: Change) -> str:
        label = _label(change)
        assert change.current is not None
        if change.why is Why.FOREIGN:
            return f"{label} exists with origin {change.current.origin}; the declaration in {self.source} is ignored"
        held = "live allocation(s)" if change.kind is Kind.SUBNET else "address(es) allocated"
        return (
            f"{label} is no longer in {self.source} but has {change.current.in_use} {held}; "
            "kept until they are released"
        )

    async def _delete(self, change: Change) -> None:
        label = _label(change)
        assert change.current is not None
        try:
            if change.kind is Kind.SUBNET:
                await self.ipam.delete_subnet(change.key)
            elif change.kind is Kind.POOL:
                await self.ipam.delete_pool(change.key)
            else:
                assert change.current.id is not None
                await self.ipam.delete_reservation(change.current.id)
        except InUse as e:
            if change.kind is not Kind.SUBNET:
                self._failed(f"deleting {label}", e)
                return
            # Allocated from since the plan read it.
            self._kept(f"{label} is no longer in {self.source} but is in use ({e.message}); kept")
        except NotFound:
            pass
        except IpamError as e:
            self._failed(f"deleting {label}", e)
        else:
            self._changed(f"{label} deleted (no longer in {self.source})")

    async def _converge(self, change: Change) -> None:
        label = _label(change)
        desired = change.desired
        assert desired is not None
        try:
            if change.action is Action.CREATE:
                try:
                    await self._create(desired)
                except AlreadyExists:
                    # Another daemon on the same database may have applied the same file first.
                    if not await self._made_by_a_peer(desired):
                        raise
                    return
                self._changed(f"{label} created")
            elif change.action is Action.PATCH:
                await self.ipam.patch_subnet(change.key, desired.patch())
                self._changed(f"{label} updated")
            elif change.action is Action.REPLACE:
                await self.ipam.replace_pool(change.key, desired.request(), origin=ORIGIN)
                self._changed(f"{label} replaced")
            else:
                assert change.action is Action.REWRITE and change.current is not None
                assert change.current.id is not None
                # Only its MAC, owner or note changed (the address names it): edited in place,
                # in one transaction, so the address is never free for an ADD meanwhile and a
                # reload cancelled here never leaves it missing.
                await self.ipam.replace_reservation(change.current.id, desired.request())
                self._changed(f"{label} updated")
        except IpamError as e:
            self._failed(label, e)

    async def _create(self, desired: Declared) -> None:
        if desired.kind is Kind.SUBNET:
            await self.ipam.create_subnet(desired.request(), origin=ORIGIN)
        elif desired.kind is Kind.POOL:
            await self.ipam.create_pool(desired.request(), origin=ORIGIN)
        else:
            await self.ipam.create_reservation(desired.request(), origin=ORIGIN)

    async def _made_by_a_peer(self, desired: Declared) -> bool:
        """Returns whether the object a create collided with is this file's, as declared."""
        try:
            if desired.kind is Kind.SUBNET:
                held = Existing.subnet(await self.ipam.get_subnet(desired.key))
            elif desired.kind is Kind.POOL:
                held = Existing.pool(await self.ipam.get_pool(desired.key))
            else:
                held = await self._reservation_at(desired)
        except NotFound:
            # The collision was with something else (an overlapping CIDR, say): report that.
            return False
        return held.origin == ORIGIN and held.spec == desired.spec

    async def _reservation_at(self, desired: Declared) -> Existing:
        for reservation in await self.ipam.list_reservations():
            held = Existing.reservation(reservation)
            if held.key == desired.key:
                return held
        raise NotFound(f"no reservation of {desired.spec['address']} in subnet {desired.spec['subnet']}")


def _label(change: Change) -> str:
    """Names the object of a change in the log: ``subnet lab``, ``reservation of 192.0.2.7 in subnet lab``."""
    if change.kind is not Kind.RESERVATION:
        return f"{change.kind} {change.key}"
    object_ = change.desired or change.current
    assert object_ is not None
    return f"reservation of {object_.spec['address']} in subnet {object_.spec['subnet']}"


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
