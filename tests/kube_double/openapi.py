"""A minimal OpenAPI v3 discovery that satisfies kubectl's write commands.

``kubectl create``/``apply``/``replace`` validate objects before sending
them.  They first ask ``/openapi/v3`` whether the server supports the
``fieldValidation`` query parameter for the kind (by finding the PATCH
operation tagged with the kind's ``x-kubernetes-group-version-kind`` and
looking for that parameter); if so they leave validation to the server
instead of needing full schemas.  These documents therefore list the
operations with that parameter and carry no schemas: enough for kubectl,
useless for ``kubectl explain`` (documented as not emulated).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from .resources import ResourceType, group_versions

JSON = dict[str, Any]

_WRITE_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation")
]


def _path_prefix(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _operation(resource: ResourceType, action: str, with_write_params: bool) -> JSON:
    op: JSON = {
        "operationId": f"{action}{resource.kind}",
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": resource.version,
            "kind": resource.kind,
        },
    }
    if with_write_params:
        op["parameters"] = list(_WRITE_PARAMS)
    return op


def group_version_document(
    group: str, version: str, server_version: str, served: Sequence[ResourceType]
) -> JSON | None:
    resources = group_versions(served).get((group, version))
    if resources is None:
        return None
    paths: JSON = {}
    prefix = "/" + _path_prefix(group, version)
    for resource in resources:
        scope = f"{prefix}/namespaces/{{namespace}}" if resource.namespaced else prefix
        paths[f"{scope}/{resource.plural}"] = {
            "get": _operation(resource, "list", False),
            "post": _operation(resource, "post", True),
        }
        paths[f"{scope}/{resource.plural}/{{name}}"] = {
            "get": _operation(resource, "get", False),
            "put": _operation(resource, "put", True),
            "patch": _operation(resource, "patch", True),
            "delete": _operation(resource, "delete", False),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _digest(doc: JSON) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def root_document(server_version: str, served: Sequence[ResourceType]) -> JSON:
    paths: JSON = {}
    for group, version in group_versions(served):
        doc = group_version_document(group, version, server_version, served)
        assert doc is not None
        key = _path_prefix(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={_digest(doc)}"}
    return {"paths": paths}


# ---------------------------------------------------------------------------
# OpenAPI v2, which older kubectl releases (before server-side field
# validation, e.g. Debian's 1.20) download before create/apply.  They only
# accept it as protobuf (gnostic's openapi_v2.Document) and skip client-side
# validation for kinds the document has no definition for, so a document
# with nothing but the mandatory ``swagger`` and ``info`` fields will do.

PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _pb_string(field_number: int, text: str) -> bytes:
    return _pb_bytes(field_number, text.encode())


def _pb_bytes(field_number: int, payload: bytes) -> bytes:
    # Wire type 2 (length-delimited); lengths here stay below 128 bytes
    # except by accident, so encode the varint properly anyway.
    length = len(payload)
    varint = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return bytes([(field_number << 3) | 2]) + bytes(varint) + payload


def swagger_v2_protobuf(server_version: str) -> bytes:
    # Document.swagger = 1, Document.info = 2; Info.title = 1, Info.version = 2.
    info = _pb_string(1, "Kubernetes") + _pb_string(2, server_version)
    return _pb_string(1, "2.0") + _pb_bytes(2, info)


def swagger_v2_json(server_version: str) -> JSON:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": server_version}, "paths": {}}
