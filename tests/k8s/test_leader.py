"""Leader election on the API double, in process: one holder at a time, hand-over on release."""

from __future__ import annotations

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
