"""Placement rules (ipamd.core.placement): selectors checked against a model written from the
Kubernetes definition, namespaces and node names, priority order, and the refusal texts."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamd.core.placement import (
    LabelSelector,
    Placement,
    Requirement,
    Subject,
    admit,
    parse_labels,
    parse_placement,
    parse_selector,
    refusal,
    refusals_text,
)
from ipamd.core.subnet import canonical_subnet
from ipamd.errors import InvalidInput

keys = st.sampled_from(["site", "rack", "tier", "example.com/zone"])
values = st.sampled_from(["east", "west", "a", "b", ""])
label_maps = st.dictionaries(keys, values, max_size=4)
requirements = st.one_of(
    st.builds(
        lambda k, op, vs: {"key": k, "operator": op, "values": vs},
        keys,
        st.sampled_from(["In", "NotIn"]),
        st.lists(values, min_size=1, max_size=3),
    ),
    st.builds(lambda k, op: {"key": k, "operator": op}, keys, st.sampled_from(["Exists", "DoesNotExist"])),
)
selectors = st.fixed_dictionaries(
    {}, optional={"matchLabels": label_maps, "matchExpressions": st.lists(requirements, max_size=3)}
)


def model_matches(selector: dict, labels: dict) -> bool:
    """The label selector rules as the Kubernetes API documents them, written out plainly."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value or key not in labels:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, wanted = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in wanted):
            return False
        if operator == "NotIn" and present and labels[key] in wanted:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@given(selectors, label_maps)
def test_selector_matches_like_kubernetes(raw, labels):
    selector = parse_selector(raw, field="nodeSelector")
    assert selector.matches(labels) == model_matches(raw, labels)
    # The failing requirements are exactly the reason for a mismatch.
    assert (selector.failing(labels) == []) == selector.matches(labels)


@given(selectors)
def test_selector_round_trips_through_its_json(raw):
    selector = parse_selector(raw, field="podSelector")
    assert parse_selector(selector.to_json(), field="podSelector") == selector


@given(st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3", "s4"]), selectors), max_size=6), label_maps)
def test_admission_keeps_priority_order_and_splits_exactly(subnets, labels):
    candidates = [(name, Placement(node_selector=parse_selector(raw, field="nodeSelector"))) for name, raw in subnets]
    subject = Subject(namespace="lab", node="n1", node_labels=labels)
    result = admit(candidates, subject)
    assert list(result.admitted) == [name for name, raw in subnets if model_matches(raw, labels)]
    assert [name for name, _ in result.refused] == [name for name, raw in subnets if not model_matches(raw, labels)]


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3), st.sampled_from(["a", "b", "c", ""]))
def test_namespaces_bind_like_kube_ovn(namespaces, namespace):
    placement = parse_placement({"namespaces": namespaces})
    admitted = refusal(placement, Subject(namespace=namespace)) is None
    # An empty list binds nothing; a bound subnet serves only its namespaces.
    assert admitted == (not namespaces or namespace in namespaces)


@given(
    st.one_of(st.none(), st.lists(st.sampled_from(["east", "west", "staging"]), max_size=3)),
    st.sampled_from(["east", "west", "staging"]),
)
def test_clusters_bind_as_namespaces_do(clusters, cluster):
    placement = parse_placement({"clusters": clusters})
    # Null or an empty list binds nothing; a bound subnet serves only its clusters' daemons.
    assert placement.binds == bool(clusters)
    assert (refusal(placement, Subject(cluster=cluster)) is None) == (not clusters or cluster in clusters)


