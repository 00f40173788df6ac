"""Several daemons on one PostgreSQL database: concurrent allocation, and daemons SIGKILLed
while they allocate. Nothing is handed out twice, nothing acknowledged is lost, no
dual-stack attachment is left with one family, and the usage counts agree with the rows."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from pathlib import Path

from tests.cluster.clusterkit import (
    Cluster,
    Reply,
    add_body,
    call_anywhere,
    check_subnet_consistency,
    json_getter,
    request,
)

SMALL = {"name": "small", "cidrBlock": "198.51.100.0/24", "provider": "small.ns"}
BIG = {"name": "big", "cidrBlock": "198.18.0.0/16", "provider": "big.ns"}
DUAL = {"name": "dual", "cidrBlock": "198.51.100.0/24,2001:db8:5::/64", "provider": "dual.ns"}


def _create(socket: str, *subnets: dict[str, str]) -> None:
    for spec in subnets:
        reply = asyncio.run(request(socket, "POST", "/v1/subnets", spec))
        assert reply.status == 201, reply.body


def test_four_daemons_allocate_concurrently_without_duplicates(postgres_url: str, sockdir: Path) -> None:
    cluster = Cluster(sockdir, postgres_url, 4).start()
    try:
        _create(cluster.sockets[0], SMALL, BIG)
        # 300 attachments want the /24 (253 allocatable: 47 must be told 'exhausted'),
        # 100 want the /16; all 400 in flight at once, spread over the four daemons.
        wanted = [("small", f"s{i}") for i in range(300)] + [("big", f"b{i}") for i in range(100)]
        random.Random(5).shuffle(wanted)

        async def run() -> list[tuple[str, str, Reply]]:
            async def one(index: int, subnet: str, pod: str) -> tuple[str, str, Reply]:
                socket = cluster.sockets[index % 4]
                return subnet, pod, await request(socket, "POST", "/v1/cni/add", add_body(pod, provider=f"{subnet}.ns"))

            return await asyncio.gather(*(one(i, s, p) for i, (s, p) in enumerate(wanted)))

        started = time.monotonic()
        results = asyncio.run(run())
        elapsed = time.monotonic() - started

        granted: dict[str, dict[str, str]] = collections.defaultdict(dict)
        refused: collections.Counter[str] = collections.Counter()
        for subnet, pod, reply in results:
            if reply.status == 200:
                assert [ip["family"] for ip in reply.body["ips"]] == [4]
                granted[subnet][pod] = reply.body["ips"][0]["address"].partition("/")[0]
            else:
                assert (reply.status, reply.error_code, reply.cni_code) == (409, "exhausted", 102), reply.body
                refused[subnet] += 1
        assert len(granted["small"]) == 253 and refused["small"] == 47, (len(granted["small"]), refused)
        assert len(granted["big"]) == 100 and refused["big"] == 0, refused

        for subnet in ("small", "big"):
            addresses = list(granted[subnet].values())
            assert len(addresses) == len(set(addresses)), f"{subnet}: an address was granted twice"
            # Every daemon reports the same, consistent state.
            for socket in cluster.sockets:
                state = check_subnet_consistency(json_getter(socket), subnet)
                rows = {row["owner"]["pod"]: row["addresses"][0]["address"] for row in state["rows"]}
                assert rows == granted[subnet]
        small_usage = check_subnet_consistency(json_getter(cluster.sockets[1]), "small")["subnet"]["usage"]["v4"]
        assert (small_usage["used"], small_usage["available"]) == (253, 0)

        # ADD is idempotent across daemons: asking another node gives the same address.
        async def again() -> None:
            for index, pod in enumerate(list(granted["big"])[:20]):
                reply = await request(
                    cluster.sockets[(index + 1) % 4], "POST", "/v1/cni/add", add_body(pod, provider="big.ns")
                )
                assert reply.status == 200 and reply.body["ips"][0]["address"].partition("/")[0] == granted["big"][pod]

        asyncio.run(again())
        print(f"400 concurrent ADDs over 4 daemons in {elapsed:.2f}s")
    finally:
        cluster.stop()


def test_sigkilled_daemons_lose_nothing_and_duplicate_nothing(postgres_url: str, sockdir: Path) -> None:
    cluster = Cluster(sockdir, postgres_url, 4).start()
    try:
        _create(cluster.sockets[0], DUAL, BIG)
        rng = random.Random(11)
        # Enough ADDs that several kills land while daemons restart (the burst outlasts them).
        pods = [("dual", f"d{i}") for i in range(200)] + [("big", f"b{i}") for i in range(400)]
        rng.shuffle(pods)
        acknowledged: dict[tuple[str, str], list[str]] = {}
        retried = 0
        kills = 0
        done = asyncio.Event()
        # Closed while a kill is due and not yet made: however fast ADDs are, the burst
        # cannot finish before every milestone's kill has landed in it.
        open_for_requests = asyncio.Event()
        open_for_requests.set()

        async def worker(queue: asyncio.Queue[tuple[str, str]]) -> None:
            nonlocal retried
            while not queue.empty():
                await open_for_requests.wait()
                if queue.empty():
                    break
                subnet, pod = queue.get_nowait()
                # Like a runtime retrying ADD (code 11 or a vanished daemon) on the same attachment.
                reply, failures = await call_anywhere(
                    cluster.sockets, "POST", "/v1/cni/add", add_body(pod, provider=f"{subnet}.ns"), rng=rng
                )
                retried += failures
                assert reply.status == 200, reply.body
                acknowledged[(subnet, pod)] = sorted(ip["address"] for ip in reply.body["ips"])

        async def killer() -> None:
            nonlocal kills
            # SIGKILL a random live daemon at fixed points of progress; restart it in the
            # background so the next kill need not wait (two may be down at once).
            milestones = list(range(30, 580, 50))
            restarts = []
            busy: set[int] = set()
            while milestones and not done.is_set():
                candidates = [i for i in range(len(cluster.daemons)) if i not in busy]
                if len(acknowledged) >= milestones[0]:
                    open_for_requests.clear()
                if len(acknowledged) >= milestones[0] and len(candidates) > 1:
                    milestones.pop(0)
                    index = rng.choice(candidates)
                    busy.add(index)
                    cluster.daemons[index].kill()
                    kills += 1

                    async def restart(index: int = index) -> None:
                        await asyncio.to_thread(cluster.daemons[index].start)
                        busy.discard(index)

                    restarts.append(asyncio.create_task(restart()))
                    open_for_requests.set()
                await asyncio.sleep(0.005)
            open_for_requests.set()
            await asyncio.gather(*restarts)

        async def run() -> None:
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            for item in pods:
                queue.put_nowait(item)
            kill_task = asyncio.create_task(killer())
            await asyncio.gather(*(worker(queue) for _ in range(16)))
            done.set()
            await kill_task

        asyncio.run(run())
        # Every milestone's kill landed while requests were in flight.
        assert kills == 11, kills
        assert len(acknowledged) == 600

        for subnet in ("dual", "big"):
            state = check_subnet_consistency(json_getter(cluster.sockets[2]), subnet)
            rows = {row["owner"]["pod"]: sorted(a["cidr"] for a in row["addresses"]) for row in state["rows"]}
            mine = {pod: addresses for (s, pod), addresses in acknowledged.items() if s == subnet}
            # Every acknowledged allocation is there with the addresses the client was told,
            # and nothing else is (a commit whose answer was lost was claimed by its retry).
            assert rows == mine
            if subnet == "dual":
                assert all(len(addresses) == 2 for addresses in mine.values())
        print(f"{kills} SIGKILLs, {retried} retried requests")
    finally:
        cluster.stop()


def test_concurrent_releases_give_each_address_back_once(postgres_url: str, sockdir: Path) -> None:
    """The same allocation released at once through several daemons and doors (a retried
    CNI DEL, the REST API), and the same reservation deleted twice: one release wins, the
    others find nothing; no 500, and no address is listed as free twice (pool members
    included, whose free list has no unique constraint to catch a second give-back)."""
    cluster = Cluster(sockdir, postgres_url, 4).start()
    try:
        sockets = cluster.sockets
        _create(sockets[0], {"name": "rel", "cidrBlock": "198.51.100.0/24", "provider": "rel.ns"})
        pool = {"name": "relpool", "subnet": "rel", "ips": ["198.51.100.200..198.51.100.239"]}

        async def run() -> collections.Counter[tuple[int, str | None]]:
            assert (await request(sockets[0], "POST", "/v1/pools", pool)).status == 201
            ids = {}
            for i in range(60):
                ids[f"d{i}"] = (
                    await request(sockets[0], "POST", "/v1/cni/add", add_body(f"d{i}", provider="rel.ns"))
                ).body["allocationId"]
            for i in range(40):
                # Static pool members through the REST API: given back to the pool's free list.
                body = {
                    "subnet": "rel",
                    "owner": {"namespace": "ns", "pod": f"m{i}"},
                    "address": f"198.51.100.{200 + i}",
                }
                reply = await request(sockets[1], "POST", "/v1/allocations", body)
                assert reply.status == 201, reply.body
                ids[f"m{i}"] = reply.body["id"]
            reservations = []
            for i in range(20):
                reply = await request(
                    sockets[2], "POST", "/v1/reservations", {"subnet": "rel", "address": f"198.51.100.{150 + i}"}
                )
                assert reply.status == 201, reply.body
                reservations.append(reply.body["id"])

            calls = []
            for index, (pod, allocation_id) in enumerate(ids.items()):
                if pod.startswith("d"):
                    calls.append(request(sockets[index % 4], "POST", "/v1/cni/del", add_body(pod, provider="rel.ns")))
                    calls.append(
                        request(sockets[(index + 1) % 4], "POST", "/v1/cni/del", add_body(pod, provider="rel.ns"))
                    )
                calls.append(request(sockets[(index + 2) % 4], "DELETE", f"/v1/allocations/{allocation_id}"))
                calls.append(request(sockets[(index + 3) % 4], "DELETE", f"/v1/allocations/{allocation_id}"))
            for index, reservation_id in enumerate(reservations):
                calls += [
                    request(sockets[(index + k) % 4], "DELETE", f"/v1/reservations/{reservation_id}") for k in range(3)
                ]
            replies = await asyncio.gather(*calls)
            return collections.Counter((r.status, r.error_code) for r in replies)

        outcomes = asyncio.run(run())
        assert set(outcomes) <= {(200, None), (404, "not_found")}, outcomes
        get = json_getter(sockets[3])
        state = check_subnet_consistency(get, "rel")
        assert state["rows"] == []
        usage = state["subnet"]["usage"]["v4"]
        assert (usage["used"], usage["reserved"], usage["pooled"], usage["available"]) == (0, 0, 40, 213), usage
        pool_usage = get("/v1/pools/relpool")["usage"]
        assert (pool_usage["total"], pool_usage["used"], pool_usage["available"]) == (40, 0, 40), pool_usage

        # Every address can be handed out exactly once again.
        async def refill() -> list[str]:
            replies = await asyncio.gather(
                *(
                    request(sockets[i % 4], "POST", "/v1/cni/add", add_body(f"again{i}", provider="rel.ns"))
                    for i in range(220)
                )
            )
            granted = [r.body["ips"][0]["address"] for r in replies if r.status == 200]
            assert all(r.status in (200, 409) for r in replies), [r.body for r in replies if r.status not in (200, 409)]
            return granted

        granted = asyncio.run(refill())
        assert len(granted) == len(set(granted)) == 213
        print(f"concurrent releases: {dict(outcomes)}")
    finally:
        cluster.stop()


def test_overlapping_subnets_of_one_provider_cannot_be_created_at_once(postgres_url: str, sockdir: Path) -> None:
    """Two subnets of one provider share an L2 domain and must not overlap: the check must
    hold when several daemons create (or move) subnets at the same moment."""
    cluster = Cluster(sockdir, postgres_url, 4).start()
    try:
        sockets = cluster.sockets

        async def run() -> None:
            creates = await asyncio.gather(
                *(
                    request(
                        sockets[i % 4],
                        "POST",
                        "/v1/subnets",
                        {
                            "name": f"o{i}",
                            "cidrBlock": "192.0.2.0/24" if i % 2 else "192.0.2.0/25",
                            "provider": "same.ns",
                        },
                    )
                    for i in range(8)
                )
            )
            outcomes = collections.Counter((r.status, r.error_code) for r in creates)
            assert outcomes == {(201, None): 1, (409, "already_exists"): 7}, outcomes
            # Moving subnets under one provider at once: at most one of them gets there.
            for i in range(4):
                assert (
                    await request(
                        sockets[0],
                        "POST",
                        "/v1/subnets",
                        {"name": f"m{i}", "cidrBlock": "203.0.113.0/24", "provider": f"m{i}.ns"},
                    )
                ).status == 201
            moves = await asyncio.gather(
                *(request(sockets[i], "PATCH", f"/v1/subnets/m{i}", {"provider": "target.ns"}) for i in range(4))
            )
            outcomes = collections.Counter((r.status, r.error_code) for r in moves)
            assert outcomes == {(200, None): 1, (409, "already_exists"): 3}, outcomes

            # The first ADDs of an inline (Whereabouts-style) network, on every node at once:
            # one daemon creates its subnet, the others find it; nobody is refused.
            def inline(i: int) -> dict[str, object]:
                return {
                    **add_body(f"w{i}", provider="unused"),
                    "ipam": {"type": "ipamd", "range": "198.18.4.0/24", "network_name": "wbnet"},
                }

            adds = await asyncio.gather(*(request(sockets[i % 4], "POST", "/v1/cni/add", inline(i)) for i in range(16)))
            assert all(r.status == 200 for r in adds), [r.body for r in adds if r.status != 200]
            assert len({r.body["ips"][0]["address"] for r in adds}) == 16

        asyncio.run(run())
        listed = json_getter(sockets[1])("/v1/subnets")["items"]
        assert sum(1 for s in listed if s["provider"] == "same.ns") == 1
        assert sum(1 for s in listed if s["provider"] == "target.ns") == 1
    finally:
        cluster.stop()


def test_one_attachment_added_through_every_daemon_at_once_gets_one_address(postgres_url: str, sockdir: Path) -> None:
    """A runtime retrying ADD while the first is still in flight, on any node: the unique
    constraint on the attachment turns the race into a retry that finds the first row.
    Static requests for one address from different pods: exactly one wins."""
    cluster = Cluster(sockdir, postgres_url, 4).start()
    try:
        sockets = cluster.sockets
        _create(sockets[0], {"name": "same", "cidrBlock": "198.51.100.0/24,2001:db8:6::/64", "provider": "same.ns"})

        async def run() -> None:
            replies = await asyncio.gather(
                *(
                    request(sockets[k % 4], "POST", "/v1/cni/add", add_body(f"p{i}", provider="same.ns"))
                    for i in range(30)
                    for k in range(4)
                )
            )
            assert all(r.status == 200 for r in replies), [r.body for r in replies if r.status != 200]
            by_pod: dict[str, set[str]] = collections.defaultdict(set)
            for index, reply in enumerate(replies):
                by_pod[f"p{index // 4}"].add(",".join(sorted(ip["address"] for ip in reply.body["ips"])))
            assert all(len(answers) == 1 for answers in by_pod.values()), by_pod
            assert len({next(iter(a)) for a in by_pod.values()}) == 30

            static = await asyncio.gather(
                *(
                    request(
                        sockets[i % 4],
                        "POST",
                        "/v1/cni/add",
                        {**add_body(f"s{i}", provider="same.ns"), "ips": ["198.51.100.200"]},
                    )
                    for i in range(8)
                )
            )
            outcomes = collections.Counter((r.status, r.error_code) for r in static)
            assert outcomes == {(200, None): 1, (409, "address_conflict"): 7}, outcomes

        asyncio.run(run())
        state = check_subnet_consistency(json_getter(sockets[1]), "same")
        assert len(state["rows"]) == 31
    finally:
        cluster.stop()


def test_overlapping_inline_ranges_on_four_daemons_never_share_an_address(postgres_url: str, sockdir: Path) -> None:
    """Three NADs whose Whereabouts ranges overlap (two identical, one inside), first ADDs
    and releases on every daemon at once: one address space, so no address twice."""
    cluster = Cluster(sockdir, postgres_url, 4).start()
    try:
        sockets = cluster.sockets
        ranges = {"nad-a": "203.0.113.0/27", "nad-b": "203.0.113.0/27", "nad-c": "203.0.113.0/28"}

        def body(i: int) -> dict[str, object]:
            network = sorted(ranges)[i % 3]
            return {
                **add_body(f"p{i}", provider="unused"),
                "network": network,
                "ipam": {"type": "ipamd", "range": ranges[network]},
            }

        async def run() -> None:
            # 30 allocatable in the /27 (no gateway), 14 of them in the /28: 40 ask. How many
            # nad-c gets depends on the interleaving; what it never gets is a held address.
            adds = await asyncio.gather(*(request(sockets[i % 4], "POST", "/v1/cni/add", body(i)) for i in range(40)))
            held = [r.body["ips"][0]["address"].split("/")[0] for r in adds if r.status == 200]
            assert all(r.status == 200 or r.error_code == "exhausted" for r in adds), [
                r.body for r in adds if r.status != 200
            ]
            assert len(held) >= 27 and len(set(held)) == len(held)
            # Release a third of them on every daemon at once, then fill again: still unique.
            winners = [i for i, r in enumerate(adds) if r.status == 200]
            freed = winners[::3]
            dels = await asyncio.gather(*(request(sockets[(i + 1) % 4], "POST", "/v1/cni/del", body(i)) for i in freed))
            assert all(r.status == 200 and r.body["released"] == 1 for r in dels), [r.body for r in dels]
            refill = await asyncio.gather(
                *(request(sockets[i % 4], "POST", "/v1/cni/add", body(i)) for i in range(100, 100 + 3 * len(freed)))
            )
            assert all(r.status == 200 or r.error_code == "exhausted" for r in refill), [
                r.body for r in refill if r.status != 200
            ]
            # Two thirds of the refill can use the whole /27: every free address is taken again.
            live = json_getter(sockets[2])("/v1/allocations")["items"]
            addresses = [a["addresses"][0]["address"] for a in live]
            assert len(addresses) == len(set(addresses)) == 30, collections.Counter(addresses).most_common(3)

        asyncio.run(run())
    finally:
        cluster.stop()
