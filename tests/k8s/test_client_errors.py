"""The one place API statuses become ipamd errors (``ipamd.k8s.client.error_for``)."""

from __future__ import annotations

import json

import pytest

from ipamd.errors import AlreadyExists, InvalidInput, NotFound, Unavailable
from ipamd.k8s.client import Conflict, Gone, Refused, TooManyRequests, error_for, wait_asked
from ipamd.k8s.watch import Backoff


def status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}
    ).encode()


@pytest.mark.parametrize(
    ("code", "reason", "kind", "cni_code"),
    [
        pytest.param(404, "NotFound", NotFound, 100, id="404"),
        pytest.param(409, "Conflict", Conflict, 104, id="409"),
        pytest.param(410, "Expired", Gone, 11, id="410"),
        pytest.param(403, "Forbidden", Refused, 11, id="403"),
        pytest.param(401, "Unauthorized", Refused, 11, id="401"),
        pytest.param(422, "Invalid", InvalidInput, 7, id="422"),
        pytest.param(500, "InternalError", Unavailable, 11, id="500"),
        pytest.param(429, "TooManyRequests", TooManyRequests, 11, id="429"),
    ],
)
def test_statuses_map_to_ipamd_errors(code, reason, kind, cni_code):
    error = error_for(code, status(code, reason, "it went wrong"), what="GET /api/v1/pods")
    assert type(error) is kind
    assert error.cni_code == cni_code
    assert f"GET /api/v1/pods: {code} {reason}: it went wrong" in error.message


def test_subclasses_stay_ipamd_errors():
    assert issubclass(Gone, Unavailable) and issubclass(Refused, Unavailable) and issubclass(Conflict, AlreadyExists)


def test_refusals_point_at_rbac():
    error = error_for(
        403,
        status(403, "Forbidden", 'pods is forbidden: User "x" cannot list resource "pods"'),
        what="GET /api/v1/pods",
    )
    assert error.message.endswith("grant ipamd's service account the RBAC rules of docs/kubernetes.md")


def test_a_body_that_is_not_a_status():
    error = error_for(502, b"<html>bad gateway</html>", what="GET /api/v1/pods")
    assert error.message == "kubernetes API unavailable (GET /api/v1/pods: 502: <html>bad gateway</html>); retry later"


def test_every_backoff_waits_at_least_what_a_429_asks():
    busy = error_for(
        429, status(429, "TooManyRequests", "too many requests"), what="GET /api/v1/pods", headers={"Retry-After": "20"}
    )
    assert wait_asked(busy) == 20 and wait_asked(Unavailable("down")) == 0
    backoff = Backoff(first=0.2, ceiling=1.0)
    assert backoff.next(busy) == 20
    assert backoff.next(Unavailable("down")) < 1.0