@pytest.mark.parametrize(
    ("rules", "subject", "expected"),
    [
        pytest.param({}, Subject(), None, id="no-rules-admit-anything"),
        pytest.param(
            {"namespaces": ["tenant-a"]},
            Subject(namespace="tenant-b"),
            "namespaces [tenant-a] does not include namespace tenant-b",
            id="namespaces",
        ),
        pytest.param(
            {"namespaces": ["tenant-a"]},
            Subject(),
            "namespaces [tenant-a] does not include namespace none",
            id="no-namespace",
        ),
        pytest.param(
            {"nodeNames": ["edge-1", "edge-2"]},
            Subject(node="core-1"),
            "nodeNames [edge-1, edge-2] does not include node core-1",
            id="node-names",
        ),
        pytest.param(
            {"nodeNames": ["edge-1"]},
            Subject(),
            "nodeNames [edge-1] does not include node unknown",
            id="node-unknown",
        ),
        pytest.param(
            {"clusters": ["east", "staging"]},
            Subject(cluster="west"),
            "clusters [east, staging] does not include cluster west",
            id="clusters",
        ),
        pytest.param({"clusters": ["east"]}, Subject(cluster="east"), None, id="cluster-listed"),
        pytest.param(
            {"clusters": ["east"]},
            Subject(),
            "clusters [east] does not include cluster unknown",
            id="cluster-unknown",
        ),
        pytest.param(
            {"nodeSelector": {"matchLabels": {"site": "east"}}},
            Subject(node="n", node_labels={"site": "west"}),
            "nodeSelector site=east does not match (site=east not met by the node's labels)",
            id="node-selector",
        ),
        pytest.param(
            {"namespaceSelector": {"matchExpressions": [{"key": "tenant", "operator": "In", "values": ["a", "b"]}]}},
            Subject(namespace="x", namespace_labels={}),
            "namespaceSelector tenant in (a,b) does not match (tenant in (a,b) not met by the namespace's labels)",
            id="namespace-selector",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
            Subject(namespace="x"),
            "podSelector app cannot be checked: the pod's labels are unknown",
            id="labels-unknown",
        ),
        pytest.param(
            {"podSelector": {}},
            Subject(pod_labels={}),
            None,
            id="empty-selector-matches-everything",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "debug", "operator": "DoesNotExist"}]}},
            Subject(pod_labels={"debug": "1"}),
            "podSelector !debug does not match (!debug not met by the pod's labels)",
            id="does-not-exist",
        ),
    ],
)
def test_refusal_names_the_rule(rules, subject, expected):
    assert refusal(parse_placement(rules), subject) == expected


def test_refusals_text_names_a_few_and_counts_the_rest():
    refused = [(f"s{i}", "namespaces [a] does not include namespace b") for i in range(7)]
    text = refusals_text(refused, limit=2)
    assert text == (
        "subnet s0: namespaces [a] does not include namespace b; subnet s1: namespaces [a] does not include namespace b; and 5 more"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"namespaces": "lab"}, "namespaces: expected a list of names", id="namespaces-not-list"),
        pytest.param({"clusters": "east"}, "clusters: expected a list of names", id="clusters-not-list"),
        # A cluster name is a DNS label (--cluster-name's rule, ipamd.core.identity.cluster_name).
        pytest.param(
            {"clusters": ["east", "Prod_West"]},
            "clusters[1]: 'Prod_West' is not a valid cluster name",
            id="bad-cluster-name",
        ),
        pytest.param(
            {"clusters": ["prod.east"]}, "clusters[0]: 'prod.east' is not a valid cluster name", id="dotted-cluster"
        ),
        pytest.param({"clusters": [7]}, "clusters[0]: expected a non-empty string", id="cluster-not-text"),
        pytest.param(
            {"nodeNames": ["Edge_1"]}, "nodeNames[0]: 'Edge_1' is not a DNS-1123 subdomain", id="bad-node-name"
        ),
        pytest.param(
            {"nodeNames": ["edge..1"]}, "nodeNames[0]: 'edge..1' is not a DNS-1123 subdomain", id="empty-node-label"
        ),
        # The rules a request's names meet (ipamd.core.identity): a namespace is a DNS label.
        pytest.param(
            {"namespaces": ["lab.east"]}, "namespaces[0]: 'lab.east' is not a DNS-1123 label", id="dotted-namespace"
        ),
        pytest.param(
            {"namespaces": ["n" * 64]},
            "namespaces[0]: " + repr("n" * 64) + " is 64 characters long",
            id="long-namespace",
        ),
        # A '$'-anchored pattern lets a trailing newline through; every name is matched whole.
        pytest.param(
            {"namespaces": ["lab\n"]}, "namespaces[0]: 'lab\\n' contains the control character", id="namespace-newline"
        ),
        pytest.param(
            {"podSelector": {"matchLabels": {"app\n": "x"}}},
            "podSelector.matchLabels: 'app\\n' is not a label key",
            id="key-newline",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x\n"]}]}},
            "podSelector.matchExpressions[0].values[0]: 'x\\n' is not a label value",
            id="value-newline",
        ),
        pytest.param({"nodeSelector": {"matchLabel": {}}}, "nodeSelector.matchLabel: unknown field", id="typo"),
        # A wrong type is refused, not read as empty: an empty selector matches everything.
        pytest.param(
            {"nodeSelector": {"matchLabels": ""}},
            "nodeSelector.matchLabels: expected an object",
            id="labels-empty-string",
        ),
        pytest.param(
            {"nodeSelector": {"matchLabels": []}},
            "nodeSelector.matchLabels: expected an object",
            id="labels-empty-list",
        ),
        pytest.param(
            {"nodeSelector": {"matchExpressions": {}}},
            "nodeSelector.matchExpressions: expected a list",
            id="expressions-object",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": {}}]}},
            "podSelector.matchExpressions[0].values: expected a list",
            id="values-object",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}},
            "podSelector.matchExpressions[0].operator: 'in' is not an operator",
            id="operator-case",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "podSelector.matchExpressions[0].values: operator In needs at least one value",
            id="in-without-values",
        ),
        pytest.param(
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
            "podSelector.matchExpressions[0].values: operator Exists takes no values",
            id="exists-with-values",
        ),
        pytest.param(
            {"namespaceSelector": {"matchLabels": {"bad key": "x"}}},
            "namespaceSelector.matchLabels: 'bad key' is not a label key",
            id="bad-key",
        ),
        pytest.param(
            {"namespaceSelector": {"matchLabels": {"k": "-x"}}},
            "namespaceSelector.matchLabels.k: '-x' is not a label value",
            id="bad-value",
        ),
    ],
)
def test_bad_rules_are_refused_with_the_field(raw, message):
    with pytest.raises(InvalidInput) as caught:
        parse_placement(raw)
    assert caught.value.message.startswith(message)


