"""``/openapi.json``: the OpenAPI 3 description of every route (docs/api.md in machine form).

tests/ops/test_openapi.py runs schemathesis against a live daemon with this document, so
a route or a response shape that changes without it fails there.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ipamd.api.body import MAX_ID, json_response
from ipamd.core import identity
from ipamd.core.history import DEFAULT_LIMIT, MAX_LIMIT, ORDERS
from ipamd.core.placement import OPERATORS
from ipamd.core.pool import RESERVATION_TEXT_MAX
from ipamd.core.subnet import NAME_PATTERN, PRIORITY_MAX, PRIORITY_MIN
from ipamd.errors import IpamError

routes = web.RouteTableDef()

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def strict(properties: dict[str, Schema], *, required: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these properties: the daemon rejects unknown fields (400)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def shape(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """A response object: every property listed is always present unless ``optional``."""
    return {
        "type": "object",
        "properties": properties,
        "required": [key for key in properties if key not in optional],
        "additionalProperties": False,
    }


def error_codes() -> list[str]:
    """Every ``code`` of the error hierarchy (ipamd.errors), so that a new error is documented."""
    found, pending = [], [IpamError]
    while pending:
        cls = pending.pop(0)
        if cls.__module__ == IpamError.__module__ and cls.code not in found:
            found.append(cls.code)
        pending += cls.__subclasses__()
    return found


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
PRIORITY: Schema = {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX}
STRINGS: Schema = {"type": "array", "items": STRING}
TIMESTAMP: Schema = nullable({"type": "string", "format": "date-time"})

# Not stored: it lets a request through the subnet sanity rules (ipamd.core.sanity).
FORCE: Schema = {
    "type": "boolean",
    "description": "accept a CIDR the sanity rules refuse (IPv4 shorter than /8, IPv6 shorter than /16, loopback, multicast, unspecified or limited-broadcast space)",
}

# What identifies an attachment in every CNI request (ipamd.api.cni.IDENTITY_FIELDS).
CNI_IDENTITY: dict[str, Schema] = {
    "containerId": STRING,
    "ifName": STRING,
    "netns": nullable(STRING),
    "network": STRING,
    "podNamespace": nullable(STRING),
    "podName": nullable(STRING),
    "podUid": nullable(STRING),
    "ipam": ref("CniIpam"),
    "cniVersion": STRING,
}

LABELS: Schema = {"type": "object", "additionalProperties": STRING}
# The placement rules of a subnet or pool (ipamd.core.placement), in inputs and answers alike.
PLACEMENT: dict[str, Schema] = {
    "namespaces": {
        "type": "array",
        "items": STRING,
        "description": "Kube-OVN: serve only pods of these namespaces (empty: any)",
    },
    "nodeNames": {"type": "array", "items": STRING, "description": "serve only pods on these nodes (empty: any)"},
    "clusters": {
        "type": "array",
        "items": STRING,
        "description": "serve only the daemons of these clusters (--cluster-name) sharing the database (empty: any)",
    },
    "namespaceSelector": ref("LabelSelector"),
    "nodeSelector": ref("LabelSelector"),
    "podSelector": ref("LabelSelector"),
}

# What a reservation takes, to create it (POST) or to rewrite it (PUT).
RESERVATION_INPUT: dict[str, Schema] = {
    "subnet": STRING,
    "address": STRING,
    "mac": nullable(STRING),
    "owner": nullable(
        {
            "type": "string",
            "maxLength": RESERVATION_TEXT_MAX,
            "description": "namespace/pod, or the pod name alone",
        }
    ),
    "note": nullable({"type": "string", "maxLength": RESERVATION_TEXT_MAX}),
}

SCHEMAS: dict[str, Schema] = {
    "LabelSelector": strict(
        {
            "matchLabels": LABELS,
            "matchExpressions": {
                "type": "array",
                "items": strict(
                    {"key": STRING, "operator": {"type": "string", "enum": list(OPERATORS)}, "values": STRINGS},
                    required=("key", "operator"),
                ),
            },
        }
    ),
    "Error": shape(
        {
            "error": shape(
                {
                    "code": {"type": "string", "enum": [*error_codes(), "method_not_allowed", "http_error"]},
                    "message": STRING,
                    "cniCode": INTEGER,
                    "details": {"type": "object"},
                },
                optional=("details",),
            )
        }
    ),
    "Route": shape({"dst": STRING, "gw": STRING}, optional=("gw",)),
    "RouteInput": strict({"dst": STRING, "gw": nullable(STRING)}, required=("dst",)),
    "Dns": shape(
        {"nameservers": STRINGS, "domain": STRING, "search": STRINGS, "options": STRINGS},
        optional=("nameservers", "domain", "search", "options"),
    ),
    "DnsInput": strict({"nameservers": STRINGS, "domain": STRING, "search": STRINGS, "options": STRINGS}),
    "FamilyUsage": shape(
        {
            "total": COUNT,
            "used": COUNT,
            "available": COUNT,
            "excluded": COUNT,
            "reserved": COUNT,
            "pooled": COUNT,
            "freeRanges": STRINGS,
        }
    ),
    "SubnetInput": strict(
        {
            "name": {"type": "string", "pattern": NAME_PATTERN.pattern, "description": "lowercase DNS-like name"},
            "cidrBlock": {
                "type": "string",
                "description": "one CIDR, or 'v4cidr,v6cidr' for dual stack",
                "examples": ["192.0.2.0/24"],
            },
            "gateway": nullable(
                {"type": "string", "description": "'v4', 'v4,v6' or 'none'; default: first usable address"}
            ),
            "excludeIps": nullable(
                {"type": "array", "items": STRING, "description": "addresses, a..b ranges or CIDRs"}
            ),
            "provider": nullable({"type": "string", "description": "the NAD's <name>.<namespace>"}),
            "priority": PRIORITY,
            "routes": nullable({"type": "array", "items": ref("RouteInput")}),
            "dns": nullable(ref("DnsInput")),
            "force": FORCE,
            **{key: nullable(schema) for key, schema in PLACEMENT.items()},
        },
        required=("name", "cidrBlock"),
    ),
    "SubnetPatch": strict(
        {
            "name": STRING,
            "cidrBlock": STRING,
            "gateway": nullable(STRING),
            "excludeIps": nullable({"type": "array", "items": STRING}),
            "provider": nullable(STRING),
            "priority": PRIORITY,
            "routes": nullable({"type": "array", "items": ref("RouteInput")}),
            "dns": nullable(ref("DnsInput")),
            "force": FORCE,
            **{key: nullable(schema) for key, schema in PLACEMENT.items()},
        }
    ),
    "Subnet": shape(
        {
            "name": STRING,
            "cidrBlock": STRING,
            "gateway": STRING,
            "excludeIps": STRINGS,
            "provider": nullable(STRING),
            "priority": INTEGER,
            "routes": {"type": "array", "items": ref("Route")},
            "dns": ref("Dns"),
            "overlap": {
                **shape({"networkName": STRING, "enableOverlappingRanges": {"type": "boolean"}}),
                "description": "inline subnets only: the address space shared with overlapping inline ranges",
            },
            "origin": {"type": "string", "enum": ["api", "config", "inline"]},
            "createdAt": TIMESTAMP,
            "usage": shape({"v4": ref("FamilyUsage"), "v6": ref("FamilyUsage")}, optional=("v4", "v6")),
            **PLACEMENT,
        },
        optional=("overlap", *PLACEMENT),
    ),
    "SubnetList": shape({"items": {"type": "array", "items": ref("Subnet")}}),
    "SubnetDeleted": shape({"deleted": STRING, "released": COUNT}),
    "PoolInput": strict(
        {
            "name": {"type": "string", "pattern": NAME_PATTERN.pattern},
            "subnet": STRING,
            "ips": {
                "type": "array",
                "items": STRING,
                "minItems": 1,
                "description": "addresses, a..b ranges or CIDRs inside the subnet",
            },
            **{key: nullable(schema) for key, schema in PLACEMENT.items()},
        },
        required=("name", "subnet", "ips"),
    ),
    "Pool": shape(
        {
            "name": STRING,
            "subnet": STRING,
            "ips": STRINGS,
            "origin": {"type": "string", "enum": ["api", "config", "inline"]},
            "createdAt": TIMESTAMP,
            "usage": shape({"total": COUNT, "used": COUNT, "available": COUNT, "freeRanges": STRINGS}),
            **PLACEMENT,
        },
        optional=tuple(PLACEMENT),
    ),
    "PoolList": shape({"items": {"type": "array", "items": ref("Pool")}}),
    "PoolDeleted": shape({"deleted": STRING}),
    "ReservationInput": strict(RESERVATION_INPUT, required=("subnet", "address")),
    # The same body; subnet and address name the reservation: left out, or its own.
    "ReservationReplace": strict(
        {
            **RESERVATION_INPUT,
            "subnet": {"type": "string", "description": "the reservation's subnet (another one is refused)"},
            "address": {"type": "string", "description": "the reservation's address (another one is refused)"},
        }
    ),
    "Reservation": shape(
        {
            "id": INTEGER,
            "subnet": STRING,
            "address": STRING,
            "mac": nullable(STRING),
            "owner": nullable(STRING),
            "note": nullable(STRING),
            "origin": {"type": "string", "enum": ["api", "config", "inline"]},
            "createdAt": TIMESTAMP,
        }
    ),
    "ReservationList": shape({"items": {"type": "array", "items": ref("Reservation")}}),
    "ReservationDeleted": shape({"deleted": INTEGER}),
    "AllocationAddress": shape(
        {"address": STRING, "family": {"type": "integer", "enum": [4, 6]}, "cidr": STRING, "gateway": nullable(STRING)}
    ),
    "Owner": shape(
        {
            "namespace": STRING,
            "pod": STRING,
            "interface": STRING,
            "containerId": nullable(STRING),
            "podUid": nullable(STRING),
        }
    ),
    "Allocation": shape(
        {
            "id": INTEGER,
            "subnet": STRING,
            "cluster": {"type": "string", "description": "the Kubernetes cluster (--cluster-name) of the attachment"},
            "networkKey": STRING,
            "owner": ref("Owner"),
            "addresses": {"type": "array", "items": ref("AllocationAddress")},
            "mac": nullable(STRING),
            "pool": nullable(STRING),
            "node": nullable(STRING),
            "hold": nullable(STRING),
            "routes": {"type": "array", "items": ref("Route")},
            "dns": ref("Dns"),
            "createdAt": TIMESTAMP,
        }
    ),
    "AllocationList": shape({"items": {"type": "array", "items": ref("Allocation")}}),
    "AllocationInput": strict(
        {
            "subnet": STRING,
            "owner": strict(
                {
                    "namespace": {"type": "string", "maxLength": identity.NAMESPACE_MAX},
                    "pod": {"type": "string", "minLength": 1, "maxLength": identity.POD_MAX},
                    "interface": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": identity.INTERFACE_MAX_BYTES,
                        "description": f"at most {identity.INTERFACE_MAX_BYTES} bytes (UTF-8)",
                    },
                },
                required=("pod",),
            ),
            "address": nullable({"type": "string", "description": "one address, or 'v4,v6' for dual stack"}),
            "mac": nullable(STRING),
            "node": nullable(
                {"type": "string", "description": "the owner's node, for placement rules (default: this daemon's)"}
            ),
            "labels": nullable(strict({kind: nullable(LABELS) for kind in ("pod", "namespace", "node")})),
        },
        required=("subnet", "owner"),
    ),
    "HistoryEntry": shape(
        {
            "subnet": STRING,
            "cluster": nullable(STRING),
            "networkKey": nullable(STRING),
            "namespace": nullable(STRING),
            "pod": nullable(STRING),
            "interface": nullable(STRING),
            "containerId": nullable(STRING),
            "allocationId": nullable(INTEGER),
            "from": {
                **TIMESTAMP,
                "description": "the allocation; null when it is older than the history kept (--history-retention)",
            },
            "to": {**TIMESTAMP, "description": "the release; null while the address is held"},
            "releaseReason": nullable(STRING),
        }
    ),
    "AddressInfo": shape(
        {
            "address": STRING,
            "holders": {"type": "array", "items": ref("Allocation")},
            "history": {
                "type": "array",
                "items": ref("HistoryEntry"),
                "description": "one page: one entry per allocation, in allocation order",
            },
            "continue": {
                **nullable(STRING),
                "description": "pass as ?continue= for the next page; null on the last page",
            },
        }
    ),
    "CniIpam": {
        "type": "object",
        "description": "the ipam section of the network configuration, unchanged (Kube-OVN, Whereabouts or host-local style)",
    },
    "CniAddRequest": strict(
        {
            **CNI_IDENTITY,
            "ips": nullable({"type": "array", "items": STRING, "maxItems": 2}),
            "mac": nullable(STRING),
        },
        required=("containerId", "ifName", "network", "ipam"),
    ),
    "CniAdoptRequest": strict(
        {
            **CNI_IDENTITY,
            "ips": {"type": "array", "items": STRING, "minItems": 1, "maxItems": 2},
            "mac": nullable(STRING),
            "node": nullable({"type": "string", "description": "the pod's node (default: this daemon's)"}),
        },
        required=("containerId", "ifName", "network", "ipam", "ips"),
    ),
    "CniCheckRequest": strict(
        {
            **CNI_IDENTITY,
            "prevResult": {"type": "object"},
        },
        required=("containerId", "ifName", "network", "ipam", "prevResult"),
    ),
    "CniGcRequest": strict(
        {
            "network": STRING,
            "ipam": ref("CniIpam"),
            "cniVersion": STRING,
            "validAttachments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"containerId": STRING, "ifName": STRING},
                    "required": ["containerId", "ifName"],
                },
                "description": "every attachment the runtime still has (the CNI SPEC's cni.dev/valid-attachments)",
            },
        },
        required=("network", "ipam", "validAttachments"),
    ),
    "CniIp": shape({"address": STRING, "gateway": nullable(STRING), "family": {"type": "integer", "enum": [4, 6]}}),
    "CniAddResponse": shape(
        {
            "allocationId": INTEGER,
            "subnet": STRING,
            "ips": {"type": "array", "items": ref("CniIp")},
            "routes": {"type": "array", "items": ref("Route")},
            "dns": ref("Dns"),
            "mac": nullable(STRING),
        }
    ),
    "CniDelResponse": shape(
        {"released": COUNT, "kept": {"type": "boolean"}, "warning": STRING}, optional=("kept", "warning")
    ),
    "CniCheckResponse": shape({"ips": {"type": "array", "items": ref("CniIp")}}),
    "Released": shape({"released": COUNT}),
    "Healthy": shape({"ok": {"type": "boolean", "enum": [True]}}),
    "Ready": shape({"ready": {"type": "boolean", "enum": [True]}}),
    # Not strict: a newer plugin may send fields this daemon does not know (docs/api.md).
    "CniExecRequest": {
        "type": "object",
        "properties": {
            "wire": {"type": "integer", "enum": [1]},
            "env": {"type": "object", "additionalProperties": STRING},
            "config": STRING,
        },
        "required": ["wire", "env", "config"],
    },
    "CniExecAnswer": shape(
        {"exitCode": {"type": "integer", "minimum": 0, "maximum": 255}, "stdout": STRING, "stderr": STRING}
    ),
}

ERROR_MEANINGS = {
    "400": "a field is missing, of the wrong type or invalid; the message names it",
    "401": "TCP listener: no or unknown bearer token",
    "403": "TCP listener: read-only token (or no tokens configured) on a state-changing route",
    "404": "the named object does not exist",
    "409": "address_conflict, exhausted, not_admitted, in_use, already_exists or stale_pod",
    "412": "If-Match names another entity tag: the allocation passed to another pod instance since it was read",
    "413": "request body over 1 MiB",
    "503": "the database is unreachable; retry later",
}


def error(status: str) -> Schema:
    return {"description": ERROR_MEANINGS[status], "content": {"application/json": {"schema": ref("Error")}}}


def ok(description: str, schema_name: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}


def operation(
    summary: str,
    responses: dict[str, Schema],
    *,
    errors: tuple[str, ...],
    body: str | None = None,
    parameters: list[Schema] | None = None,
    changes_state: bool = False,
    tag: str,
) -> Schema:
    """One operation; state-changing ones need an admin token on the TCP listener."""
    statuses = set(errors) | {"400", "503"}
    if changes_state:
        statuses |= {"401", "403"}
    if body is not None:
        statuses.add("413")
    op: Schema = {
        "summary": summary,
        "tags": [tag],
        "responses": {**responses, **{status: error(status) for status in sorted(statuses)}},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if parameters:
        op["parameters"] = parameters
    op["security"] = [{"bearerAuth": []}] if changes_state else [{}, {"bearerAuth": []}]
    return op


def path_parameter(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query_parameter(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


SUBNET_NAME = path_parameter("name", STRING, "subnet name")
POOL_NAME = path_parameter("name", STRING, "pool name")
ADDRESS: Schema = {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
# Ids are 32-bit columns; the daemon refuses a larger one before it reaches the database.
NUMERIC_ID: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
RESERVATION_ID = path_parameter("id", NUMERIC_ID, "reservation id")
ALLOCATION_ID = path_parameter("id", NUMERIC_ID, "allocation id")

PATHS: dict[str, Schema] = {
    "/healthz": {"get": operation("the process serves", {"200": ok("serving", "Healthy")}, errors=(), tag="health")},
    "/readyz": {
        "get": operation("the database answers and is migrated", {"200": ok("ready", "Ready")}, errors=(), tag="health")
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (docs/metrics.md)",
            "tags": ["health"],
            "security": [{}],
            "responses": {
                "200": {"description": "text exposition format 0.0.4", "content": {"text/plain": {"schema": STRING}}}
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "this document",
            "tags": ["health"],
            "security": [{}],
            "responses": {
                "200": {
                    "description": "OpenAPI 3 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/v1/cni/exec": {
        "post": operation(
            "run one CNI verb for the plugin (wire protocol 1): every CNI failure is in the answer",
            {"200": ok("what the plugin prints and its exit status", "CniExecAnswer")},
            errors=(),
            body="CniExecRequest",
            changes_state=True,
            tag="cni",
        )
    },
    "/v1/cni/add": {
        "post": operation(
            "allocate for a CNI ADD (idempotent per attachment)",
            {"200": ok("the attachment's addresses", "CniAddResponse")},
            errors=("404", "409"),
            body="CniAddRequest",
            changes_state=True,
            tag="cni",
        )
    },
    "/v1/cni/adopt": {
        "post": operation(
            "record an address another IPAM gave a running pod (ipamctl import); a CNI GC leaves it alone",
            {"200": ok("the attachment's addresses", "CniAddResponse")},
            errors=("400", "404", "409"),
            body="CniAdoptRequest",
            changes_state=True,
            tag="cni",
        )
    },
    "/v1/cni/del": {
        "post": operation(
            "release for a CNI DEL (unknown attachments are fine)",
            {"200": ok("how many allocations were released", "CniDelResponse")},
            errors=(),
            body="CniAddRequest",
            changes_state=True,
            tag="cni",
        )
    },
    "/v1/cni/check": {
        "post": operation(
            "compare a prevResult with what the daemon holds",
            {"200": ok("the held addresses match", "CniCheckResponse")},
            errors=("404", "409"),
            body="CniCheckRequest",
            changes_state=True,
            tag="cni",
        )
    },
    "/v1/cni/gc": {
        "post": operation(
            "release allocations of a network not in validAttachments",
            {"200": ok("how many were released", "Released")},
            errors=("404",),
            body="CniGcRequest",
            changes_state=True,
            tag="cni",
        )
    },
    "/v1/cni/status": {"get": operation("CNI STATUS", {"200": ok("ready", "Ready")}, errors=(), tag="cni")},
    "/v1/subnets": {
        "get": operation(
            "list subnets with usage", {"200": ok("subnets by name", "SubnetList")}, errors=(), tag="subnets"
        ),
        "post": operation(
            "create a subnet",
            {"201": ok("created", "Subnet")},
            errors=("409",),
            body="SubnetInput",
            changes_state=True,
            tag="subnets",
        ),
    },
    "/v1/subnets/{name}": {
        "get": operation(
            "a subnet with usage and free ranges",
            {"200": ok("the subnet", "Subnet")},
            errors=("404",),
            parameters=[SUBNET_NAME],
            tag="subnets",
        ),
        "patch": operation(
            "change fields of a subnet (held addresses must stay valid)",
            {"200": ok("updated", "Subnet")},
            errors=("404", "409"),
            body="SubnetPatch",
            parameters=[SUBNET_NAME],
            changes_state=True,
            tag="subnets",
        ),
        "delete": operation(
            "delete a subnet; ?force=true releases its live allocations first",
            {"200": ok("deleted", "SubnetDeleted")},
            errors=("404", "409"),
            changes_state=True,
            tag="subnets",
            parameters=[SUBNET_NAME, query_parameter("force", {"type": "boolean"}, "release live allocations first")],
        ),
    },
    "/v1/pools": {
        "get": operation("list pools with usage", {"200": ok("pools by name", "PoolList")}, errors=(), tag="pools"),
        "post": operation(
            "create a pool inside a subnet",
            {"201": ok("created", "Pool")},
            errors=("404", "409"),
            body="PoolInput",
            changes_state=True,
            tag="pools",
        ),
    },
    "/v1/pools/{name}": {
        "get": operation(
            "a pool with usage", {"200": ok("the pool", "Pool")}, errors=("404",), parameters=[POOL_NAME], tag="pools"
        ),
        "put": operation(
            "create the pool, or replace its subnet and members in one transaction (held addresses stay held)",
            {"200": ok("replaced", "Pool"), "201": ok("created", "Pool")},
            errors=("404", "409"),
            body="PoolInput",
            parameters=[POOL_NAME],
            changes_state=True,
            tag="pools",
        ),
        "delete": operation(
            "delete a pool",
            {"200": ok("deleted", "PoolDeleted")},
            errors=("404",),
            parameters=[POOL_NAME],
            changes_state=True,
            tag="pools",
        ),
    },
    "/v1/reservations": {
        "get": operation(
            "list reservations", {"200": ok("reservations by id", "ReservationList")}, errors=(), tag="reservations"
        ),
        "post": operation(
            "reserve one address",
            {"201": ok("created", "Reservation")},
            errors=("404", "409"),
            body="ReservationInput",
            changes_state=True,
            tag="reservations",
        ),
    },
    "/v1/reservations/{id}": {
        "get": operation(
            "a reservation",
            {"200": ok("the reservation", "Reservation")},
            errors=("404",),
            parameters=[RESERVATION_ID],
            tag="reservations",
        ),
        "put": operation(
            "rewrite a reservation's mac, owner and note in one transaction (its address stays reserved "
            "throughout; a field left out becomes null); subnet and address, if given, must be its own",
            {"200": ok("replaced", "Reservation")},
            errors=("404",),
            body="ReservationReplace",
            parameters=[RESERVATION_ID],
            changes_state=True,
            tag="reservations",
        ),
        "delete": operation(
            "delete a reservation",
            {"200": ok("deleted", "ReservationDeleted")},
            errors=("404",),
            parameters=[RESERVATION_ID],
            changes_state=True,
            tag="reservations",
        ),
    },
    "/v1/allocations": {
        "get": operation(
            "list allocations",
            {"200": ok("allocations by id", "AllocationList")},
            errors=(),
            tag="allocations",
            parameters=[
                query_parameter(key, STRING, meaning)
                for key, meaning in (
                    ("subnet", "subnet name"),
                    ("namespace", "pod namespace"),
                    ("pod", "pod name"),
                    ("provider", "network key (provider)"),
                    ("node", "node that made the allocation"),
                    ("cluster", "Kubernetes cluster (--cluster-name) of the attachment; every cluster when absent"),
                )
            ],
        ),
        "post": operation(
            "allocate for an owner outside Kubernetes",
            {"201": ok("allocated", "Allocation")},
            errors=("404", "409"),
            body="AllocationInput",
            changes_state=True,
            tag="allocations",
        ),
    },
    "/v1/allocations/{id}": {
        "get": operation(
            "an allocation",
            {"200": ok("the allocation", "Allocation")},
            errors=("404",),
            parameters=[ALLOCATION_ID],
            tag="allocations",
        ),
        "delete": operation(
            "release every address of an allocation",
            {"200": ok("the released allocation", "Allocation")},
            errors=("404", "412"),
            parameters=[
                ALLOCATION_ID,
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "schema": STRING,
                    "description": "release only if the allocation still has this ETag (from GET or POST), or *",
                },
            ],
            changes_state=True,
            tag="allocations",
        ),
    },
    "/v1/ips/{address}": {
        "get": operation(
            "who holds an address now, and who held it before (a page at a time)",
            {"200": ok("holders and history", "AddressInfo")},
            errors=(),
            tag="addresses",
            parameters=[
                path_parameter("address", ADDRESS, "an IPv4 or IPv6 address"),
                query_parameter(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                    "at most this many history entries per page",
                ),
                query_parameter(
                    "continue",
                    STRING,
                    "the continue value of the previous page, unchanged; a page resumes after the last allocation listed, "
                    "so allocations made meanwhile neither repeat nor shift entries",
                ),
                query_parameter(
                    "since",
                    {"type": "string", "format": "date-time"},
                    "only holdings not released before this time (RFC 3339)",
                ),
                query_parameter(
                    "until",
                    {"type": "string", "format": "date-time"},
                    "only holdings that started before this time (RFC 3339)",
                ),
                query_parameter(
                    "order",
                    {"type": "string", "enum": list(ORDERS), "default": "oldest"},
                    "oldest or newest allocation first",
                ),
            ],
        )
    },
}

OPERATION_IDS = {
    ("/healthz", "get"): "healthz",
    ("/readyz", "get"): "readyz",
    ("/metrics", "get"): "metrics",
    ("/openapi.json", "get"): "openapi",
    ("/v1/cni/add", "post"): "cniAdd",
    ("/v1/cni/adopt", "post"): "cniAdopt",
    ("/v1/cni/del", "post"): "cniDel",
    ("/v1/cni/check", "post"): "cniCheck",
    ("/v1/cni/gc", "post"): "cniGc",
    ("/v1/cni/status", "get"): "cniStatus",
    ("/v1/subnets", "get"): "listSubnets",
    ("/v1/subnets", "post"): "createSubnet",
    ("/v1/subnets/{name}", "get"): "getSubnet",
    ("/v1/subnets/{name}", "patch"): "patchSubnet",
    ("/v1/subnets/{name}", "delete"): "deleteSubnet",
    ("/v1/pools", "get"): "listPools",
    ("/v1/pools", "post"): "createPool",
    ("/v1/pools/{name}", "get"): "getPool",
    ("/v1/pools/{name}", "put"): "replacePool",
    ("/v1/pools/{name}", "delete"): "deletePool",
    ("/v1/reservations", "get"): "listReservations",
    ("/v1/reservations", "post"): "createReservation",
    ("/v1/reservations/{id}", "get"): "getReservation",
    ("/v1/reservations/{id}", "put"): "replaceReservation",
    ("/v1/reservations/{id}", "delete"): "deleteReservation",
    ("/v1/allocations", "get"): "listAllocations",
    ("/v1/allocations", "post"): "createAllocation",
    ("/v1/allocations/{id}", "get"): "getAllocation",
    ("/v1/allocations/{id}", "delete"): "releaseAllocation",
    ("/v1/ips/{address}", "get"): "getAddress",
}

# What a created object leads to (OpenAPI links): clients and test generators follow them.
LINKS = {
    ("/v1/subnets", "post", "201"): ("name", "$response.body#/name", ("getSubnet", "patchSubnet", "deleteSubnet")),
    ("/v1/pools", "post", "201"): ("name", "$response.body#/name", ("getPool", "deletePool")),
    ("/v1/reservations", "post", "201"): (
        "id",
        "$response.body#/id",
        ("getReservation", "replaceReservation", "deleteReservation"),
    ),
    ("/v1/allocations", "post", "201"): ("id", "$response.body#/id", ("getAllocation", "releaseAllocation")),
}


def _annotate(paths: dict[str, Schema]) -> None:
    """Adds operation ids and links to the operations above."""
    for (path, method), operation_id in OPERATION_IDS.items():
        paths[path][method]["operationId"] = operation_id
    for (path, method, status), (parameter, expression, targets) in LINKS.items():
        paths[path][method]["responses"][status]["links"] = {
            target: {"operationId": target, "parameters": {parameter: expression}} for target in targets
        }


_annotate(PATHS)

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "ipamd",
        "version": "1",
        "description": "Cluster-wide IPAM for Kubernetes secondary networks. Served on the Unix socket (no authentication) "
        "and the optional TCP listener (bearer tokens for state-changing requests). See docs/api.md.",
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "a token from --token-file"}
        },
    },
}


def document() -> Schema:
    """Returns the OpenAPI document."""
    return DOCUMENT


@routes.get("/openapi.json")
async def serve(request: web.Request) -> web.Response:
    return json_response(DOCUMENT)
