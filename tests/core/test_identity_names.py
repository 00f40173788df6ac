"""Identity names (ipamd.core.identity): the Kubernetes, Linux and CNI SPEC rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamd.core import identity
from ipamd.errors import InvalidInput


@pytest.mark.parametrize(
    "check, value",
    [
        (identity.namespace, "kube-system"),
        (identity.namespace, "n" * 63),
        (identity.namespace, "0"),
        (identity.pod, "web-0"),
        (identity.pod, "a.b-c.d"),
        (identity.pod, ("p" * 63 + ".") * 3 + "p" * 61),
        (identity.interface, "eth0"),
        (identity.interface, "e" * 15),
        (identity.interface, "net1.100"),
        (identity.interface, "ethé"),
        (identity.container_id, "3f6940ab5ab4"),
        (identity.container_id, "Abc_1.2-x"),
        (identity.network_name, "macvlan-conf"),
        (identity.pod_uid, "7d6e0ba1-4c1d-4a3b-9f0e-8f1b1f1b1f1b"),
        (identity.netns, "/var/run/netns/cni-1234"),
        (identity.node, "worker-1.example.net"),
    ],
)
def test_names_the_rules_allow(check, value):
    assert check(value, field="f") == value


@pytest.mark.parametrize(
    "check, value, message",
    [
        (identity.namespace, "n" * 64, f"f: {'n' * 64!r} is 64 characters long; at most 63"),
        (identity.namespace, "my_ns", "f: 'my_ns' is not a DNS-1123 label"),
        (identity.namespace, "-ns", "f: '-ns' is not a DNS-1123 label"),
        (identity.namespace, "ns.a", "f: 'ns.a' is not a DNS-1123 label"),
        (identity.pod, "p" * 254, "is 254 characters long; at most 253"),
        (identity.pod, "Web-0", "f: 'Web-0' is not a DNS-1123 subdomain"),
        (identity.pod, "web..0", "is not a DNS-1123 subdomain"),
        (identity.pod, "web-0.", "is not a DNS-1123 subdomain"),
        (identity.pod, "web\n0", "f: 'web\\n0' contains the control character '\\n' at offset 3"),
        (identity.pod, "web\u20280", "contains the non-printable character '\\u2028' at offset 3"),
        (identity.pod, "", "f: expected a non-empty string, got ''"),
        (identity.pod, 7, "f: expected a non-empty string, got 7"),
        (identity.interface, "e" * 16, "is 16 bytes long; an interface name has at most 15"),
        (identity.interface, "é" * 8, "is 16 bytes long"),
        (identity.interface, ".", "is not an interface name: not '.' or '..', and no '/', ':' or whitespace"),
        (identity.interface, "eth0:1", "is not an interface name"),
        (identity.interface, "eth 0", "is not an interface name"),
        (identity.interface, "eth\u00a00", "contains the non-printable character '\\xa0' at offset 3"),
        (
            identity.container_id,
            "_c1",
            "is not an alphanumeric character, then alphanumerics, '_', '.' or '-' (CNI SPEC)",
        ),
        (identity.container_id, "c1/../x", "(CNI SPEC)"),
        (identity.network_name, "net work", "(CNI SPEC)"),
        (identity.pod_uid, "u" * 65, "is 65 characters long; at most 64"),
        (identity.netns, "/proc/1/ns/net\x00", "contains the control character '\\x00' at offset 14"),
    ],
)
def test_names_the_rules_refuse_naming_the_field(check, value, message):
    with pytest.raises(InvalidInput) as caught:
        check(value, field="f")
    assert caught.value.field == "f" and message in caught.value.message, caught.value.message


def test_a_long_value_is_shown_cut():
    with pytest.raises(InvalidInput) as caught:
        identity.pod("x" * 100_000, field="pod")
    assert len(caught.value.message) < 200 and "is 100000 characters long" in caught.value.message


@given(st.text())
def test_whatever_is_accepted_is_one_printable_bounded_line(value):
    for check, limit in (
        (identity.namespace, 63),
        (identity.pod, 253),
        (identity.container_id, 253),
        (identity.pod_uid, 64),
        (identity.netns, 1024),
    ):
        try:
            accepted = check(value, field="f")
        except InvalidInput as e:
            assert e.field == "f"
        else:
            assert accepted.isprintable() and 0 < len(accepted) <= limit
    try:
        accepted = identity.interface(value, field="f")
    except InvalidInput:
        pass
    else:
        assert accepted.isprintable() and not any(c.isspace() for c in accepted) and len(accepted.encode()) <= 15


@pytest.mark.parametrize("value", ["default", "prod-east", "0", "c" * 63])
def test_a_cluster_name_is_a_dns_label(value):
    assert identity.cluster_name(value) == value


@pytest.mark.parametrize(
    "value, message",
    [
        ("Prod East", "cluster-name: 'Prod East' is not a valid cluster name: expected a DNS label (lowercase letters"),
        ("east-", "is not a valid cluster name"),
        ("c" * 64, "is 64 characters long; at most 63"),
        # A '$'-anchored match takes a trailing newline; the rule is one full line.
        ("east\n", "cluster-name: 'east\\n' contains the control character '\\n' at offset 4"),
    ],
)
def test_a_cluster_name_that_is_not_a_dns_label_is_refused_by_every_door(value, message):
    """The flag, the --config file's clusterName and the REST filter all call this one rule."""
    from ipamd import manifests
    from ipamd.config import Settings, cluster_name

    settings = Settings(
        "s", None, "sqlite://", True, None, None, None, False, None, "n", 1, 1, "text", "info", cluster_name=value
    )
    for refuse in (
        lambda: identity.cluster_name(value),
        lambda: cluster_name(settings, from_file=None),
        lambda: manifests.parse_config({"clusterName": value}, source="f.yaml"),
    ):
        with pytest.raises(InvalidInput) as caught:
            refuse()
        assert message.split("cluster-name: ")[-1] in caught.value.message, caught.value.message