def test_subnet_spec_carries_rules_and_shows_them_only_when_set():
    plain = canonical_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24"})
    assert not plain.placement.binds
    assert not {"namespaces", "nodeNames", "nodeSelector", "clusters"} & set(plain.to_json())
    # An empty list is no rule: nothing bound, nothing shown.
    assert canonical_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24", "clusters": []}) == plain
    raw = {
        "name": "site-east",
        "cidrBlock": "192.0.2.0/24",
        "provider": "macvlan.default",
        "namespaces": ["lab"],
        "nodeSelector": {"matchLabels": {"site": "east"}},
        "nodeNames": ["edge-1"],
        "clusters": ["east", "east", "staging"],
    }
    spec = canonical_subnet(raw)
    assert spec.placement.namespaces == ("lab",)
    assert spec.placement.clusters == ("east", "staging")
    assert spec.placement.needs_labels == frozenset({"node"})
    shown = spec.to_json()
    assert shown["namespaces"] == ["lab"] and shown["nodeNames"] == ["edge-1"]
    assert shown["clusters"] == ["east", "staging"]
    assert shown["nodeSelector"] == {"matchLabels": {"site": "east"}}
    assert canonical_subnet(shown) == spec


def test_requirement_text_reads_like_kubectl():
    selector = LabelSelector(
        (("site", "east"),),
        (Requirement("tier", "NotIn", ("a", "b")), Requirement("gpu", "Exists")),
    )
    assert selector.text == "site=east,tier notin (a,b),gpu"
    assert LabelSelector().text == "everything"


def test_parse_labels_checks_keys_and_values():
    assert parse_labels({"site": "east"}, field="labels.node") == {"site": "east"}
    with pytest.raises(InvalidInput, match="labels.node.site: 'e st' is not a label value"):
        parse_labels({"site": "e st"}, field="labels.node")
    with pytest.raises(InvalidInput, match="labels.node.site: 'east.n' is not a label value"):
        parse_labels({"site": "east\n"}, field="labels.node")


def test_pool_spec_carries_rules():
    from ipamd.core.pool import canonical_pool

    subnet = canonical_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24"})
    pool = canonical_pool(
        {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.59"], "namespaces": ["db"]}, subnet=subnet
    )
    assert pool.placement.namespaces == ("db",)
    assert pool.to_json() == {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.59"], "namespaces": ["db"]}
    east_only = canonical_pool(
        {"name": "db", "subnet": "net1", "ips": ["192.0.2.50"], "clusters": ["east"]}, subnet=subnet
    )
    assert east_only.to_json()["clusters"] == ["east"]
    assert canonical_pool(east_only.to_json(), subnet=subnet) == east_only
    with pytest.raises(InvalidInput, match="^podSelector.matchLabels: 'a b' is not a label key"):
        canonical_pool(
            {"name": "db", "subnet": "net1", "ips": ["192.0.2.50"], "podSelector": {"matchLabels": {"a b": "x"}}},
            subnet=subnet,
        )
