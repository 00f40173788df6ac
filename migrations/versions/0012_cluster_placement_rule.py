"""PostgreSQL: ipamd_allocate's walk also stops at a subnet restricted to some clusters.

Placement gained the rule ``clusters`` (the clusters whose daemons may allocate from a
subnet or pool, when several share this database). 0011's walk stops at a subnet whose
spec names one of a fixed list of rule fields and leaves the choice to the daemon; a
subnet carrying only the new rule would be taken by any cluster's one-call ADD. The
function is 0011's text with the new key added to that list; going down restores 0011's.

Revision ID: 0012
Revises: 0011
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_spec = importlib.util.spec_from_file_location(
    "ipamd_migration_0011", Path(__file__).with_name("0011_placement_ends_the_walk.py")
)
assert _spec is not None and _spec.loader is not None
_0011 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_0011)

# The rule fields of ipamd.core.placement.RULE_FIELDS, as of this revision.
RULED = " OR ".join(
    f"s.spec->'{key}' IS NOT NULL"
    for key in ("namespaces", "namespaceSelector", "nodeSelector", "podSelector", "nodeNames", "clusters")
)

ALLOCATE = _0011._changed(
    _0011.ALLOCATE, (f"SELECT s.id, ({_0011.RULED}) FROM subnets s", f"SELECT s.id, ({RULED}) FROM subnets s")
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _0011._replace_allocate(ALLOCATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _0011._replace_allocate(_0011.ALLOCATE)
