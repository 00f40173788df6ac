"""The examples in docs/deploy.md are real: they parse, fit together and work.

- every YAML block parses, every JSON block too;
- every NAD carries a JSON config whose `ipam` section is a form the shim and the daemon
  accept (Kube-OVN style with provider, or Whereabouts / host-local inline ranges);
  checked structurally here, then by the daemon's own parser (ipamd.core.nad) and by
  running the CNI plugin (plugin/bin/ipamd) and the daemon's protocol parser on it;
- pod annotations name NADs, subnets and pools that the document declares;
- values files and `helm install` command lines render with the chart (Helm's engine);
- every address is a documentation prefix.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipamd import declarative
from ipamd.cni import protocol
from ipamd.core.nad import parse_network_request
from ipamd.core.pool import canonical_pool, canonical_reservation
from ipamd.core.subnet import canonical_subnet

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "deploy.md"
CHART = REPO / "charts" / "ipamd"
SHIM = REPO / "plugin" / "bin" / "ipamd"

DOC_PREFIXES = [ipaddress.ip_network(p) for p in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
# Not example addresses: bind-all and loopback of the listener.
SPECIAL_ADDRESSES = {"0.0.0.0", "127.0.0.1"}

SHIM_TYPES = {"ipamd", "kube-ovn"}
CNI_VERSIONS = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
TRANSPORT_KEYS = {"type", "server_socket", "provider", "timeout", "log_file", "log_level"}
WHEREABOUTS_KEYS = {
    "range",
    "range_start",
    "range_end",
    "exclude",
    "gateway",
    "network_name",
    "ipRanges",
    "routes",
    "dns",
}
HOST_LOCAL_KEYS = {"ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "routes", "dns"}
ANNOTATION_KEYS = {"ip_address", "mac_address", "ip_pool", "logical_switch"}
MAC = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")


# --------------------------------------------------------------------------- reading the doc


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)]


TEXT = DOC.read_text()
BLOCKS = code_blocks(TEXT)
YAML_BLOCKS = [body for lang, body in BLOCKS if lang == "yaml"]
JSON_BLOCKS = [body for lang, body in BLOCKS if lang == "json"]
SH_BLOCKS = [body for lang, body in BLOCKS if lang == "sh"]


def yaml_objects() -> list[dict[str, Any]]:
    return [doc for body in YAML_BLOCKS for doc in yaml.safe_load_all(body) if isinstance(doc, dict) and "kind" in doc]


def values_files() -> dict[str, dict[str, Any]]:
    """YAML blocks that start with `# values-NAME.yaml`: Helm values files."""
    found = {}
    for body in YAML_BLOCKS:
        first = body.splitlines()[0]
        match = re.match(r"^# (values[-\w]*\.yaml)\s*$", first)
        if match:
            found[match.group(1)] = yaml.safe_load(body)
    return found


def nads() -> list[dict[str, Any]]:
    return [o for o in yaml_objects() if o["kind"] == "NetworkAttachmentDefinition"]


def nad_configs() -> list[tuple[str, dict[str, Any]]]:
    """(where, config) for every network config in the doc: NADs and bare JSON blocks."""
    configs = []
    for nad in nads():
        meta = nad["metadata"]
        configs.append((f"NAD {meta['namespace']}/{meta['name']}", json.loads(nad["spec"]["config"])))
    for index, body in enumerate(JSON_BLOCKS):
        config = json.loads(body)
        if "ipam" in config:
            configs.append((f"JSON block {index}", config))
    return configs


def providers() -> set[str]:
    return {f"{n['metadata']['name']}.{n['metadata']['namespace']}" for n in nads()}


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod metadata) of every pod and workload template in the doc."""
    found = []
    for obj in yaml_objects():
        if obj["kind"] == "Pod":
            found.append((f"Pod/{obj['metadata']['name']}", obj["metadata"]))
        elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["metadata"]))
    return found


def declared(kind: str) -> set[str]:
    """Names of subnets or pools declared in the doc's values files."""
    return {item["name"] for values in values_files().values() for item in values.get("ipam", {}).get(kind, [])}


