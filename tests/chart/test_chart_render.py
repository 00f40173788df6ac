"""charts/ipamd renders what the daemon and the cluster need, for each supported shape."""

from __future__ import annotations

import argparse
import base64
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from helmrender import CHART_DIR, NAMESPACE, check_api_types, helm

from ipamd import cli, declarative
from ipamd.api.auth import load_tokens
from ipamd.config import add_serve_arguments
from ipamd.core.pool import canonical_pool, canonical_reservation
from ipamd.core.subnet import canonical_subnet

REPO = CHART_DIR.parents[1]

POSTGRES = {"database": {"type": "postgresql", "existingSecret": "ipamd-db"}, "cluster": {"nodeCount": 5}}
METRICS = {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}}
API = {"api": {"listen": {"enabled": True}, "tokens": {"existingSecret": "my-tokens", "secretKey": "tokens.txt"}}}
CNI_DIR = {"cni": {"binDir": "/var/lib/cni/bin", "alsoAsKubeOvn": True}}
SUBNETS = {
    "ipam": {
        "subnets": [
            {
                "name": "macvlan-net",
                "cidrBlock": "192.0.2.0/24",
                "gateway": "192.0.2.1",
                "excludeIps": ["192.0.2.2..192.0.2.10"],
                "provider": "macvlan-net.default",
                "priority": 0,
                "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}],
                "dns": {"nameservers": ["192.0.2.53"]},
            },
            {"name": "dual", "cidrBlock": "203.0.113.0/24,2001:db8:1::/64", "provider": "dual.default"},
        ],
        "pools": [{"name": "db", "subnet": "macvlan-net", "ips": ["192.0.2.50..192.0.2.59"]}],
        "reservations": [
            {
                "subnet": "macvlan-net",
                "address": "192.0.2.7",
                "mac": "02:00:00:00:00:07",
                "owner": "default/router-a",
                "note": "lab router",
            }
        ],
    }
}

VALUE_SETS = {
    "default": {},
    "postgresql": POSTGRES,
    "metrics": METRICS,
    "api": API,
    "cni-dir": CNI_DIR,
    "subnets": SUBNETS,
    "everything": {
        **POSTGRES,
        **METRICS,
        **API,
        **CNI_DIR,
        **SUBNETS,
        "socket": {"group": 1234},
        "log": {"format": "json"},
    },
}


# --------------------------------------------------------------------------- lint, types


