"""The one error hierarchy of ipamd.

Every error the daemon can answer with is an ``IpamError`` subclass that knows its HTTP
status, its stable machine code and the CNI error code the shim exits with. The HTTP
middleware (``ipamd.api.middleware``) is the only place that turns them into responses;
third-party exceptions are re-raised as one of these at their adapter.
"""

from __future__ import annotations

from typing import Any, ClassVar


class IpamError(Exception):
    """Base class: an error with a message meant for the operator who sent the request."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    # 100 and above are plugin-specific in the CNI spec; 11 means "try again later".
    cni_code: ClassVar[int] = 999

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "cniCode": self.cni_code}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(IpamError):
    """A request field is missing, of the wrong type or out of range."""

    http_status = 400
    code = "invalid_input"
    cni_code = 7

    def __init__(self, message: str, *, field: str | None = None) -> None:
        if field is not None:
            super().__init__(f"{field}: {message}", field=field)
        else:
            super().__init__(message)
        self.field = field


class ImplausibleSubnet(InvalidInput):
    """A CIDR no attachment network is meant to cover (ipamd.core.sanity): ``details.rule``
    names the rule it breaks; ``force: true`` in the request overrides it."""

    def __init__(self, message: str, *, field: str, rule: str) -> None:
        super().__init__(message, field=field)
        self.details["rule"] = rule
        self.rule = rule


class PayloadTooLarge(IpamError):
    http_status = 413
    code = "payload_too_large"
    cni_code = 7


class Unauthorized(IpamError):
    http_status = 401
    code = "unauthorized"
    cni_code = 100


class Forbidden(IpamError):
    http_status = 403
    code = "forbidden"
    cni_code = 100


class NotFound(IpamError):
    http_status = 404
    code = "not_found"
    cni_code = 100


class AddressConflict(IpamError):
    """A requested address is held, reserved or not assignable."""

    http_status = 409
    code = "address_conflict"
    cni_code = 101


class Exhausted(IpamError):
    """No free address left in the subnet(s) or pool that were asked for."""

    http_status = 409
    code = "exhausted"
    cni_code = 102


class NotAdmitted(IpamError):
    """Subnets or pools exist for the request, but their placement rules (namespaces, nodes,
    label selectors) admit none of them for this pod; the message names each excluding rule."""

    http_status = 409
    code = "not_admitted"
    cni_code = 107


class InUse(IpamError):
    """The object still has live allocations."""

    http_status = 409
    code = "in_use"
    cni_code = 103


class AlreadyExists(IpamError):
    """The name is taken, or the CIDR overlaps another subnet of the same provider."""

    http_status = 409
    code = "already_exists"
    cni_code = 104


class NameTaken(AlreadyExists):
    """Another row holds the unique name (one created at the same moment): raised by the
    store at the insert, where the collision is known."""


class StalePod(IpamError):
    """The request names a pod instance (UID) that is no longer the pod of that name.

    A late ADD from the sandbox of a deleted pod must not take the address of the pod
    that now carries the name; the kubelet tears such a sandbox down, so no retry helps.
    """

    http_status = 409
    code = "stale_pod"
    cni_code = 105


class PreconditionFailed(IpamError):
    """The object changed (or is another one) since the client read it: ``If-Match`` failed."""

    http_status = 412
    code = "precondition_failed"
    cni_code = 100


class Unavailable(IpamError):
    """The database cannot be reached: the caller should retry later."""

    http_status = 503
    code = "unavailable"
    cni_code = 11


class DatabaseFault(Unavailable):
    """The database fails in a way ipamd.store.faults names (``details.fault``: disk full,
    read-only, locked too long, unreachable...); a retry can succeed once it clears."""

    def __init__(self, message: str, *, fault: str) -> None:
        super().__init__(message, fault=fault)
        self.fault = fault


class DatabaseNeedsOperator(DatabaseFault):
    """A database fault no retry clears until an operator acts (the SQLite file gone or
    replaced, authentication refused): CNI code 5, an I/O failure, rather than 11."""

    cni_code = 5


class ConcurrentWrite(Unavailable):
    """Another transaction wrote a row this one also wrote (a unique constraint): a fresh
    transaction sees it. Raised by the store; the service retries on it, and a client that
    gets it retries (CNI code 11)."""


# Errors of the CNI protocol itself. The daemon writes them as CNI error objects in the
# plugin's answer (ipamd.cni); the HTTP statuses apply only if one escapes elsewhere.


class IncompatibleVersion(IpamError):
    """The config's cniVersion is missing, unsupported, or too old for the verb."""

    http_status = 400
    code = "incompatible_cni_version"
    cni_code = 1


class InvalidEnvironment(IpamError):
    """A CNI_* variable is missing or malformed."""

    http_status = 400
    code = "invalid_environment"
    cni_code = 4


class UndecodableConfig(IpamError):
    """The network config is not a JSON object."""

    http_status = 400
    code = "undecodable_config"
    cni_code = 6


class NotAvailable(IpamError):
    """CNI STATUS: the daemon cannot serve an ADD now."""

    http_status = 503
    code = "not_available"
    cni_code = 50


class IncompatiblePlugin(IpamError):
    """The CNI plugin on the node speaks another wire protocol than this daemon."""

    http_status = 400
    code = "incompatible_plugin"
    cni_code = 106