CONFIGS = nad_configs()


# --------------------------------------------------------------------------- parsing


def test_the_doc_has_the_promised_examples() -> None:
    plugins = {(c["type"], c.get("mode")) for _, c in CONFIGS}
    assert {("macvlan", "bridge"), ("macvlan", "passthru"), ("ipvlan", "l2"), ("ipvlan", "l3")} <= plugins
    forms = {form_of(c["ipam"]) for _, c in CONFIGS}
    assert forms == {"kube-ovn", "whereabouts", "host-local"}
    assert {"ipamd", "kube-ovn"} == {c["ipam"]["type"] for _, c in CONFIGS}
    assert {"values-postgresql.yaml", "values-subnets.yaml"} <= set(values_files())
    kinds = {o["kind"] for o in yaml_objects()}
    assert {"DaemonSet", "StatefulSet", "Pod", "Cluster"} <= kinds
    for heading in ("Moving from Kube-OVN", "Moving from Whereabouts", "host-local style", "HA PostgreSQL"):
        assert f"## {heading}" in TEXT


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_yaml_blocks_parse(index: int) -> None:
    docs = list(yaml.safe_load_all(YAML_BLOCKS[index]))
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("index", range(len(JSON_BLOCKS)))
def test_json_blocks_parse(index: int) -> None:
    json.loads(JSON_BLOCKS[index])


# --------------------------------------------------------------------------- NAD configs


def form_of(ipam: dict[str, Any]) -> str:
    if "range" in ipam or "ipRanges" in ipam:
        return "whereabouts"
    if "ranges" in ipam or "subnet" in ipam:
        return "host-local"
    return "kube-ovn"


def check_ipam(ipam: dict[str, Any]) -> None:
    """The structural rules the shim and the daemon apply to an ipam section."""
    assert ipam["type"] in SHIM_TYPES
    if "server_socket" in ipam:
        assert ipam["server_socket"] == "/run/ipamd/ipamd.sock"  # the chart's default
    form = form_of(ipam)
    if form == "kube-ovn":
        assert set(ipam) <= TRANSPORT_KEYS
        assert re.fullmatch(r"[a-z0-9-]+\.[a-z0-9-]+", ipam["provider"]), ipam["provider"]
    elif form == "whereabouts":
        assert set(ipam) <= WHEREABOUTS_KEYS | TRANSPORT_KEYS
        entries = ([ipam] if "range" in ipam else []) + ipam.get("ipRanges", [])
        assert entries
        for entry in entries:
            network = ipaddress.ip_network(entry["range"], strict=False)
            for key in ("range_start", "range_end"):
                if key in entry:
                    assert ipaddress.ip_address(entry[key]) in network, key
            for item in entry.get("exclude", []):
                assert ipaddress.ip_network(item, strict=False).subnet_of(network)  # type: ignore[arg-type]
        families = [ipaddress.ip_network(e["range"], strict=False).version for e in entries]
        assert len(families) == len(set(families)), "one range per family"
    else:
        assert set(ipam) <= HOST_LOCAL_KEYS | TRANSPORT_KEYS
        assert isinstance(ipam["ranges"], list) and all(isinstance(s, list) and s for s in ipam["ranges"])
        families = []
        for range_set in ipam["ranges"]:
            for item in range_set:
                network = ipaddress.ip_network(item["subnet"])
                families.append(network.version)
                for key in ("rangeStart", "rangeEnd", "gateway"):
                    if key in item:
                        assert ipaddress.ip_address(item[key]) in network, key
        assert len(families) == len(set(families)), "one range per family"
    for route in ipam.get("routes", []):
        ipaddress.ip_network(route["dst"])


@pytest.mark.parametrize("where,config", CONFIGS, ids=[w for w, _ in CONFIGS])
def test_network_config_is_a_form_the_shim_accepts(where: str, config: dict[str, Any]) -> None:
    assert config["cniVersion"] in CNI_VERSIONS
    assert isinstance(config["name"], str) and config["name"]
    check_ipam(config["ipam"])


