"""Leader election on the API double, in process: one holder at a time, hand-over on release."""

from __future__ import annotations

import time
from pathlib import Path

from ipamd.k8s.client import KubeClient
from ipamd.k8s.leader import LeaseElector
from tests.kube_double import KubeApiDouble


async def test_one_holder_at_a_time_and_hand_over(tmp_path: Path):
    async with KubeApiDouble() as api:
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            first = LeaseElector(client, namespace="kube-system", identity="n1", duration=30)
            second = LeaseElector(client, namespace="kube-system", identity="n2", duration=30)
            assert await first.try_acquire() is True
            first.leading = True
            assert await second.try_acquire() is False
            # Renewing is the same call; the holder keeps it, the other still waits.
            assert await first.try_acquire() is True
            assert await second.try_acquire() is False
            lease = api.get("leases", "ipamd-reconciler", "kube-system")
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == "n1"
            assert lease["spec"]["leaseDurationSeconds"] == 30

            await first.release()
            assert api.get("leases", "ipamd-reconciler", "kube-system")["spec"]["holderIdentity"] is None
            assert await second.try_acquire() is True
            lease = api.get("leases", "ipamd-reconciler", "kube-system")
            assert lease["spec"]["holderIdentity"] == "n2"
            assert lease["spec"]["leaseTransitions"] == 1

            # A restarted daemon on the holder's node takes its own Lease back at once.
            again = LeaseElector(client, namespace="kube-system", identity="n2", duration=30)
            assert await again.try_acquire() is True
        finally:
            await client.close()


async def test_an_expired_lease_is_taken_over(tmp_path: Path):
    async with KubeApiDouble() as api:
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            now = [1000.0]
            holder = LeaseElector(client, namespace="kube-system", identity="n1", duration=15)
            waiter = LeaseElector(client, namespace="kube-system", identity="n2", duration=15, clock=lambda: now[0])
            assert await holder.try_acquire() is True
            # The waiter first observes the record, then needs it unchanged for a whole duration.
            assert await waiter.try_acquire() is False
            now[0] += 14.9
            assert await waiter.try_acquire() is False
            now[0] += 0.2  # unchanged for longer than the lease duration: the holder is gone
            assert await waiter.try_acquire() is True
            assert await holder.try_acquire() is False
        finally:
            await client.close()


async def test_a_holder_that_cannot_renew_stops_leading_before_others_may_take_over(tmp_path: Path):
    """Others take over a lease duration after the last renewal by their own clocks, which
    start no earlier than the renewal was asked: the holder stops leading while its next
    attempt would come later than that."""
    async with KubeApiDouble() as api:
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            now = [1000.0]
            holder = LeaseElector(
                client, namespace="kube-system", identity="n1", duration=15, renew_every=5, clock=lambda: now[0]
            )
            assert await holder.attempt() == 5 and holder.leading
            api.inject_error("GET", "/leases/ipamd-reconciler", code=500, times=2)
            now[0] += 9.9  # the next attempt, 5 s on, still comes before 15 s
            await holder.attempt()
            assert holder.leading
            now[0] += 0.2  # it would come after: others may hold the Lease by then
            await holder.attempt()
            assert not holder.leading and holder.not_leading.is_set()
        finally:
            await client.close()


async def test_losing_the_lease_cancels_the_running_pass(tmp_path: Path):
    import asyncio

    from ipamd.k8s.reconciler import Reconciler

    started, cancelled = asyncio.Event(), asyncio.Event()

    class EndlessPass(Reconciler):
        """A pass that would run forever: only the loss of the Lease ends it."""

        async def reconcile_once(self):  # type: ignore[override]
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    async with KubeApiDouble() as api:
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        elector = LeaseElector(client, namespace="kube-system", identity="n1", duration=30, renew_every=0.05)
        reconciler = EndlessPass(None, client, elector, interval=600, grace=0)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(elector.run()), asyncio.create_task(reconciler.run())]
        try:
            await asyncio.wait_for(started.wait(), 10)

            def stolen(lease: dict) -> None:
                lease["spec"]["holderIdentity"] = "n2"
                lease["spec"]["renewTime"] = "2030-01-01T00:00:00.000000Z"

            api.update("leases", "ipamd-reconciler", stolen, namespace="kube-system")
            await asyncio.wait_for(cancelled.wait(), 10)
            assert reconciler.cancelled == 1
            assert not elector.leading
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()


async def test_non_holders_poll_at_the_lease_duration(tmp_path: Path):
    import asyncio

    async with KubeApiDouble() as api:
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        holder = LeaseElector(client, namespace="kube-system", identity="n1", duration=1, renew_every=0.05)
        waiter = LeaseElector(client, namespace="kube-system", identity="n2", duration=1, renew_every=0.05)
        assert await holder.try_acquire() is True
        task = asyncio.create_task(waiter.run())
        try:
            await asyncio.wait_for(waiter.decided.wait(), 10)
            # Keep the holder renewing while the waiter polls, for about three durations
            # (longer on a loaded machine: the bounds below follow the time it took).
            started = time.monotonic()
            for _ in range(60):
                await holder.try_acquire()
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            reads = [r for r in api.recorded("GET", "/leases/ipamd-reconciler")]
            waiter_reads = len(reads) - 61  # the holder read once per renewal
            # Its first read, then one every 1 to 1.2 durations; polling at renew_every would
            # have read about 60 times.
            assert int(elapsed / 1.2) <= waiter_reads <= int(elapsed) + 2, (waiter_reads, elapsed)
            assert not waiter.leading
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