@pytest.mark.parametrize(
    "values", [{}, POSTGRES, {**POSTGRES, **METRICS, **API}], ids=["default", "postgresql", "all-on"]
)
def test_lint_passes(chart: Any, values: dict[str, Any]) -> None:
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is "info" (e.g. "icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_matches_the_kubernetes_api_types(render: Any, name: str) -> None:
    rendered = render(VALUE_SETS[name])
    problems = [p for obj in rendered.objects for p in check_api_types(obj)]
    assert problems == []
    for obj in rendered.objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


# --------------------------------------------------------------------------- defaults


def test_default_render_objects(render: Any) -> None:
    rendered = render()
    assert rendered.kinds() == {
        "DaemonSet",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    }
    ds = rendered.one("DaemonSet")
    assert ds["metadata"]["name"] == "ipamd"
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def test_default_pod_runs_everywhere_as_node_critical(render: Any) -> None:
    spec = render().pod_spec
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["serviceAccountName"] == "ipamd"
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_default_init_container_installs_the_shim(render: Any) -> None:
    rendered = render()
    init = rendered.init
    assert init["args"] == ["install-cni", "--dest=/host/opt/cni/bin"]
    assert rendered.mounts(init)["/host/opt/cni/bin"]["name"] == "cni-bin"
    assert rendered.volume("cni-bin")["hostPath"] == {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"}
    assert init["image"] == rendered.daemon["image"] == "ipamd:0.1.0"


def test_default_daemon_args(render: Any) -> None:
    rendered = render()
    args = rendered.daemon["args"]
    assert args[0] == "serve"
    assert "--kubernetes" in args
    assert rendered.flag("node-name") == "$(NODE_NAME)"
    assert rendered.flag("cluster-name") == "default"
    assert render({"cluster": {"name": "prod-east"}}).flag("cluster-name") == "prod-east"
    assert rendered.flag("socket") == "/run/ipamd/ipamd.sock"
    assert rendered.flag("database-url") == "sqlite+aiosqlite:////var/lib/ipamd/ipamd.db"
    assert rendered.flag("config") == "/etc/ipamd/config.yaml"
    assert rendered.flag("listen") == "127.0.0.1:9733"
    assert rendered.flag("token-file") == "/etc/ipamd-tokens/tokens"
    assert rendered.flag("reconcile-interval") == "300"
    assert rendered.flag("release-grace") == "60"
    assert rendered.flag("history-retention") == "30d"
    assert rendered.flag("log-format") == "text"
    assert rendered.flag("log-level") == "info"
    assert "--no-migrate" not in args
    assert rendered.flag("socket-group") is None


def test_default_env_node_name_from_the_downward_api(render: Any) -> None:
    rendered = render()
    env = rendered.env(rendered.daemon)
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "IPAMD_DATABASE_URL" not in env


def test_default_mounts(render: Any) -> None:
    rendered = render()
    mounts = rendered.mounts(rendered.daemon)
    assert mounts["/run/ipamd"]["name"] == "socket-dir"
    assert rendered.volume("socket-dir")["hostPath"] == {"path": "/run/ipamd", "type": "DirectoryOrCreate"}
    assert mounts["/var/lib/ipamd"]["name"] == "data"
    assert rendered.volume("data")["hostPath"] == {"path": "/var/lib/ipamd", "type": "DirectoryOrCreate"}
    assert mounts["/etc/ipamd"] == {"name": "config", "mountPath": "/etc/ipamd", "readOnly": True}
    assert rendered.volume("config")["configMap"]["name"] == "ipamd-config"
    assert mounts["/etc/ipamd-tokens"]["readOnly"] is True
    assert rendered.volume("tokens")["secret"] == {"secretName": "ipamd-tokens", "defaultMode": 0o400}
    assert rendered.volume("tmp")["emptyDir"]["medium"] == "Memory"
    # Nothing else of the host is visible to the daemon.
    host_paths = {v["hostPath"]["path"] for v in rendered.pod_spec["volumes"] if "hostPath" in v}
    assert host_paths == {"/run/ipamd", "/opt/cni/bin", "/var/lib/ipamd"}


def test_default_probes_use_the_loopback_listener(render: Any) -> None:
    rendered = render()
    daemon = rendered.daemon
    (port,) = daemon["ports"]
    assert port == {"name": "http", "containerPort": 9733, "protocol": "TCP"}
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        get = daemon[probe]["httpGet"]
        assert get == {"host": "127.0.0.1", "path": path, "port": "http", "scheme": "HTTP"}, probe
        assert daemon[probe]["periodSeconds"] >= 1
    # The port the probes name is the one the daemon listens on.
    assert rendered.flag("listen").endswith(f":{port['containerPort']}")


@pytest.mark.parametrize("which", ["daemon", "init"])
def test_least_privilege_security_context(render: Any, which: str) -> None:
    container = getattr(render(), which)
    sc = container["securityContext"]
    assert sc["runAsUser"] == 0  # hostPath dirs are root-owned 0755
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("which", ["daemon", "init"])
def test_resources_have_requests_and_limits(render: Any, which: str) -> None:
    resources = getattr(render(), which)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_rbac_grants_exactly_what_the_daemon_uses(render: Any) -> None:
    rendered = render()
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in rendered.one("ClusterRole")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("", "pods"): ["get", "list", "patch", "watch"],
        ("", "events"): ["create", "patch"],
        ("apps", "statefulsets"): ["get", "list"],
        ("", "nodes"): ["get", "list", "watch"],
        ("", "namespaces"): ["get", "list", "watch"],
        ("kubevirt.io", "virtualmachines"): ["get", "list"],
        ("kubevirt.io", "virtualmachineinstances"): ["get", "list"],
    }
    role = rendered.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    sa = rendered.one("ServiceAccount")
    for binding, target in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        obj = rendered.one(binding)
        assert obj["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": target,
            "name": rendered.one(target)["metadata"]["name"],
        }
        assert obj["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]


def test_rbac_can_be_left_to_the_user(render: Any) -> None:
    rendered = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "custom"}})
    assert not rendered.kinds() & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert rendered.pod_spec["serviceAccountName"] == "custom"


def test_default_generates_readable_tokens(render: Any) -> None:
    secret = render().one("Secret")
    assert secret["metadata"]["name"] == "ipamd-tokens"
    lines = base64.b64decode(secret["data"]["tokens"]).decode().splitlines()
    roles = [line.split(" ")[0] for line in lines]
    assert roles == ["admin", "readonly"]
    assert all(len(line.split(" ")[1]) >= 16 for line in lines)


def test_generated_tokens_load_in_the_daemon(render: Any, tmp_path: Path) -> None:
    secret = render().one("Secret")
    path = tmp_path / "tokens"
    path.write_bytes(base64.b64decode(secret["data"]["tokens"]))
    table = load_tokens(path)
    assert sorted(role for role, _ in table.tokens) == ["admin", "readonly"]


def test_release_name_shapes_object_names(render: Any) -> None:
    rendered = render(name="net")
    assert rendered.one("DaemonSet")["metadata"]["name"] == "net-ipamd"
    assert rendered.volume("config")["configMap"]["name"] == "net-ipamd-config"
    assert rendered.one("ConfigMap")["metadata"]["name"] == "net-ipamd-config"


