"""ipamd.lifecycle: what the daemon starts stops in the reverse order, and a stop that fails
is logged by name while the others still stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ipamd.lifecycle import Lifetime, cancel

log = logging.getLogger("tests.lifecycle")


def test_stops_run_newest_first_and_a_failing_stop_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    stopped: list[str] = []

    async def stop_engine() -> None:
        stopped.append("engine")

    def stop_socket() -> None:
        stopped.append("socket")

    async def broken() -> None:
        stopped.append("reloader")
        raise RuntimeError("reloader would not stop")

    async def run() -> None:
        async with Lifetime(log) as lifetime:
            lifetime.on_stop("the socket", stop_socket)
            lifetime.on_stop("the engine", stop_engine)
            lifetime.on_stop("the reloader", broken)

    with caplog.at_level(logging.ERROR, logger="tests.lifecycle"):
        asyncio.run(run())
    assert stopped == ["reloader", "engine", "socket"]
    (record,) = caplog.records
    assert record.getMessage() == "stopping the reloader failed"
    assert record.exc_info is not None and "would not stop" in str(record.exc_info[1])


def test_a_start_that_fails_stops_what_started_and_raises() -> None:
    stopped: list[str] = []

    async def run() -> None:
        async with Lifetime(log) as lifetime:
            lifetime.on_stop("the socket", lambda: stopped.append("socket"))
            raise ValueError("cannot listen")

    with pytest.raises(ValueError, match="cannot listen"):
        asyncio.run(run())
    assert stopped == ["socket"]


def test_tasks_are_cancelled_and_awaited_but_a_finished_one_is_left_to_its_owner() -> None:
    async def run() -> tuple[bool, BaseException | None]:
        forever = asyncio.create_task(asyncio.Event().wait(), name="watch")

        async def fail() -> None:
            raise LookupError("refused")

        failed = asyncio.create_task(fail(), name="registration")
        await asyncio.wait({failed})
        async with Lifetime(log) as lifetime:
            lifetime.task(forever)
            lifetime.task(failed)
        await cancel(failed)  # done: nothing raised here
        return forever.cancelled(), failed.exception()

    cancelled, error = asyncio.run(run())
    assert cancelled
    assert isinstance(error, LookupError)
