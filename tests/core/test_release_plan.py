"""``plan_releases``: which pod allocations the reconciler gives back, without any API server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ipamd.core.release import (
    HOLD_STATEFULSET,
    AllocationState,
    PodState,
    Release,
    StatefulSetState,
    plan_releases,
    statefulset_pod,
)

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
OLD = NOW - timedelta(minutes=10)
GRACE = timedelta(seconds=60)


def alloc(
    id: int, pod: str, *, namespace: str = "default", hold: str | None = None, created_at: datetime = OLD
) -> AllocationState:
    return AllocationState(
        id=id,
        namespace=namespace,
        pod=pod,
        interface="net1",
        network_key="macvlan.default",
        created_at=created_at,
        pod_uid=f"uid-{pod}",
        hold=hold,
    )


def pod(
    name: str,
    *,
    namespace: str = "default",
    phase: str = "Running",
    reason: str | None = None,
    deleting_since: datetime | None = None,
    statefulset: str | None = None,
) -> PodState:
    return PodState(
        namespace=namespace,
        name=name,
        uid=f"uid-{name}",
        phase=phase,
        reason=reason,
        deletion_deadline=deleting_since,
        statefulset=statefulset,
    )


def plan(pods, allocations, statefulsets=(), *, now=NOW, grace=GRACE) -> list[tuple[int, str]]:
    return [(r.allocation_id, r.reason) for r in plan_releases(pods, allocations, statefulsets, now, grace)]


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([pod("web")], [], id="running-pod-keeps"),
        pytest.param([pod("web", phase="Pending")], [], id="pending-pod-keeps"),
        pytest.param([], [(1, "pod gone")], id="gone-pod-releases"),
        pytest.param([pod("web", phase="Succeeded")], [(1, "pod terminal")], id="succeeded-releases"),
        pytest.param([pod("web", phase="Failed")], [(1, "pod terminal")], id="failed-releases"),
        pytest.param([pod("web", phase="Failed", reason="Evicted")], [(1, "pod terminal")], id="evicted-releases"),
        pytest.param([pod("web", deleting_since=NOW - timedelta(seconds=30))], [], id="terminating-within-grace-keeps"),
        pytest.param(
            [pod("web", deleting_since=NOW - timedelta(seconds=61))],
            [(1, "pod stuck terminating")],
            id="stuck-terminating-releases",
        ),
        pytest.param([pod("web", namespace="other")], [(1, "pod gone")], id="same-name-other-namespace-is-not-the-pod"),
    ],
)
def test_plain_pods(pods, expected):
    assert plan(pods, [alloc(1, "web")]) == expected


def test_grace_protects_young_allocations():
    young = alloc(1, "web", created_at=NOW - timedelta(seconds=59))
    assert plan([], [young]) == []
    assert plan([], [young], now=NOW + timedelta(seconds=1)) == [(1, "pod gone")]
    assert plan([pod("web", phase="Failed")], [young]) == []


def test_a_recreated_pod_with_the_same_name_owns_the_allocation():
    recreated = PodState(namespace="default", name="web", uid="another-uid", phase="Running")
    assert plan([recreated], [alloc(1, "web")]) == []


@pytest.mark.parametrize(
    ("statefulsets", "pods", "expected"),
    [
        pytest.param([StatefulSetState("default", "db", 3)], [], [], id="gone-pod-of-valid-set-keeps"),
        pytest.param(
            [StatefulSetState("default", "db", 3)],
            [pod("db-1", phase="Failed", statefulset="db")],
            [],
            id="failed-pod-of-valid-set-keeps",
        ),
        pytest.param(
            [StatefulSetState("default", "db", 1)],
            [],
            [(1, "statefulset scaled down")],
            id="scaled-below-ordinal-releases",
        ),
        pytest.param(
            [StatefulSetState("default", "db", 1)],
            [pod("db-1", statefulset="db")],
            [],
            id="scaled-down-but-pod-alive-keeps",
        ),
        pytest.param([], [], [(1, "statefulset deleted")], id="set-deleted-releases"),
        pytest.param(
            [StatefulSetState("default", "db", 3, deleting=True)],
            [],
            [(1, "statefulset deleted")],
            id="set-being-deleted-releases",
        ),
        pytest.param(
            [StatefulSetState("other", "db", 3)],
            [],
            [(1, "statefulset deleted")],
            id="set-of-another-namespace-does-not-count",
        ),
    ],
)
def test_statefulset_holds(statefulsets, pods, expected):
    assert plan(pods, [alloc(1, "db-1", hold=HOLD_STATEFULSET)], statefulsets) == expected


def test_owner_reference_name_wins_over_the_pod_name():
    # A pod "a-b-0" owned by StatefulSet "a-b": the name split would say the same; an
    # owner named differently from the prefix is looked up by its own name.
    sets = [StatefulSetState("default", "real", 2)]
    assert (
        plan([pod("alias-0", phase="Failed", statefulset="real")], [alloc(1, "alias-0", hold=HOLD_STATEFULSET)], sets)
        == []
    )


def test_plan_is_in_allocation_order_and_flags_absent_pods():
    releases = plan_releases(
        [pod("b", phase="Succeeded")],
        [alloc(3, "c"), alloc(1, "a"), alloc(2, "b")],
        [],
        NOW,
        60,
    )
    assert releases == [
        Release(1, "default", "a", "pod gone", "pod default/a gone", pod_absent=True),
        Release(2, "default", "b", "pod terminal", "pod default/b Succeeded", pod_absent=False),
        Release(3, "default", "c", "pod gone", "pod default/c gone", pod_absent=True),
    ]


def test_details_name_the_statefulset():
    [release] = plan_releases(
        [], [alloc(1, "db-4", hold=HOLD_STATEFULSET)], [StatefulSetState("default", "db", 2)], NOW, GRACE
    )
    assert release.detail == "pod default/db-4 gone; statefulset default/db scaled to 2 (ordinal 4)"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("web-0", ("web", 0), id="simple"),
        pytest.param("my-db-12", ("my-db", 12), id="dashes"),
        pytest.param("web", None, id="no-ordinal"),
        pytest.param("web-x", None, id="not-a-number"),
    ],
)
def test_statefulset_pod_names(name, expected):
    assert statefulset_pod(name) == expected


@pytest.mark.parametrize(
    ("vms", "created_at", "expected"),
    [
        pytest.param({("default", "db")}, OLD, [], id="vm-exists-keeps-without-any-pod"),
        pytest.param(None, OLD, [], id="vms-unknown-keeps"),
        pytest.param(set(), OLD, [(1, "vm deleted")], id="vm-gone-releases"),
        pytest.param({("other", "db")}, OLD, [(1, "vm deleted")], id="same-name-other-namespace-releases"),
        pytest.param(set(), NOW - timedelta(seconds=5), [], id="young-allocation-kept"),
    ],
)
def test_vm_holds_follow_the_virtual_machine(vms, created_at, expected):
    from ipamd.core.release import HOLD_VM, vm_owner

    allocations = [alloc(1, vm_owner("db"), hold=HOLD_VM, created_at=created_at)]
    # Launcher pods come and go: none of them decides (a running one included).
    pods = [pod("virt-launcher-db-abcde")]
    result = plan_releases(pods, allocations, [], NOW, GRACE, vms=vms)
    assert [(r.allocation_id, r.reason) for r in result] == expected
    assert all(not r.pod_absent for r in result)