def test_notes_tell_how_to_attach_and_check(render: Any) -> None:
    notes = render().notes
    assert "NetworkAttachmentDefinition" in notes
    assert '"type": "ipamd"' in notes
    assert "kubectl -n kube-system exec daemonset/ipamd -c ipamd -- ipamctl get allocations" in notes


# --------------------------------------------------------------------------- the real CLI


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    return parser


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_daemon_args_parse_with_the_daemons_own_parser(render: Any, name: str) -> None:
    rendered = render(VALUE_SETS[name])
    args = [a.replace("$(NODE_NAME)", "node-a") for a in rendered.daemon["args"]]
    assert args[0] == "serve"
    parsed = _serve_parser().parse_args(args[1:])
    assert parsed.kubernetes is True
    assert parsed.node_name == "node-a"
    assert parsed.config_file == "/etc/ipamd/config.yaml"
    assert parsed.listen == rendered.flag("listen")


def test_every_rendered_flag_is_documented_in_cli_md(render: Any) -> None:
    documented = set(re.findall(r"(--[a-z][a-z-]*)", (REPO / "docs" / "cli.md").read_text()))
    rendered = render(
        VALUE_SETS["everything"]
        | {"database": {"type": "sqlite", "migrateOnStart": False}, "cluster": {"nodeCount": 1}}
    )
    for container in (rendered.daemon, rendered.init):
        for arg in container["args"]:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in documented, arg


def test_init_args_install_the_shim_for_real(render: Any, tmp_path: Path) -> None:
    init_args = render(CNI_DIR).init["args"]
    dest = tmp_path / "cni-bin"
    args = [a.replace("/host/opt/cni/bin", str(dest)) for a in init_args]
    assert cli.main(args) == 0
    for name in ("ipamd", "kube-ovn"):
        mode = os.stat(dest / name).st_mode
        assert stat.S_IMODE(mode) == 0o755, name


# --------------------------------------------------------------------------- PostgreSQL


def test_postgresql_url_comes_from_the_secret(render: Any) -> None:
    rendered = render(POSTGRES)
    env = rendered.env(rendered.daemon)
    assert env["IPAMD_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "ipamd-db", "key": "url"}}
    assert rendered.flag("database-url") is None  # never on the command line
    assert "/var/lib/ipamd" not in rendered.mounts(rendered.daemon)
    assert "data" not in {v["name"] for v in rendered.pod_spec["volumes"]}


def test_postgresql_secret_key_and_migrations(render: Any) -> None:
    rendered = render(
        {"database": {"type": "postgresql", "existingSecret": "pg", "secretKey": "uri", "migrateOnStart": False}}
    )
    env = rendered.env(rendered.daemon)
    assert env["IPAMD_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "uri"}
    assert "--no-migrate" in rendered.daemon["args"]


def test_postgresql_notes_name_the_secret(render: Any) -> None:
    assert "Secret ipamd-db" in render(POSTGRES).notes


# --------------------------------------------------------------------------- metrics, API


def test_metrics_service_and_service_monitor(render: Any) -> None:
    rendered = render(METRICS)
    assert rendered.flag("listen") == "0.0.0.0:9733"
    service = rendered.one("Service")
    pod_labels = rendered.one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 9733, "targetPort": "http", "protocol": "TCP"}]
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    # Probes keep working on a listener bound to every address.
    assert rendered.daemon["readinessProbe"]["httpGet"]["host"] == "127.0.0.1"


def test_metrics_without_service_monitor(render: Any) -> None:
    rendered = render({"metrics": {"enabled": True}})
    assert "Service" in rendered.kinds()
    assert "ServiceMonitor" not in rendered.kinds()


def test_api_listener_with_existing_tokens(render: Any) -> None:
    rendered = render(API)
    assert rendered.flag("listen") == "0.0.0.0:9733"
    assert rendered.flag("token-file") == "/etc/ipamd-tokens/tokens.txt"
    assert rendered.volume("tokens")["secret"]["secretName"] == "my-tokens"
    assert "Secret" not in rendered.kinds()  # the user's Secret, none generated
    assert "Service" in rendered.kinds()
    assert "my-tokens" in rendered.notes


def test_listener_port_and_ipv6_host(render: Any) -> None:
    rendered = render({"listener": {"port": 10400, "host": "::"}})
    assert rendered.flag("listen") == "[::]:10400"
    assert rendered.daemon["ports"][0]["containerPort"] == 10400


# --------------------------------------------------------------------------- CNI dir, socket


