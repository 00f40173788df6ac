"""The IPAM service: every operation as one database transaction.

It owns transactions, idempotency and the order of checks; the HTTP layer calls it with
parsed requests, the Kubernetes layer enriches ADD requests from pod annotations before
calling it. Database failures leave here as ``Unavailable`` (CNI code 11).

Concurrency: on PostgreSQL each pick-and-insert locks only its subnet row
(``SELECT ... FOR UPDATE``), so daemons on different nodes allocate from different subnets
without waiting for each other and never pick the same address from one subnet; the
unique constraints are the last line. On SQLite one writer thread runs every write
transaction (grouped commits, ``ipamd.store.database``), so writers never meet.
See docs/design/concurrency.md.
"""

from __future__ import annotations

from ipamd.service.admin import Administration
from ipamd.service.allocation import Allocations
from ipamd.service.clusters import ClusterJoin, Clusters
from ipamd.service.history import History
from ipamd.service.requests import AddRequest, HeldByAnotherPod, LabelsNeeded, owner_from, with_network
from ipamd.service.usage import UsageReports

__all__ = ["AddRequest", "ClusterJoin", "HeldByAnotherPod", "Ipam", "LabelsNeeded", "owner_from", "with_network"]


class Ipam(Administration, Allocations, Clusters, History, UsageReports):
    """Allocation, release, the administration of subnets, pools and reservations, the
    registry of clusters sharing the database, the audit history and the usage report."""
