"""PostgreSQL: ipamd_allocate's walk of a provider's subnets stops at placement rules.

A daemon chooses among subnets with placement rules itself (the pod's namespace, node and
labels are not in the database). It used to ask before every dynamic ADD whether any subnet
of the provider had rules, a query scanning the provider's specs. Now the walk says so
when it reaches one: the outcome 'placement' (nothing written) sends the daemon to choose
and call again with the subnets it chose. A provider without rules pays nothing for them.

The stored spec names a rule field exactly when the rule binds (ipamd.core.placement,
Placement.to_json), so the test is on the keys. Only 0009's walk changes: the function is
0009's text with that loop replaced, and going down restores 0009's text.

Revision ID: 0011
Revises: 0010
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_spec = importlib.util.spec_from_file_location(
    "ipamd_migration_0009", Path(__file__).with_name("0009_one_call_allocation.py")
)
assert _spec is not None and _spec.loader is not None
_0009 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_0009)

# The rule fields of ipamd.core.placement.RULE_FIELDS, as of this revision.
RULED = " OR ".join(
    f"s.spec->'{key}' IS NOT NULL"
    for key in ("namespaces", "namespaceSelector", "nodeSelector", "podSelector", "nodeNames")
)

WALK_0009 = """
            FOR candidate IN
                SELECT s.id FROM subnets s
                WHERE s.provider = p_network_key AND (
                    EXISTS (SELECT 1 FROM free_ranges r WHERE r.subnet_id = s.id AND r.pool_id IS NULL
                            AND (p_family IS NULL OR r.family = p_family))
                    OR EXISTS (SELECT 1 FROM released r WHERE r.subnet_id = s.id AND (p_family IS NULL OR r.family = p_family))
                )
                ORDER BY s.priority, s.name
            LOOP
                SELECT * INTO take_outcome, take_subnet, take_v4, take_v6 FROM ipamd_take_in_subnet(candidate, p_family);
                EXIT WHEN take_outcome IN ('taken', 'overlap');
            END LOOP;
"""
WALK = f"""
            FOR candidate, ruled IN
                SELECT s.id, ({RULED}) FROM subnets s
                WHERE s.provider = p_network_key AND (
                    EXISTS (SELECT 1 FROM free_ranges r WHERE r.subnet_id = s.id AND r.pool_id IS NULL
                            AND (p_family IS NULL OR r.family = p_family))
                    OR EXISTS (SELECT 1 FROM released r WHERE r.subnet_id = s.id AND (p_family IS NULL OR r.family = p_family))
                )
                ORDER BY s.priority, s.name
            LOOP
                IF ruled THEN
                    -- Whether its rules admit the pod is the daemon's to decide.
                    take_outcome := 'placement';
                    EXIT;
                END IF;
                SELECT * INTO take_outcome, take_subnet, take_v4, take_v6 FROM ipamd_take_in_subnet(candidate, p_family);
                EXIT WHEN take_outcome IN ('taken', 'overlap');
            END LOOP;
"""


def _changed(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


ALLOCATE = _changed(
    _0009.ALLOCATE,
    (WALK_0009, WALK),
    ("    candidate integer;\n", "    candidate integer;\n    ruled boolean;\n"),
    (
        "IF take_outcome = 'overlap' THEN\n            result_outcome := 'overlap';",
        "IF take_outcome IN ('overlap', 'placement') THEN\n            result_outcome := take_outcome;",
    ),
)


def _replace_allocate(definition: str) -> None:
    op.execute(definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _replace_allocate(ALLOCATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _replace_allocate(_0009.ALLOCATE)
