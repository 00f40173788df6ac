"""Rendering charts/ipamd with Helm's own engine (helm-python-sdk binds Helm's Go SDK).

No helm binary and no cluster: Chart.render() runs the template engine offline, with
values coalesced and validated against values.schema.json exactly as `helm install` does
(`lookup` returns nothing). Objects come back as parsed YAML so tests assert on fields,
and every object is checked against the Kubernetes API types (field names and value
types), which catches misspelt keys that a YAML parse would let through.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import models

try:
    import helm_python as helm
except ImportError:  # the test extra is missing: the fixtures skip, naming it
    helm = None

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "ipamd"
RELEASE = "ipamd"
NAMESPACE = "kube-system"


class Rendered:
    """The objects of one render, with look-ups by kind."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.manifests = manifests
        self.notes = next((text for path, text in manifests.items() if path.endswith("NOTES.txt")), "")
        self.objects: list[dict[str, Any]] = []
        for path, text in manifests.items():
            if path.endswith(".txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__template__", path)
                    self.objects.append(doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    # The DaemonSet's pieces, used by almost every test.
    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.one("DaemonSet")["spec"]["template"]["spec"]

    @property
    def daemon(self) -> dict[str, Any]:
        (container,) = [c for c in self.pod_spec["containers"] if c["name"] == "ipamd"]
        return container

    @property
    def init(self) -> dict[str, Any]:
        (container,) = [c for c in self.pod_spec["initContainers"] if c["name"] == "install-cni"]
        return container

    def flag(self, name: str) -> str | None:
        """The value of `--name=value` in the daemon's args (None: absent)."""
        for arg in self.daemon["args"]:
            if arg.startswith(f"--{name}="):
                return arg.split("=", 1)[1]
        return None

    def volume(self, name: str) -> dict[str, Any]:
        (vol,) = [v for v in self.pod_spec["volumes"] if v["name"] == name]
        return vol

    def mounts(self, container: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {m["mountPath"]: m for m in container.get("volumeMounts", [])}

    def env(self, container: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in container.get("env", [])}


# --------------------------------------------------------------------------- API types

_MODELS: dict[str, str] = {
    "DaemonSet": "V1DaemonSet",
    "ConfigMap": "V1ConfigMap",
    "Secret": "V1Secret",
    "Service": "V1Service",
    "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
}


def check_api_types(obj: dict[str, Any]) -> list[str]:
    """Problems of `obj` against the Kubernetes OpenAPI types (kubernetes_asyncio models).

    Every key must be a field of its type and every value of the declared JSON type.
    Kinds without a model (ServiceMonitor) return no problems.
    """
    model = _MODELS.get(obj["kind"])
    if model is None:
        return []
    problems: list[str] = []
    body = {k: v for k, v in obj.items() if k != "__template__"}
    _check(body, model, obj["kind"], models, problems)
    return problems


def _check(value: Any, type_name: str, path: str, models: Any, problems: list[str]) -> None:
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {value!r}")
            return
        for index, item in enumerate(value):
            _check(item, type_name[5:-1], f"{path}[{index}]", models, problems)
    elif type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map, got {value!r}")
            return
        inner = re.match(r"dict\(str, (.*)\)$", type_name).group(1)  # type: ignore[union-attr]
        for key, item in value.items():
            _check(item, inner, f"{path}.{key}", models, problems)
    elif type_name == "str":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
    elif type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif type_name == "bool":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {value!r}")
    elif type_name in ("object", "datetime", "float"):
        pass  # IntOrString, quantities, timestamps
    else:
        cls = getattr(models, type_name)
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object ({type_name}), got {value!r}")
            return
        by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json:
                problems.append(f"{path}.{key}: not a field of {type_name}")
                continue
            _check(item, cls.openapi_types[by_json[key]], f"{path}.{key}", models, problems)
