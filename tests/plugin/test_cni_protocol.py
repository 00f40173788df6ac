"""The CNI protocol, decided by the daemon: what each verb reads from the environment and
the network config, the result shape of every version, and the code of every failure.

Requests are framed exactly as plugin/main.go sends them (wire protocol 1) and answered by
the real application on a real SQLite database, in-process. The binary's own part (VERSION,
transport errors, printing the answer) is tested in plugin/main_test.go and, end to end,
in test_plugin_binary.py and tests/e2e.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ipamd.cni import protocol
from ipamd.core.text import printable
from ipamd.logs import TextFormatter

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def netconf(version: str = "1.0.0", provider: str = "net1.default", **extra: Any) -> dict[str, Any]:
    ipam = {"type": "ipamd", "server_socket": "/run/ipamd/ipamd.sock", "provider": provider, **extra.pop("ipam_extra", {})}
    return {"cniVersion": version, "name": "macvlan-net", "type": "macvlan", "master": "eth0", "ipam": ipam, **extra}


@pytest.fixture
async def net1(daemon):
    await daemon.subnet(
        "net1", "192.0.2.0/24,2001:db8:1::/64", routes=[{"dst": "203.0.113.0/24", "gw": "192.0.2.254"}],
        dns={"nameservers": ["192.0.2.53"], "domain": "example.net"},
    )
    return daemon


# --------------------------------------------------------------------------- VERSION


@pytest.mark.parametrize("requested, answered", [*((v, v) for v in VERSIONS), ("9.9.9", "1.1.0"), ("0.2.0", "1.1.0")])
async def test_version_never_echoes_an_unsupported_version(daemon, requested, answered):
    answer = await daemon.exec("VERSION", {"cniVersion": requested}, container_id=None, ifname=None)
    assert answer.exit_code == 0
    assert answer.output == {"cniVersion": answered, "supportedVersions": VERSIONS}


# --------------------------------------------------------------------------- ADD


async def test_add_merges_static_addresses_and_takes_pod_and_mac(net1):
    config = netconf(runtimeConfig={"ips": ["192.0.2.20/24"], "mac": "02:00:00:00:00:aa"}, args={"cni": {"ips": ["192.0.2.20", "2001:db8:1::20"]}})
    answer = await net1.exec(
        "ADD", config, container_id="3f6940ab5ab4",
        cni_args="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=7d6e-11;IP=2001:DB8:1::20;MAC=02:00:00:00:00:bb",
    )
    assert answer.exit_code == 0, answer
    assert [ip["address"] for ip in answer.output["ips"]] == ["192.0.2.20/24", "2001:db8:1::20/64"]
    assert answer.stderr == ""
    (held,) = await net1.held("net1")
    assert held["owner"]["namespace"] == "default" and held["owner"]["pod"] == "web-0"
    assert held["owner"]["containerId"] == "3f6940ab5ab4"
    assert held["mac"] == "02:00:00:00:00:aa"  # runtimeConfig wins over CNI_ARGS


def test_static_addresses_first_mention_first_without_repeats():
    config = {"runtimeConfig": {"ips": ["192.0.2.20/24", "2001:db8:1::20/64"]}, "args": {"cni": {"ips": ["192.0.2.21", "192.0.2.20"]}}}
    merged = protocol.static_ips_of(config, {"IP": "192.0.2.22, 192.0.2.21/24,2001:DB8:1::20"})
    assert merged == ["192.0.2.20/24", "2001:db8:1::20/64", "192.0.2.21", "192.0.2.22"]
    assert protocol.mac_of({}, {"MAC": "02:00:00:00:00:cc"}) == "02:00:00:00:00:cc"
    assert protocol.mac_of({"runtimeConfig": {"mac": ""}}, {}) is None


async def test_add_without_pod_arguments_is_keyed_by_container(net1):
    answer = await net1.exec("ADD", netconf(), netns=None)
    assert answer.exit_code == 0, answer
    (held,) = await net1.held("net1")
    assert held["owner"]["pod"] == "ctr1" and held["owner"]["namespace"] == ""


@pytest.mark.parametrize("version", VERSIONS)
async def test_add_result_has_the_shape_of_the_requested_version(net1, version):
    answer = await net1.exec("ADD", netconf(version, prevResult={"cniVersion": version, "interfaces": [{"name": "net1"}], "ips": []}))
    result = answer.output
    assert set(result) == {"cniVersion", "ips", "routes", "dns"}  # IPAM: no interfaces, prevResult not merged
    assert result["cniVersion"] == version
    v4, v6 = result["ips"]
    assert set(v4) == set(v6) == {"address", "gateway"} | ({"version"} if version.startswith("0.") else set())
    if version.startswith("0."):
        assert (v4["version"], v6["version"]) == ("4", "6")
    assert (v4["address"], v4["gateway"]) == ("192.0.2.2/24", "192.0.2.1")
    assert v6["address"].startswith("2001:db8:1::") and v6["gateway"] == "2001:db8:1::1"
    assert result["routes"] == [{"dst": "203.0.113.0/24", "gw": "192.0.2.254"}]
    assert result["dns"] == {"nameservers": ["192.0.2.53"], "domain": "example.net"}


def test_result_drops_empty_gateway_and_keeps_1_1_route_attributes():
    answer = {"ips": [{"address": "198.51.100.7/24", "gateway": None}], "routes": [{"dst": "203.0.113.0/24", "gw": None, "mtu": 1400}], "dns": {}}
    newest = protocol.add_result(answer, "1.1.0")
    assert newest["ips"] == [{"address": "198.51.100.7/24"}]
    assert newest["routes"] == [{"dst": "203.0.113.0/24", "mtu": 1400}]
    oldest = protocol.add_result(answer, "0.3.0")
    assert oldest["ips"] == [{"version": "4", "address": "198.51.100.7/24"}]
    assert oldest["routes"] == [{"dst": "203.0.113.0/24"}]


@pytest.mark.parametrize(
    "ipam, prefix",
    [
        ({"range": "198.51.100.0/28", "range_start": "198.51.100.4", "network_name": "tenant-a"}, "198.51.100.4/28"),
        ({"ranges": [[{"subnet": "203.0.113.0/29", "rangeStart": "203.0.113.3"}]]}, "203.0.113.3/29"),
        ({"subnet": "198.18.7.0/24", "rangeStart": "198.18.7.9"}, "198.18.7.9/24"),
    ],
    ids=["whereabouts", "host-local-ranges", "host-local-subnet"],
)
async def test_inline_forms(daemon, ipam, prefix):
    config = {"cniVersion": "0.4.0", "name": "inline", "ipam": {"type": "ipamd", **ipam}}
    answer = await daemon.exec("ADD", config)
    assert answer.output["ips"][0]["address"] == prefix, answer


# --------------------------------------------------------------------------- DEL, CHECK


async def test_del_releases_and_repeats_harmlessly(net1):
    await net1.exec("ADD", netconf(), cni_args="K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p")
    for _ in range(2):
        answer = await net1.exec("DEL", netconf(), netns=None, cni_args="K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p;IP=192.0.2.9")
        assert (answer.exit_code, answer.stdout) == (0, "")
    assert await net1.held("net1") == []
    assert (await net1.exec("DEL", netconf(), container_id="never-added")).exit_code == 0


async def test_check_compares_prev_result_with_what_is_held(net1):
    result = (await net1.exec("ADD", netconf("0.4.0"))).output
    ok = await net1.exec("CHECK", netconf("0.4.0", prevResult=result))
    assert (ok.exit_code, ok.stdout) == (0, "")
    wrong = {**result, "ips": [{"address": "192.0.2.250/24"}]}
    assert "ipamd holds" in (await net1.exec("CHECK", netconf("0.4.0", prevResult=wrong))).error(101, "0.4.0")["msg"]
    (await net1.exec("CHECK", netconf("0.4.0", prevResult=result), container_id="other")).error(100, "0.4.0")
    (await net1.exec("CHECK", netconf("0.4.0"))).error(7, "0.4.0")
    for version in ("0.3.0", "0.3.1"):
        (await net1.exec("CHECK", netconf(version, prevResult=result))).error(1, version)


# --------------------------------------------------------------------------- GC, STATUS


async def test_gc_releases_what_the_valid_list_omits_and_refuses_without_a_list(net1):
    for container in ("c1", "c2", "c3"):
        assert (await net1.exec("ADD", netconf(), container_id=container)).exit_code == 0
    valid = [{"containerID": "c1", "ifname": "net1"}, {"containerID": "c2", "ifname": "net1"}]
    answer = await net1.exec("GC", netconf("1.1.0", **{"cni.dev/valid-attachments": valid}), container_id=None, ifname=None)
    assert (answer.exit_code, answer.stdout) == (0, ""), answer
    assert sorted(a["owner"]["containerId"] for a in await net1.held("net1")) == ["c1", "c2"]
    for attachments in (None, "c1", [{"containerID": "a"}], [{"containerID": 1, "ifname": "eth0"}]):
        config = netconf("1.1.0")
        if attachments is not None:
            config["cni.dev/valid-attachments"] = attachments
        (await net1.exec("GC", config, container_id=None, ifname=None)).error(7, "1.1.0")
    (await net1.exec("GC", netconf("1.0.0", **{"cni.dev/valid-attachments": []}))).error(1)
    assert len(await net1.held("net1")) == 2  # never "release everything" on a guess


async def test_status(daemon):
    ready = await daemon.exec("STATUS", netconf("1.1.0"), container_id=None, ifname=None)
    assert (ready.exit_code, ready.stdout) == (0, "")
    (await daemon.exec("STATUS", netconf("1.0.0"))).error(1)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", [None, "UPDATE"])
async def test_missing_or_unknown_command_is_code_4(daemon, command):
    (await daemon.exec(command, netconf())).error(4)


@pytest.mark.parametrize(
    "overrides",
    [
        {"container_id": None}, {"container_id": ""}, {"container_id": "-starts-with-dash"}, {"container_id": "has/slash"},
        {"ifname": None}, {"ifname": "a-name-longer-than-15"}, {"ifname": "bad/name"}, {"ifname": "with space"},
        {"cni_args": "IgnoreUnknown=1;K8S_POD_NAME"},
    ],
)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
async def test_invalid_environment_is_code_4(net1, command, overrides):
    (await net1.exec(command, netconf(prevResult={"ips": []}), **overrides)).error(4)
    assert await net1.held("net1") == []


@pytest.mark.parametrize("text", ['{"cniVersion": "1.0.0",', "", "[1, 2]", "NaN", '{"a": 1} trailing', '{"a": NaN}'])
async def test_undecodable_config_is_code_6(daemon, text):
    (await daemon.exec("ADD", text)).error(6, "1.1.0")


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0", "1.2.0", "9.9.9", "1.0", None])
async def test_unsupported_version_is_code_1_and_never_echoed(daemon, version):
    config = netconf()
    config["cniVersion"] = version
    error = (await daemon.exec("ADD", config)).error(1, "1.1.0")
    assert "supported: 0.3.0" in error["msg"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop("ipam"),
        lambda c: c.__setitem__("ipam", "ipamd"),
        lambda c: c.pop("name"),
        lambda c: c.__setitem__("runtimeConfig", {"ips": "192.0.2.1"}),
        lambda c: c.__setitem__("args", {"cni": {"ips": [1]}}),
        lambda c: c.__setitem__("runtimeConfig", {"mac": 5}),
        lambda c: c["ipam"].pop("provider"),
    ],
    ids=["no-ipam", "ipam-string", "no-name", "runtime-ips-not-list", "args-ips-not-strings", "mac-not-string", "no-provider-no-range"],
)
async def test_invalid_config_is_code_7(net1, mutate):
    config = netconf()
    mutate(config)
    (await net1.exec("ADD", config)).error(7)
    assert await net1.held("net1") == []


async def test_conflict_and_exhaustion_carry_the_daemons_code_and_message(daemon):
    await daemon.subnet("tiny", "192.0.2.0/30")
    config = netconf(provider="tiny.default")
    assert (await daemon.exec("ADD", config, container_id="a", cni_args="K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default")).exit_code == 0
    taken = await daemon.exec("ADD", {**config, "runtimeConfig": {"ips": ["192.0.2.2"]}}, container_id="b")
    assert "held by default/web-0" in taken.error(101)["msg"]
    assert taken.output["details"] == "address_conflict"
    (await daemon.exec("ADD", config, container_id="c")).error(102)


async def test_another_wire_version_is_refused_clearly(daemon):
    error = (await daemon.exec("ADD", netconf(), wire=2)).error(106)
    assert "wire protocol 2" in error["msg"] and "install-cni" in error["msg"]


async def test_the_retired_python_shim_is_refused_clearly(net1):
    body = {"containerId": "c1", "ifName": "net1", "network": "n", "ipam": {"provider": "net1.default"}}
    status, answer = await net1.post("/v1/cni/add", body, headers={"User-Agent": "ipamd-cni/0.1"})
    assert status == 400 and answer["error"]["cniCode"] == 106
    assert "retired Python shim" in answer["error"]["message"]
    assert await net1.held("net1") == []


async def test_a_body_that_is_not_the_protocol_is_an_http_error(daemon):
    reply = await daemon.client.post("/v1/cni/exec", data=b"not json", headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert (await reply.json())["error"]["cniCode"] == 7


# --------------------------------------------------------------------------- logging (issue 18 D2)


async def test_log_file_of_a_network_config_is_ignored_and_fields_are_escaped(net1, tmp_path: Path, caplog):
    target = tmp_path / "authorized_keys"
    config = netconf(ipam_extra={"log_file": str(target) + "\nssh-ed25519 AAAA attacker"})
    with caplog.at_level(logging.INFO, logger="ipamd.cni"):
        assert (await net1.exec("ADD", config)).exit_code == 0
        assert (await net1.exec("DEL", config)).exit_code == 0
        # A network name the CNI SPEC does not allow is refused, and still logged on one line.
        refused = await net1.exec("ADD", {**config, "name": "evil\nname"})
        failed = await net1.exec("ADD", {**config, "cniVersion": "0.1.0\nforged"})
    assert not target.exists() and not list(tmp_path.glob("authorized_keys*"))
    assert refused.error(7)["msg"].startswith("name: 'evil\\nname' contains the control character")
    assert await net1.held("net1") == []
    # As the daemon writes them (ipamd.logs): one line each, every argument escaped once.
    lines = [TextFormatter("%(message)s").format(record) for record in caplog.records]
    # Said once for the network, not on each of its pods' ADDs and DELs.
    assert sum("network macvlan-net: ipam.log_file" in line and "ignored" in line for line in lines) == 1, lines
    for line in lines:
        assert "\n" not in line, line
    assert any("authorized_keys\\nssh-ed25519 AAAA attacker ignored" in line for line in lines), lines
    assert any("network evil\\nname:" in line for line in lines), lines
    failed.error(1, "1.1.0")
    assert failed.stderr.count("\n") == 1 and "\\n" in failed.stderr


def test_printable_spells_out_control_characters():
    assert printable("plain ünicode") == "plain ünicode"
    assert printable("a\nb\r\x1b[31m\\") == "a\\nb\\r\\x1b[31m\\\\"
    assert "\u2028" not in printable("x\u2028y")


def test_text_log_lines_spell_out_control_characters_of_their_arguments():
    record = logging.makeLogRecord({"msg": "DEL of %s", "args": ("default/evil\nINFO forged line",), "levelname": "INFO"})
    line = TextFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO DEL of default/evil\\nINFO forged line"


async def test_adds_through_the_plugin_are_counted_as_cni_adds(daemon):
    """Dashboards read route="/v1/cni/add" (docs/metrics.md): the plugin's endpoint keeps it."""
    await daemon.subnet("tiny", "192.0.2.0/30")
    config = netconf(provider="tiny.default")
    assert (await daemon.exec("ADD", config, container_id="a")).exit_code == 0
    assert (await daemon.exec("ADD", config, container_id="a")).exit_code == 0  # the same attachment again
    (await daemon.exec("ADD", config, container_id="c")).error(102)
    assert (await daemon.exec("DEL", config, container_id="a")).exit_code == 0
    reply = await daemon.client.get("/metrics")
    text = await reply.text()
    assert 'ipamd_allocation_requests_total{outcome="ok",route="/v1/cni/add"} 2.0' in text, text
    assert 'ipamd_allocation_requests_total{outcome="exhausted",route="/v1/cni/add"} 1.0' in text
    assert 'ipamd_allocation_duration_seconds_count{route="/v1/cni/add"} 3.0' in text