def test_cni_dir_changed_and_kube_ovn_alias(render: Any) -> None:
    rendered = render(CNI_DIR)
    assert rendered.volume("cni-bin")["hostPath"]["path"] == "/var/lib/cni/bin"
    # Inside the init container the path stays fixed; only the host side moves.
    assert rendered.mounts(rendered.init)["/host/opt/cni/bin"]["name"] == "cni-bin"
    assert rendered.init["args"] == ["install-cni", "--dest=/host/opt/cni/bin", "--also-as=kube-ovn"]
    assert "kube-ovn" in rendered.notes and "/var/lib/cni/bin" in rendered.notes


def test_kube_ovn_socket_link(render: Any) -> None:
    assert "kube-ovn-socket-dir" not in str(render({}).objects)
    rendered = render(
        {
            "cni": {"binDir": "/opt/cni/bin", "alsoAsKubeOvn": True, "kubeOvnSocket": True},
            "socket": {"hostDir": "/var/run/ipamd"},
        }
    )
    assert rendered.volume("kube-ovn-socket-dir")["hostPath"] == {
        "path": "/run/openvswitch",
        "type": "DirectoryOrCreate",
    }
    assert rendered.mounts(rendered.init)["/host/run/openvswitch"]["name"] == "kube-ovn-socket-dir"
    # The link's target is read on the host, where the shim connects: the host-side path.
    assert (
        rendered.init["args"][-1]
        == "--link-socket=/host/run/openvswitch/kube-ovn-daemon.sock=/var/run/ipamd/ipamd.sock"
    )
    assert "/run/openvswitch/kube-ovn-daemon.sock links to the daemon's socket" in rendered.notes


def test_socket_group_and_host_dir(render: Any) -> None:
    rendered = render({"socket": {"group": "1234", "hostDir": "/var/run/ipamd"}})
    assert rendered.flag("socket-group") == "1234"
    assert rendered.pod_spec["securityContext"]["supplementalGroups"] == [1234]
    assert rendered.volume("socket-dir")["hostPath"]["path"] == "/var/run/ipamd"
    assert rendered.flag("socket") == "/run/ipamd/ipamd.sock"
    assert "/var/run/ipamd/ipamd.sock" in rendered.notes


def test_log_and_reconciler_settings(render: Any) -> None:
    rendered = render(
        {"log": {"format": "json", "level": "debug"}, "kubernetes": {"reconcileInterval": 30, "releaseGrace": 5}}
    )
    assert rendered.flag("log-format") == "json"
    assert rendered.flag("log-level") == "debug"
    assert rendered.flag("reconcile-interval") == "30"
    assert rendered.flag("release-grace") == "5"


@pytest.mark.parametrize("retention", ["12h", "90s", "0", 0], ids=["hours", "seconds", "keep-text", "keep-number"])
def test_history_retention_reaches_the_daemon(render: Any, retention: Any) -> None:
    assert render({"history": {"retention": retention}}).flag("history-retention") == str(retention)


# --------------------------------------------------------------------------- declarative config


def _config_file(rendered: Any) -> dict[str, Any]:
    return yaml.safe_load(rendered.one("ConfigMap")["data"]["config.yaml"])


def test_default_config_file_is_empty_lists(render: Any) -> None:
    assert _config_file(render()) == {"subnets": [], "pools": [], "reservations": []}


def test_declared_objects_reach_the_config_file_unchanged(render: Any) -> None:
    assert _config_file(render(SUBNETS)) == SUBNETS["ipam"]


def test_config_file_is_accepted_by_the_daemon_core(render: Any) -> None:
    config = _config_file(render(SUBNETS))
    subnets = {raw["name"]: canonical_subnet(raw) for raw in config["subnets"]}
    for raw in config["pools"]:
        canonical_pool(raw, subnet=subnets[raw["subnet"]])
    for raw in config["reservations"]:
        canonical_reservation(raw, subnet=subnets[raw["subnet"]])


@pytest.mark.parametrize("name", ["default", "subnets"])
def test_config_file_loads_in_the_daemon(render: Any, name: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(render(VALUE_SETS[name]).one("ConfigMap")["data"]["config.yaml"])
    state = declarative.load(path)
    assert set(state.subnets) == {s["name"] for s in VALUE_SETS[name].get("ipam", {}).get("subnets", [])}
    assert set(state.pools) == {p["name"] for p in VALUE_SETS[name].get("ipam", {}).get("pools", [])}
    assert len(state.reservations) == len(VALUE_SETS[name].get("ipam", {}).get("reservations", []))


def test_config_checksum_rolls_the_pods_only_on_change(render: Any) -> None:
    def checksum(values: dict[str, Any]) -> str:
        return render(values).one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum(SUBNETS)
    assert checksum(SUBNETS) == base
    assert checksum({**SUBNETS, "log": {"level": "debug"}}) == base
    changed = {"ipam": {**SUBNETS["ipam"], "pools": []}}
    assert checksum(changed) != base
    assert checksum({}) != base
