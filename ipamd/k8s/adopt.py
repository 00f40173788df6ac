"""``--adopt-annotations``: before a daemon serves its first ADD, the Kube-OVN result
annotations of the running pods on its node become allocations held by those pods, so a
migration with running pods never hands one of their addresses out again.

An address someone else holds is not overwritten: the pod gets a Warning Event
``AdoptAddressFailed`` naming the holder, and the daemon logs it.
"""

from __future__ import annotations

import asyncio
import logging

from ipamd.core import adopt
from ipamd.core.allocation import Owner
from ipamd.core.nad import parse_network_request
from ipamd.errors import IpamError, Unavailable
from ipamd.k8s import annotations as notes
from ipamd.k8s.client import KubeClient
from ipamd.k8s.events import EventRecorder
from ipamd.k8s.objects import uid_of
from ipamd.k8s.watch import Backoff
from ipamd.service import AddRequest, Ipam

log = logging.getLogger("ipamd.k8s.adopt")

ADOPT_FAILED = "AdoptAddressFailed"


async def adopt_node_annotations(
    ipam: Ipam, client: KubeClient, recorder: EventRecorder, *, node: str
) -> tuple[int, int]:
    """Adopts the annotated addresses of the node's running pods; returns (adopted, refused).

    Waits for the API server: serving ADDs before the node's live addresses are known is
    exactly what the flag exists to prevent.
    """
    backoff = Backoff(first=1.0, ceiling=30.0)
    while True:
        try:
            pods, _ = await client.list_all("/api/v1/pods", field_selector=f"spec.nodeName={node}")
            break
        except Unavailable as e:
            delay = backoff.next()
            log.warning(
                "adopting annotations: cannot list the pods of node %s (%s); retrying in %.0fs", node, e.message, delay
            )
            await asyncio.sleep(delay)
    by_ref = {adopt.pod_ref(pod): pod for pod in pods}
    plan = adopt.kube_ovn(pods)
    adopted = refused = 0
    for adoption in plan.adoptions:
        assert adoption.pod is not None
        pod = by_ref[(adoption.namespace, adoption.pod)]
        # The NAD's name until its ipam section parses (a refused one has no network key).
        label = adoption.network
        try:
            network = parse_network_request(adoption.ipam, network_name=adoption.network)
            label = network.network_key
            request = AddRequest(
                owner=Owner(
                    network_key=network.network_key,
                    namespace=adoption.namespace,
                    pod=adoption.pod,
                    interface=adoption.interface,
                ),
                network=network,
                pod_uid=uid_of(pod),
                static_ips=adoption.ips,
                mac=adoption.mac,
                node=node,
                origin="import",
                field_prefix=notes.key(network.network_key, notes.IP_ADDRESS),
            )
            allocation = await ipam.allocate(request)
        except IpamError as e:
            refused += 1
            log.warning("not adopted: %s: %s", adoption.label, e.message)
            await recorder.warning(
                namespace=adoption.namespace,
                pod=adoption.pod,
                uid=uid_of(pod),
                reason=ADOPT_FAILED,
                message=f"ipamd could not adopt {','.join(adoption.ips)} on {adoption.interface} (network {label}): {e.message}",
            )
            continue
        adopted += 1
        log.info("adopted %s as allocation %s", adoption.label, allocation.id)
    for skipped in plan.skipped:
        log.info("not adopted: %s: %s", skipped.source, skipped.reason)
    log.info(
        "adopting annotations on node %s: %d adopted, %d refused, %d skipped", node, adopted, refused, len(plan.skipped)
    )
    return adopted, refused
