"""Long-lived tasks of Kubernetes mode survive what they did not foresee."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ipamd.k8s.runtime import guarded
from tests.support.waiting import async_wait_for


async def test_a_crash_or_an_exit_is_logged_and_restarted(caplog: pytest.LogCaptureFixture):
    runs = 0
    forever = asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        if runs == 2:
            return
        await forever.wait()

    caplog.set_level(logging.INFO, logger="ipamd.k8s")
    task = asyncio.create_task(guarded("pod watch", body, first_delay=0.001))
    await async_wait_for(lambda: runs >= 3, timeout=5, interval=0.001, what="the third run")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    messages = [r.getMessage() for r in caplog.records if r.name == "ipamd.k8s"]
    assert messages == ["pod watch crashed; restarting it", "pod watch stopped unexpectedly; restarting it"]
