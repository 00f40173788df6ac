"""The clusters sharing a database: a daemon registers its ``--cluster-name`` at start.

PostgreSQL may serve several Kubernetes clusters whose pods share L2 segments: each
attachment carries its cluster, and addresses stay unique across all of them. A SQLite file
serves one node, so one cluster: a second cluster name holding allocations there is refused
(docs/design/cluster-identity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ipamd.errors import InUse, NameTaken
from ipamd.service.base import ServiceBase, log
from ipamd.store import clusters
from ipamd.store.database import Connection


@dataclass(frozen=True)
class ClusterJoin:
    """What registering this daemon's cluster found: whether the name is new to the
    database, the other clusters it shares the database with, and (SQLite) the names
    without allocations it replaced."""

    new: bool
    others: tuple[str, ...]
    forgotten: tuple[str, ...] = ()


class Clusters(ServiceBase):
    """The registry of cluster names (table ``clusters``)."""

    async def join_cluster(self) -> ClusterJoin:
        """Registers this daemon's cluster and says what it found; on SQLite, raises InUse
        when another cluster holds allocations there."""
        sqlite = self.database.dialect == "sqlite"

        def run(conn: Connection) -> ClusterJoin:
            names = clusters.cluster_names(conn)
            others = tuple(name for name in names if name != self.cluster)
            if self.cluster in names:
                if sqlite and others:
                    # Only a database edited by hand gets here: refuse it like a new name.
                    self._refuse_second_cluster(conn, others)
                return ClusterJoin(new=False, others=others)
            forgotten: tuple[str, ...] = ()
            if sqlite and others:
                self._refuse_second_cluster(conn, others)
                # Names that hold nothing (a mistyped name since corrected) keep nothing
                # safe by staying: this daemon's cluster takes the file over.
                clusters.forget(conn, others)
                forgotten, others = others, ()
            clusters.register(conn, self.cluster)
            return ClusterJoin(new=True, others=others, forgotten=forgotten)

        try:
            joined = await self._write(run)
        except NameTaken:
            # A daemon of the same cluster registered it at the same moment: now it is known.
            joined = await self._write(run)
        self.unregistered = None
        self._log_join(joined)
        return joined

    def _refuse_second_cluster(self, conn: Connection, others: tuple[str, ...]) -> None:
        holding = [name for name in others if clusters.holds_allocations(conn, name)]
        if holding:
            raise InUse(
                f"this SQLite database holds the allocations of cluster {', '.join(holding)}, and SQLite serves one cluster: "
                f"start with --cluster-name {holding[0]}, or share addresses between clusters through PostgreSQL "
                "(docs/deploy.md, several clusters on one address space)"
            )

    def _log_join(self, joined: ClusterJoin) -> None:
        for name in joined.forgotten:
            log.warning(
                "cluster %s held no allocation in this SQLite database: cluster %s replaces it", name, self.cluster
            )
        if joined.new and joined.others:
            log.warning(
                "cluster %s joins a database shared with cluster(s) %s: addresses of shared subnets stay unique across "
                "them, and each cluster's pods, reconciler and GC see only their own attachments. If %s is a renamed "
                "cluster, its allocations remain under the old name",
                self.cluster,
                ", ".join(joined.others),
                self.cluster,
            )
        elif joined.others:
            log.info("cluster %s shares this database with cluster(s) %s", self.cluster, ", ".join(joined.others))
        elif joined.new:
            log.info("cluster %s registered in this database", self.cluster)
