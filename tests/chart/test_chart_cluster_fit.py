"""The chart on real clusters: renders valid for the API versions it supports, SELinux,
the optional admission policy, and no update strategy that puts two daemons on a node."""

from __future__ import annotations

from typing import Any

import pytest
from helmrender import NAMESPACE
from test_chart_render import VALUE_SETS

validate = pytest.importorskip(
    "kubernetes_validate.utils", reason="kubernetes-validate (the test extra) is not installed"
)

OLDEST = "1.27.0"
NEWEST = validate.latest_version()
POLICY = {"admissionPolicy": {"enabled": True}}


def _problems(rendered: Any, version: str) -> list[str]:
    problems = []
    for obj in rendered.objects:
        body = {k: v for k, v in obj.items() if k != "__template__"}
        if body.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in the Kubernetes API
        try:
            validate.validate(body, version, strict=True)
        except validate.ValidationError as e:
            problems.append(f"{obj['kind']} ({obj['__template__']}): {e.message} at {list(e.path)}")
    return problems


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_renders_pass_kubernetes_validate_strict(render: Any, name: str, version: str) -> None:
    assert _problems(render(VALUE_SETS[name]), version) == []


def test_the_admission_policy_renders_valid_for_the_newest_api(render: Any) -> None:
    rendered = render(POLICY)
    assert _problems(rendered, NEWEST) == []
    policy = rendered.one("ValidatingAdmissionPolicy")
    binding = rendered.one("ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    [condition] = policy["spec"]["matchConditions"]
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    assert condition["expression"] == f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:{sa}"'
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods", "pods/status"]}
    ]
    expressions = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "authentication.kubernetes.io/node-name" in " ".join(v["expression"] for v in policy["spec"]["variables"])
    assert "(allocated|ip_address|mac_address|cidr|gateway)" in expressions
    # Off by default: clusters before 1.30 have no admissionregistration.k8s.io/v1 policies.
    assert not render().all("ValidatingAdmissionPolicy")


def test_the_pod_runs_as_spc_t_unless_told_otherwise(render: Any) -> None:
    assert render().pod_spec["securityContext"]["seLinuxOptions"] == {"type": "spc_t"}
    assert "seLinuxOptions" not in render({"seLinuxOptions": None}).pod_spec["securityContext"]
    custom = {"type": "spc_t", "level": "s0:c123,c456"}
    assert render({"seLinuxOptions": custom}).pod_spec["securityContext"]["seLinuxOptions"] == custom


def test_max_surge_is_refused(render_error: Any) -> None:
    error = render_error(
        {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    )
    assert "maxSurge" in error
