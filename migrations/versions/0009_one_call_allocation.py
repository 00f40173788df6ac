"""PostgreSQL: a dynamic allocation and a release, each one server-side call.

Many daemons share one subnet on PostgreSQL, and its row lock serialises their
allocations. Taken by a ``SELECT ... FOR UPDATE`` and held until a COMMIT several round
trips later, the lock capped a subnet at a few hundred allocations per second whatever the
number of daemons. Here the lock is taken and released inside one statement:

- ``ipamd_allocate``: the attachment's existing allocation (an idempotent ADD: sandbox
  facts refreshed, or refused when another instance of the pod holds it), else the first
  candidate subnet with free dynamic space, locked, one address per family taken (dual
  stack all or nothing), the allocation and its audit rows inserted. Candidates are the
  ids the daemon chose, in order, or the provider's subnets in priority order. Nothing
  happens past the daemon's deadline: having no COMMIT of its own to withhold, the call
  would otherwise still allocate when a frozen server resumes long after the daemon
  answered "retry later".
- ``ipamd_release``: deletes an allocation as the daemon read it, writes its audit rows
  and gives each address back where the daemon decided (its pool, the reuse queue or
  nowhere), unless the subnet's spec or pools changed since that decision.

The unique constraints stay the final guarantee: a race the functions do not foresee ends
in a unique violation, which the daemon retries as before. Static addresses, pools, MACs
and overlapping inline ranges keep the daemon's multi-statement path. SQLite has one
writer anyway and gets nothing here.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Addresses are 16-byte big-endian bytea (ipamd.store.schema.IPAddressBytes).
NEXT_ADDRESS = """
CREATE FUNCTION ipamd_next_address(address bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    i integer := 15;
    result bytea := address;
BEGIN
    WHILE get_byte(result, i) = 255 LOOP
        result := set_byte(result, i, 0);
        i := i - 1;
    END LOOP;
    RETURN set_byte(result, i, get_byte(result, i) + 1);
END $$
"""

# What ipamd.store.space.take_dynamic does: the lowest never-used address, else the oldest
# released one; NULL when the family is full. The caller holds the subnet's lock.
TAKE_DYNAMIC = """
CREATE FUNCTION ipamd_take_dynamic(p_subnet_id integer, p_family smallint) RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE
    free record;
    taken bytea;
BEGIN
    SELECT r.id, r.first, r.last INTO free FROM free_ranges r
    WHERE r.subnet_id = p_subnet_id AND r.family = p_family AND r.pool_id IS NULL
    ORDER BY r.first LIMIT 1;
    IF FOUND THEN
        IF free.first = free.last THEN
            DELETE FROM free_ranges WHERE id = free.id;
        ELSE
            UPDATE free_ranges SET first = ipamd_next_address(free.first) WHERE id = free.id;
        END IF;
        RETURN free.first;
    END IF;
    DELETE FROM released WHERE id = (
        SELECT r.id FROM released r WHERE r.subnet_id = p_subnet_id AND r.family = p_family ORDER BY r.id LIMIT 1
    ) RETURNING address INTO taken;
    RETURN taken;
END $$
"""

# Locks one candidate subnet and takes an address in each family asked ('taken'), or
# says why not: 'full', 'gone' (deleted meanwhile) or 'overlap' (an inline range sharing
# addresses with others, which the daemon's own path handles).
TAKE_IN_SUBNET = """
CREATE FUNCTION ipamd_take_in_subnet(
    p_subnet_id integer, p_family smallint,
    OUT outcome text, OUT subnet_name text, OUT address_v4 bytea, OUT address_v6 bytea
) LANGUAGE plpgsql AS $$
DECLARE
    spec json;
    families smallint[];
    wanted smallint;
BEGIN
    SELECT s.spec, s.name INTO spec, subnet_name FROM subnets s WHERE s.id = p_subnet_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'gone';
        RETURN;
    END IF;
    IF spec->'overlap' IS NOT NULL THEN
        outcome := 'overlap';
        RETURN;
    END IF;
    families := ARRAY(
        SELECT CASE WHEN strpos(block, ':') > 0 THEN 6 ELSE 4 END
        FROM unnest(string_to_array(spec->>'cidrBlock', ',')) AS block
    );
    IF p_family IS NOT NULL THEN
        families := CASE WHEN p_family = ANY(families) THEN ARRAY[p_family] ELSE ARRAY[]::smallint[] END;
    END IF;
    -- Dual stack is all or nothing: every family must have an address before one is taken
    -- (the lock keeps it so until the end of the statement).
    FOREACH wanted IN ARRAY families LOOP
        IF NOT EXISTS (SELECT 1 FROM free_ranges r WHERE r.subnet_id = p_subnet_id AND r.family = wanted AND r.pool_id IS NULL)
           AND NOT EXISTS (SELECT 1 FROM released r WHERE r.subnet_id = p_subnet_id AND r.family = wanted) THEN
            outcome := 'full';
            RETURN;
        END IF;
    END LOOP;
    IF cardinality(families) = 0 THEN
        outcome := 'full';
        RETURN;
    END IF;
    FOREACH wanted IN ARRAY families LOOP
        IF wanted = 4 THEN
            address_v4 := ipamd_take_dynamic(p_subnet_id, wanted);
        ELSE
            address_v6 := ipamd_take_dynamic(p_subnet_id, wanted);
        END IF;
    END LOOP;
    outcome := 'taken';
END $$
"""

# The allocation as ipamd.store.records.allocation_query reads it, with the outcome and
# what the daemon needs to parse the subnet's spec from its cache.
ALLOCATION_RESULT = """
    outcome text, id integer, subnet_id integer, cluster text, network_key text, namespace text, pod text, interface text,
    address_v4 bytea, address_v6 bytea, mac text, pool_id integer, container_id text, pod_uid text,
    netns text, node text, origin text, hold text, created_at timestamptz,
    subnet_name text, pool_name text, subnet_revision integer, subnet_spec json, subnet_origin text
"""

ALLOCATE = f"""
CREATE FUNCTION ipamd_allocate(
    p_subnet_ids integer[], p_family smallint,
    p_cluster text, p_network_key text, p_namespace text, p_pod text, p_interface text,
    p_container_id text, p_pod_uid text, p_netns text, p_node text, p_origin text, p_hold text,
    p_check_uid boolean, p_replaces_uid text, p_deadline timestamptz
) RETURNS TABLE ({ALLOCATION_RESULT})
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    held allocations%ROWTYPE;
    result_outcome text;
    result_id integer;
    candidate integer;
    take_outcome text;
    take_subnet text;
    take_v4 bytea;
    take_v6 bytea;
BEGIN
    IF clock_timestamp() > p_deadline THEN
        -- The daemon has given up on this call and answered "retry later": a statement
        -- that reaches the server only now (a frozen or partitioned database) must not
        -- allocate behind its back.
        result_outcome := 'expired';
    ELSE
        SELECT * INTO held FROM allocations a
        WHERE a.cluster = p_cluster AND a.network_key = p_network_key AND a.namespace = p_namespace AND a.pod = p_pod AND a.interface = p_interface;
    END IF;
    IF result_outcome IS NULL AND FOUND THEN
        result_id := held.id;
        IF p_check_uid AND held.pod_uid IS NOT NULL AND p_pod_uid IS DISTINCT FROM held.pod_uid
           AND held.pod_uid IS DISTINCT FROM p_replaces_uid THEN
            -- Another instance of the pod holds it: a live holder is never overwritten.
            result_outcome := 'held';
        ELSIF (p_container_id IS NOT NULL AND p_container_id IS DISTINCT FROM held.container_id)
           OR (p_pod_uid IS NOT NULL AND p_pod_uid IS DISTINCT FROM held.pod_uid)
           OR (p_netns IS NOT NULL AND p_netns IS DISTINCT FROM held.netns)
           OR (p_node IS NOT NULL AND p_node IS DISTINCT FROM held.node)
           OR (p_origin = 'cni' AND held.origin <> 'cni')
           OR (p_hold IS NOT NULL AND p_hold IS DISTINCT FROM held.hold) THEN
            -- A new sandbox of the same attachment: same addresses, fresh facts. The pod's
            -- own CNI ADD takes over an adopted allocation for its node's CNI GC.
            UPDATE allocations a SET
                container_id = coalesce(p_container_id, a.container_id), pod_uid = coalesce(p_pod_uid, a.pod_uid),
                netns = coalesce(p_netns, a.netns), node = coalesce(p_node, a.node),
                origin = CASE WHEN p_origin = 'cni' THEN 'cni' ELSE a.origin END, hold = coalesce(p_hold, a.hold)
            WHERE a.id = held.id;
            -- Not found: a release committed since the read, so this ADD allocates afresh.
            result_outcome := CASE WHEN FOUND THEN 'existing' END;
        ELSE
            result_outcome := 'existing';
        END IF;
    END IF;

    IF result_outcome IS NULL THEN
        result_outcome := 'exhausted';
        FOR candidate IN
            SELECT c.id FROM unnest(p_subnet_ids) WITH ORDINALITY AS c(id, n)
            WHERE p_subnet_ids IS NOT NULL ORDER BY c.n
        LOOP
            SELECT * INTO take_outcome, take_subnet, take_v4, take_v6 FROM ipamd_take_in_subnet(candidate, p_family);
            EXIT WHEN take_outcome IN ('taken', 'overlap');
        END LOOP;
        IF p_subnet_ids IS NULL THEN
            -- The provider's subnets with free space in a family asked, walking
            -- ix_subnets_provider_order lazily: full subnets are skipped here, and the
            -- space is checked again under the lock.
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
        END IF;
        IF take_outcome = 'overlap' THEN
            result_outcome := 'overlap';
        ELSIF take_outcome = 'taken' THEN
            INSERT INTO allocations AS a (
                subnet_id, cluster, network_key, namespace, pod, interface, address_v4, address_v6,
                container_id, pod_uid, netns, node, origin, hold
            ) VALUES (
                candidate, p_cluster, p_network_key, p_namespace, p_pod, p_interface, take_v4, take_v6,
                p_container_id, p_pod_uid, p_netns, p_node, p_origin, p_hold
            ) RETURNING a.id INTO result_id;
            INSERT INTO address_events (action, subnet, family, address, allocation_id, cluster, network_key, namespace, pod, interface, container_id)
            SELECT 'allocate', take_subnet, picked.family, picked.address, result_id,
                   p_cluster, p_network_key, p_namespace, p_pod, p_interface, p_container_id
            FROM (VALUES (1, 4::smallint, take_v4), (2, 6::smallint, take_v6)) AS picked(n, family, address)
            WHERE picked.address IS NOT NULL ORDER BY picked.n;
            result_outcome := 'created';
        END IF;
    END IF;

    RETURN QUERY
    SELECT result_outcome, a.id, a.subnet_id, a.cluster::text, a.network_key::text, a.namespace::text, a.pod::text, a.interface::text,
           a.address_v4, a.address_v6, a.mac::text, a.pool_id, a.container_id::text, a.pod_uid::text,
           a.netns::text, a.node::text, a.origin::text, a.hold::text, a.created_at,
           s.name::text, p.name::text, s.revision, s.spec, s.origin::text
    FROM (SELECT 1) AS one
    LEFT JOIN allocations a ON a.id = result_id
    LEFT JOIN subnets s ON s.id = a.subnet_id
    LEFT JOIN pools p ON p.id = a.pool_id;
END $$
"""

# A subnet's pools as the daemon reads them to decide where a released address goes.
POOLS_OF = """
CREATE FUNCTION ipamd_pools_of(p_subnet_id integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_array(p.id, p.name, p.ips::jsonb) ORDER BY p.id), '[]'::jsonb)
    FROM pools p WHERE p.subnet_id = p_subnet_id