def test_nad_names_and_providers_agree() -> None:
    for nad in nads():
        meta = nad["metadata"]
        config = json.loads(nad["spec"]["config"])
        assert nad["apiVersion"] == "k8s.cni.cncf.io/v1"
        assert config["name"] == meta["name"]
        if "provider" in config["ipam"]:
            # Kube-OVN's convention, which the annotations' prefix follows.
            assert config["ipam"]["provider"] == f"{meta['name']}.{meta['namespace']}"


@pytest.mark.parametrize("where,config", CONFIGS, ids=[w for w, _ in CONFIGS])
def test_network_config_is_accepted_by_the_daemons_parser(where: str, config: dict[str, Any]) -> None:
    request = parse_network_request(config["ipam"], network_name=config["name"])
    if "provider" in config["ipam"]:
        assert request.network_key == config["ipam"]["provider"]
        assert request.inline_subnet is None
    else:
        assert request.inline_subnet is not None
        assert request.network_key == config["ipam"].get("network_name", config["name"])


def env_of(command: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "0123456789abcdef",
        "CNI_NETNS": "/var/run/netns/doc-test",
        "CNI_IFNAME": "net1",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=doc-test",
    }


def _run_shim(config: dict[str, Any], command: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    env = env_of(command)
    done = subprocess.run(
        [str(SHIM)],
        input=json.dumps(config).encode(),
        env=env,
        capture_output=True,
        timeout=30,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.mark.skipif(not SHIM.is_file(), reason="the CNI plugin is not built (scripts/build-plugin.sh)")
@pytest.mark.parametrize("where,config", CONFIGS, ids=[w for w, _ in CONFIGS])
def test_shim_reads_the_config(where: str, config: dict[str, Any], tmp_path: Path) -> None:
    code, out = _run_shim(config, "VERSION", tmp_path)
    assert code == 0
    # VERSION answers in the config's cniVersion: the shim decoded the whole config.
    assert out["cniVersion"] == config["cniVersion"]
    assert config["cniVersion"] in out["supportedVersions"]
    # The daemon's side of an ADD reads it without a complaint.
    invocation = protocol.parse_invocation(
        {"wire": protocol.WIRE_VERSION, "env": env_of("ADD"), "config": json.dumps(config)}
    )
    assert protocol.attachment_request(invocation)["ipam"] == config["ipam"]
    # ADD against a socket nobody serves: everything the plugin checks locally passes, so
    # the only failure left is "daemon unreachable, try again later" (11), not a config
    # error (7) or a decode error (6).
    ipam = dict(config["ipam"], server_socket=str(tmp_path / "ipamd.sock"), timeout=2)
    code, out = _run_shim(dict(config, ipam=ipam), "ADD", tmp_path)
    assert code == 1
    assert out["code"] == 11, out


# --------------------------------------------------------------------------- pods and values


def test_pod_annotations_name_what_the_doc_declares() -> None:
    known_providers = providers()
    nad_names = {n["metadata"]["name"] for n in nads()}
    subnets, pools = declared("subnets"), declared("pools")
    checked = 0
    for where, meta in pod_templates():
        for key, value in (meta.get("annotations") or {}).items():
            if key == "k8s.v1.cni.cncf.io/networks":
                value = value.strip()
                if value.startswith("["):
                    names = [item["name"] for item in json.loads(value)]
                else:
                    names = [n.strip().split("/")[-1] for n in value.split(",")]
                assert set(names) <= nad_names, where
                checked += 1
                continue
            match = re.fullmatch(r"(.+)\.kubernetes\.io/([a-z_]+)(\.[\w-]+)?", key)
            if not match:
                continue
            provider, name = match.group(1), match.group(2)
            assert provider in known_providers, f"{where}: {key}"
            assert name in ANNOTATION_KEYS, f"{where}: {key}"
            if name == "ip_address":
                for address in value.split(","):
                    ipaddress.ip_address(address)
            elif name == "mac_address":
                assert MAC.match(value), value
            elif name == "logical_switch":
                assert value in subnets, value
            elif name == "ip_pool":
                assert value in pools or all(ipaddress.ip_address(a) for a in value.split(",")), value
            checked += 1
    assert checked >= 8


def test_declared_subnets_serve_nads_of_the_doc() -> None:
    known = providers()
    for name, values in values_files().items():
        for subnet in values.get("ipam", {}).get("subnets", []):
            assert subnet["provider"] in known, f"{name}: {subnet['name']}"


def test_declared_subnets_are_accepted_by_the_daemon_core() -> None:
    for values in values_files().values():
        ipam = values.get("ipam", {})
        specs = {raw["name"]: canonical_subnet(raw) for raw in ipam.get("subnets", [])}
        for raw in ipam.get("pools", []):
            canonical_pool(raw, subnet=specs[raw["subnet"]])
        for raw in ipam.get("reservations", []):
            canonical_reservation(raw, subnet=specs[raw["subnet"]])


@pytest.mark.parametrize("name", sorted(n for n, v in values_files().items() if v.get("ipam")))
def test_declared_objects_load_as_the_daemons_config_file(name: str, tmp_path: Path) -> None:
    ipam = values_files()[name]["ipam"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(ipam))
    state = declarative.load(path)
    assert set(state.subnets) == {s["name"] for s in ipam.get("subnets", [])}


@pytest.fixture(scope="module")
def chart() -> Any:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the test extra) is not installed")
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def _render(chart: Any, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(values, name="ipamd", namespace="kube-system", is_install=True)


@pytest.mark.parametrize("name", sorted(values_files()))
def test_values_files_render_with_the_chart(chart: Any, name: str) -> None:
    manifests = _render(chart, values_files()[name])
    assert any("kind: DaemonSet" in text for text in manifests.values())


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def helm_commands() -> list[list[str]]:
    commands = []
    for body in SH_BLOCKS:
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if words[:2] in (["helm", "install"], ["helm", "upgrade"]):
                commands.append(words)
    return commands


@pytest.mark.parametrize("words", helm_commands(), ids=lambda w: " ".join(w[:3]))
def test_helm_command_lines_render(chart: Any, words: list[str]) -> None:
    import helm_python as helm

    files = values_files()
    values: dict[str, Any] = {}
    assert str(CHART.relative_to(REPO)) in {w.lstrip("./") for w in words}
    for flag, argument in zip(words, words[1:]):
        if flag in ("-f", "--values"):
            assert argument in files, f"{argument} is not shown in the doc"
            values = _deep_merge(values, files[argument])
        elif flag == "--set":
            values = _deep_merge(values, helm.parse_set_string(argument))
    _render(chart, values)


def test_the_sqlite_failure_shown_is_the_charts(chart: Any) -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError) as caught:
        _render(chart, {"cluster": {"nodeCount": 3}})
    shown = re.search(r"```text\n(Error: .*?)```", TEXT, re.S).group(1)  # type: ignore[union-attr]
    shown_text = " ".join(shown.replace("...", "").split())
    actual = " ".join(str(caught.value).split())
    assert shown_text.removeprefix("Error: ").strip() in actual


# --------------------------------------------------------------------------- addresses


def addresses_in(text: str) -> set[str]:
    v4 = re.findall(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?)(?![\w.])", text)
    v6 = re.findall(r"(?<![\w:.])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:/\d{1,3})?)(?![\w:.])", text)
    found = set(v4)
    for candidate in v6:
        try:
            ipaddress.ip_network(candidate, strict=False)
        except ValueError:
            continue  # MAC addresses, times...
        found.add(candidate)
    return found


def test_only_documentation_addresses() -> None:
    found = addresses_in(TEXT)
    assert len(found) > 20
    for text in found:
        if text in SPECIAL_ADDRESSES:
            continue
        network = ipaddress.ip_network(text, strict=False)
        assert any(network.version == p.version and network.subnet_of(p) for p in DOC_PREFIXES), text  # type: ignore[arg-type]
