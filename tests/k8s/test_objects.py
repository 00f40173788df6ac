"""The release view of the service's allocations (``ipamd.k8s.objects``), without any API server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ipamd.core.allocation import Owner
from ipamd.core.model import HeldAddress
from ipamd.core.release import HOLD_STATEFULSET, AllocationState
from ipamd.k8s.objects import allocation_state, is_pod_allocation
from tests.k8s.conftest import PROVIDER
from tests.support.results import allocation_of

ADDRESS = HeldAddress(4, "192.0.2.11", 24, "192.0.2.1")


def test_the_release_view_names_the_owner_and_the_hold():
    allocation = allocation_of(
        ADDRESS,
        id=7,
        pod_uid="uid-1",
        hold=HOLD_STATEFULSET,
        created_at=datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC),
    )
    assert allocation_state(allocation) == AllocationState(
        id=7,
        namespace="default",
        pod="web-0",
        interface="net1",
        network_key=PROVIDER,
        created_at=datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC),
        pod_uid="uid-1",
        hold=HOLD_STATEFULSET,
        # What a release decided on this view is conditional on.
        etag=allocation.etag,
    )


def test_a_creation_time_counts_to_the_second():
    # The API server's clock (its Date header) counts whole seconds.
    allocation = allocation_of(ADDRESS, created_at=datetime(2026, 11, 29, 12, 0, 5, 999_999, tzinfo=UTC))
    assert allocation_state(allocation).created_at == datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)


def test_an_allocation_without_a_creation_time_counts_as_made_now():
    before = datetime.now(UTC).replace(microsecond=0)
    created = allocation_state(allocation_of(ADDRESS)).created_at
    assert before <= created <= datetime.now(UTC)


@pytest.mark.parametrize(
    "namespace, container_id, expected",
    [
        ("default", "sandbox", True),
        ("default", None, False),  # made through the REST API for an owner outside Kubernetes
        ("", "sandbox", False),  # a standalone attachment
    ],
)
def test_only_a_pods_cni_allocations_are_the_reconcilers(namespace, container_id, expected):
    owner = Owner(PROVIDER, namespace, "web-0", "net1")
    assert is_pod_allocation(allocation_of(ADDRESS, owner=owner, container_id=container_id)) is expected
