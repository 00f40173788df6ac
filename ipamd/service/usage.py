"""Usage of the whole address space: every subnet family, pool and cluster's share."""

from __future__ import annotations

from ipamd.core import intervals as iv
from ipamd.core.pool import pool_capacity
from ipamd.core.subnet import SubnetSpec
from ipamd.core.usage import ClusterUsage, PoolUsage, SubnetUsage, UsageReport
from ipamd.errors import IpamError
from ipamd.service.base import ServiceBase, log
from ipamd.store.usage import usage_counts


class UsageReports(ServiceBase):
    """The usage report the metrics gauges show."""

    async def usage(self) -> UsageReport:
        """Returns capacity and use of every subnet family and pool, and each cluster's use
        of each subnet family, read in one transaction.

        A stored spec this version no longer accepts leaves its subnet (and its pools) out,
        with a warning: one bad row must not hide every other subnet's usage.
        """
        counts = await self.read(usage_counts)
        specs: dict[int, SubnetSpec] = {}
        names: dict[int, str] = {}
        subnets: list[SubnetUsage] = []
        for row in counts.subnets:
            try:
                spec = self._spec(row.id, row.revision, row.spec, origin=row.origin)
            except IpamError as e:
                log.warning("usage: skipping subnet %s: %s", row.name, e.message)
                continue
            specs[row.id], names[row.id] = spec, row.name
            for layout in spec.families:
                key = (row.id, layout.version)
                subnets.append(
                    SubnetUsage(
                        row.name,
                        layout.version,
                        iv.size([layout.allocatable]),
                        counts.held.get(key, 0),
                        counts.available.get(key, 0),
                    )
                )
        pools: list[PoolUsage] = []
        for row in counts.pools:
            subnet = specs.get(row.subnet_id)
            if subnet is None:
                continue
            try:
                pool = self._pool_spec(subnet, pool_id=row.id, name=row.name, ips=row.ips, rules=row.rules)
            except IpamError as e:
                log.warning("usage: skipping pool %s: %s", row.name, e.message)
                continue
            pools.append(
                PoolUsage(row.name, names[row.subnet_id], pool_capacity(pool), counts.pool_held.get(row.id, 0))
            )
        clusters = tuple(
            ClusterUsage(cluster, names[subnet_id], family, used)
            for (cluster, subnet_id, family), used in sorted(counts.cluster_held.items())
            if subnet_id in specs and specs[subnet_id].family(family) is not None
        )
        return UsageReport(tuple(subnets), tuple(pools), clusters)