$$
"""

# p_give_back maps a family ('4', '6') to the pool id its address returns to, or to null
# for the subnet's reuse queue; a family not in it is not given back (outside the dynamic
# space). Outcomes: 'released'; 'changed' (deleted or taken over since the daemon read it);
# 'stale' (the subnet's spec or pools changed since: decide again).
RELEASE = """
CREATE FUNCTION ipamd_release(
    p_allocation_id integer, p_container_id text, p_pod_uid text,
    p_subnet_revision integer, p_pools jsonb, p_give_back jsonb, p_reason text
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    subnet record;
    gone allocations%ROWTYPE;
    picked record;
BEGIN
    SELECT s.id, s.name, s.revision INTO subnet FROM subnets s
    WHERE s.id = (SELECT a.subnet_id FROM allocations a WHERE a.id = p_allocation_id) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'changed';
    END IF;
    IF subnet.revision <> p_subnet_revision OR ipamd_pools_of(subnet.id) <> p_pools THEN
        RETURN 'stale';
    END IF;
    DELETE FROM allocations a WHERE a.id = p_allocation_id
        AND a.container_id IS NOT DISTINCT FROM p_container_id AND a.pod_uid IS NOT DISTINCT FROM p_pod_uid
    RETURNING * INTO gone;
    IF NOT FOUND THEN
        RETURN 'changed';
    END IF;
    FOR picked IN
        SELECT * FROM (VALUES (1, 4::smallint, gone.address_v4), (2, 6::smallint, gone.address_v6)) AS v(n, family, address)
        WHERE v.address IS NOT NULL ORDER BY v.n
    LOOP
        INSERT INTO address_events (action, subnet, family, address, allocation_id, cluster, network_key, namespace, pod, interface, container_id, reason)
        VALUES ('release', subnet.name, picked.family, picked.address, gone.id,
                gone.cluster, gone.network_key, gone.namespace, gone.pod, gone.interface, gone.container_id, p_reason);
        -- A reservation keeps its address out of every free list.
        CONTINUE WHEN NOT p_give_back ? picked.family::text OR EXISTS (
            SELECT 1 FROM reservations r WHERE r.subnet_id = subnet.id AND r.family = picked.family AND r.address = picked.address
        );
        IF p_give_back->>picked.family::text IS NULL THEN
            INSERT INTO released (subnet_id, family, address) VALUES (subnet.id, picked.family, picked.address);
        ELSE
            INSERT INTO free_ranges (subnet_id, family, pool_id, first, last)
            VALUES (subnet.id, picked.family, (p_give_back->>picked.family::text)::integer, picked.address, picked.address);
        END IF;
    END LOOP;
    RETURN 'released';
END $$
"""

FUNCTIONS = [
    ("ipamd_next_address(bytea)", NEXT_ADDRESS),
    ("ipamd_take_dynamic(integer, smallint)", TAKE_DYNAMIC),
    ("ipamd_take_in_subnet(integer, smallint)", TAKE_IN_SUBNET),
    (
        "ipamd_allocate(integer[], smallint, text, text, text, text, text, text, text, text, text, text, text, boolean, text, timestamptz)",
        ALLOCATE,
    ),
    ("ipamd_pools_of(integer)", POOLS_OF),
    ("ipamd_release(integer, text, text, integer, jsonb, jsonb, text)", RELEASE),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for _, definition in FUNCTIONS:
        op.execute(definition)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature, _ in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
