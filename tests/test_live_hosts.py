"""The cross-resource analyzers over the stack plus a cluster snapshot, with Istio's semantics.

`mesh check --with` lays the stack over the cluster's objects (mesh.checks.snapshot); these
tests pin that the host, subset, gateway, mesh-host, port-name and injection analyzers then judge
the result as `istioctl analyze` (istio/istio 1.30.3, pkg/config/analysis/analyzers) would:
exportTo of ServiceEntries, VirtualServices, DestinationRules and the Service annotation, the
namespace of a short name, wildcard hosts, kinds read with their API group, node topology of
pods, and the namespaces and objects Istio leaves alone. Cases ported from Istio's testdata name
the file they come from.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from mesh.checks import Finding, check
from mesh.checks.destinations import destination_rule_subsets, virtual_service_destinations
from mesh.checks.gateways import gateway_references
from mesh.checks.index import _Index, augment_labels
from mesh.checks.mesh_wide import mesh_host_conflicts, namespace_injection, service_port_names
from mesh.checks.objects import hosts_overlap, resource_name
from mesh.checks.snapshot import load_snapshot
from mesh.config import parse_config
from mesh.plan import build_plan
from tests.conftest import stack_raw

Objects = list[dict[str, Any]]
NET = "networking.istio.io/v1"
HOST = "sentiment.ml-serving.svc.cluster.local"


@pytest.fixture(scope="module")
def prod_stack():
    config = parse_config(stack_raw("prod"), "prod")
    return config, build_plan(config).objects()


def _meta(name: str, namespace: str | None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def vs(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": NET,
        "kind": "VirtualService",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }


def dr(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": NET,
        "kind": "DestinationRule",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }


def se(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": NET,
        "kind": "ServiceEntry",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }


def gateway(name: str, namespace: str, hosts: list[str], api: str = NET) -> dict[str, Any]:
    spec = {
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]
    }
    if api != NET:
        spec = {
            "gatewayClassName": "istio",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        }
    return {"apiVersion": api, "kind": "Gateway", "metadata": _meta(name, namespace), "spec": spec}


def service(
    name: str, namespace: str, ports: list[dict[str, Any]] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, **meta),
        "spec": {"selector": {"app": name}, "ports": ports or [{"name": "http", "port": 80}]},
    }


def pod(
    name: str, namespace: str, labels: dict[str, str], node: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "app"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, namespace, labels=labels),
        "spec": spec,
    }


def node(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(name, None, labels=labels)}


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(name, None, labels=labels or {}),
    }


def route(host: str, **destination: Any) -> dict[str, Any]:
    return {"http": [{"route": [{"destination": {"host": host, **destination}}]}]}


def ingress() -> Objects:
    """prod's ingress gateway as it runs in istio-system: a pod, its Service (the server ports as
    targetPorts behind 80 and 443) and the TLS Secret, so the gateway analyzers stay silent."""
    labels = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    gateway_service = service(
        "istio-ingressgateway",
        "istio-system",
        [
            {"name": "http2", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443, "targetPort": 8443},
        ],
        labels=labels,
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta("models-example-com-tls", "istio-system"),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    }
    return [pod("istio-ingressgateway-1", "istio-system", labels), gateway_service, secret]


def with_cluster(prod_stack, cluster: Objects, edit=None, code: str | None = None) -> list[Finding]:
    """prod laid over `cluster` and its ingress gateway, after `edit` of the stack's objects; the
    findings of `code`."""
    config, objects = prod_stack
    objects = copy.deepcopy(objects)
    if edit is not None:
        edit(objects)
    findings = check(config, objects, cluster=copy.deepcopy(cluster) + ingress())
    return [f for f in findings if code is None or f.code == code]


def run_rule(prod_stack, rule, objects: Objects) -> list[Finding]:
    """One rule over `objects` alone, every one of them the cluster's (Istio's testdata)."""
    config, _ = prod_stack
    return list(rule(_Index(config, copy.deepcopy(objects), stack_ids=frozenset())))


def _stack_vs(objects: Objects) -> dict[str, Any]:
    (found,) = [
        o for o in objects if o["kind"] == "VirtualService" and o["metadata"]["name"] == "sentiment"
    ]
    return found


def mirror_to(host: str, **destination: Any):
    def edit(objects: Objects) -> None:
        _stack_vs(objects)["spec"]["http"][-1]["mirror"] = {"host": host, **destination}

    return edit


# --- host resolution: objects.py and index.py ------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("api.example.com", "api.example.com", True),
        ("*.example.com", "api.example.com", True),
        ("api.example.com", "*.example.com", True),
        ("*.example.com", "*.models.example.com", True),
        ("*.models.example.com", "*.example.com", True),
        ("*", "anything.org", True),
        ("*.example.com", "example.com", False),
        ("api.example.com", "web.example.com", False),
        ("*.a.com", "*.b.com", False),
    ],
)
def test_hosts_overlap_as_istios_host_name_matches(a, b, overlap):
    assert hosts_overlap(a, b) is overlap


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "default", ("default", "reviews")),
        ("reviews.bookinfo.svc.cluster.local", "default", ("bookinfo", "reviews")),
        ("api.example.com", "default", ("default", "api.example.com")),
        ("reviews.bookinfo", "default", ("default", "reviews.bookinfo")),
    ],
)
def test_resource_name_of_a_host_as_get_resource_name_from_host(host, namespace, expected):
    assert resource_name(host, namespace) == expected


@pytest.mark.parametrize(
    ("node_labels", "node_name", "added"),
    [
        (
            {"topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": "z1"},
            "n1",
            {
                "topology.kubernetes.io/region": "r1",
                "topology.kubernetes.io/zone": "z1",
                "kubernetes.io/hostname": "n1",
            },
        ),
        ({"topology.kubernetes.io/zone": "z1"}, "", {"topology.kubernetes.io/zone": "z1"}),
        # LocalityToString drops a subzone without a zone
        (
            {"topology.kubernetes.io/region": "r1", "topology.istio.io/subzone": "s"},
            "",
            {"topology.kubernetes.io/region": "r1"},
        ),
        ({"topology.kubernetes.io/region": ""}, "", {}),  # empty parts are not set
    ],
)
def test_pod_labels_are_augmented_with_the_node_topology(node_labels, node_name, added):
    assert augment_labels({"app": "a"}, node_labels, node_name) == {"app": "a", **added}


# --- IST0101 host / IST0112: virtualservice/destinationhosts.go ---------------------------------


@pytest.mark.parametrize(
    ("cluster", "reported"),
    [
        # a ServiceEntry exported only to its own namespace does not resolve a host elsewhere
        ([se("ext", "team-b", {"hosts": ["ext.example.com"], "exportTo": ["."]})], True),
        ([se("ext", "team-b", {"hosts": ["ext.example.com"], "exportTo": ["team-c"]})], True),
        ([se("ext", "team-b", {"hosts": ["ext.example.com"], "exportTo": ["ml-serving"]})], False),
        ([se("ext", "team-b", {"hosts": ["ext.example.com"], "exportTo": ["*"]})], False),
        ([se("ext", "team-b", {"hosts": ["ext.example.com"]})], False),
        # wildcard ServiceEntry hosts, visible to all or not
        ([se("ext", "team-b", {"hosts": ["*.example.com"]})], False),
        ([se("ext", "team-b", {"hosts": ["*.example.com"], "exportTo": ["."]})], True),
        ([se("ext", "team-b", {"hosts": ["*.other.org"]})], True),
    ],
)
def test_a_stack_route_resolves_only_hosts_exported_to_its_namespace(prod_stack, cluster, reported):
    findings = with_cluster(prod_stack, cluster, mirror_to("ext.example.com"), "IST0101")
    assert bool(findings) is reported, findings
    if reported:
        (finding,) = findings
        assert finding.message.startswith('Referenced mirror host not found: "ext.example.com"')
        assert (finding.origin, finding.path) == ("stack", "models.sentiment")


@pytest.mark.parametrize(
    ("annotation", "reported"),
    [
        (None, False),
        (".", True),
        ("team-c, team-d", True),
        ("team-c,ml-serving", False),
        ("*", False),
    ],
)
def test_the_service_export_to_annotation_scopes_a_service_host(prod_stack, annotation, reported):
    annotations = {} if annotation is None else {"networking.istio.io/exportTo": annotation}
    cluster = [service("shadow", "team-b", annotations=annotations)]
    findings = with_cluster(
        prod_stack, cluster, mirror_to("shadow.team-b.svc.cluster.local"), "IST0101"
    )
    assert bool(findings) is reported, findings


def test_a_short_host_resolves_in_the_namespace_of_the_virtual_service(prod_stack):
    cluster = [service("shadow", "team-b"), vs("probe", "team-b", route("shadow"))]
    assert with_cluster(prod_stack, cluster, code="IST0101") == []
    # the stack's route named `shadow` is shadow.ml-serving, which does not exist
    (finding,) = with_cluster(prod_stack, cluster, mirror_to("shadow"), "IST0101")
    assert "shadow.ml-serving.svc.cluster.local" in finding.message


def test_a_service_entry_port_is_checked_like_a_service_port(prod_stack):
    entry = se(
        "ext",
        "team-b",
        {
            "hosts": ["ext.example.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        },
    )
    (finding,) = with_cluster(
        prod_stack, [entry], mirror_to("ext.example.com", port={"number": 8443}), "IST0101"
    )
    assert finding.message.startswith('Referenced host:port not found: "ext.example.com:8443"')
    assert "ServiceEntry does not expose (ports: 443)" in finding.message
    assert (
        with_cluster(
            prod_stack, [entry], mirror_to("ext.example.com", port={"number": 443}), "IST0101"
        )
        == []
    )


def test_a_service_entry_with_two_ports_needs_a_destination_port_ist0112(prod_stack):
    ports = [
        {"number": 443, "name": "tls", "protocol": "TLS"},
        {"number": 80, "name": "http", "protocol": "HTTP"},
    ]
    entry = se("ext", "team-b", {"hosts": ["ext.example.com"], "ports": ports})
    (finding,) = with_cluster(prod_stack, [entry], mirror_to("ext.example.com"), "IST0112")
    assert finding.message.startswith(
        'This VirtualService routes to a service "ext.example.com" that exposes multiple ports [443 80].'
    )


def test_a_foreign_route_broken_by_the_stack_is_introduced_one_already_broken_is_the_clusters(
    prod_stack,
):
    live = service("sentiment", "ml-serving", [{"name": "http", "port": 9000}])
    foreign = vs("probe", "team-b", route(HOST, port={"number": 9000}))
    lost = vs("lost", "team-b", route("nothing.team-b.svc.cluster.local"))
    findings = with_cluster(prod_stack, [live, foreign, lost], code="IST0101")
    origins = {(f.resource, f.origin, f.path) for f in findings}
    assert origins == {
        ("VirtualService team-b/probe", "introduced", None),  # the stack's Service drops port 9000
        ("VirtualService team-b/lost", "cluster", None),
    }
    assert [f.fails for f in findings if f.origin == "cluster"] == [False]


# --- IST0101 subset: virtualservice/destinationrules.go -----------------------------------------


@pytest.mark.parametrize(
    ("rule_namespace", "host", "reported"),
    [
        ("team-b", HOST, False),  # an FQDN of the cluster: the same (namespace, name) anywhere
        ("ml-serving", "sentiment", False),
        ("team-b", "sentiment", True),  # sentiment.team-b
        ("ml-serving", "ext.example.com", False),
        ("team-b", "ext.example.com", True),  # an external host pairs within one namespace
    ],
)
def test_a_subset_pairs_with_the_destination_rule_of_the_same_host_name(
    prod_stack, rule_namespace, host, reported
):
    target = HOST if "sentiment" in host else "ext.example.com"
    cluster = [
        dr(
            "extra",
            rule_namespace,
            {"host": host, "subsets": [{"name": "shadow", "labels": {"version": "v3"}}]},
        ),
        se("ext", "ml-serving", {"hosts": ["ext.example.com"]}),
    ]
    findings = with_cluster(prod_stack, cluster, mirror_to(target, subset="shadow"), "IST0101")
    assert bool(findings) is reported, findings
    if reported:
        assert findings[0].message.startswith(
            f'Referenced mirror+subset in destinationrule not found: "{target}+shadow"'
        )


# --- IST0174 / IST0173: destinationrule/subset.go -----------------------------------------------


def web_rule(
    subsets: list[dict[str, Any]], namespace_: str = "team-b", **spec: Any
) -> dict[str, Any]:
    return dr(
        "web", namespace_, {"host": "web.team-b.svc.cluster.local", "subsets": subsets, **spec}
    )


ZONE = "topology.kubernetes.io/zone"


@pytest.mark.parametrize(
    ("subset_labels", "pod_node", "node_labels", "reported"),
    [
        ({ZONE: "z1"}, "n1", {ZONE: "z1"}, False),  # the pod is on a node in zone z1
        ({ZONE: "z1"}, "n1", {ZONE: "z2"}, True),
        ({ZONE: "z1"}, None, {ZONE: "z1"}, True),  # not scheduled: no topology
        ({"kubernetes.io/hostname": "n1"}, "n1", {}, False),
        ({"topology.kubernetes.io/region": ""}, "n1", {"topology.kubernetes.io/region": ""}, True),
        ({"version": "v1"}, "n1", {}, False),
        ({"version": "v2"}, "n1", {}, True),
        ({}, "n1", {}, False),  # no labels: any pod
    ],
)
def test_a_subset_selects_pods_with_their_node_topology(
    prod_stack, subset_labels, pod_node, node_labels, reported
):
    cluster = [
        service("web", "team-b"),
        web_rule([{"name": "s", "labels": subset_labels}]),
        pod("web-1", "team-b", {"app": "web", "version": "v1"}, pod_node),
        node("n1", node_labels),
    ]
    findings = with_cluster(prod_stack, cluster, code="IST0173")
    assert bool(findings) is reported, findings
    if reported:
        (finding,) = findings
        assert finding.message.startswith(
            "The Subset s defined in the DestinationRule does not select any pods."
        )
        assert (finding.severity, finding.origin, finding.path) == ("error", "cluster", None)


def test_a_subset_selects_pods_of_every_namespace_as_istio_does(prod_stack):
    cluster = [
        service("web", "team-b"),
        web_rule([{"name": "s", "labels": {"version": "v1"}}]),
        pod("other", "team-c", {"version": "v1"}),
    ]
    assert with_cluster(prod_stack, cluster, code="IST0173") == []


@pytest.mark.parametrize(
    ("rule_export", "entry_export", "reported"),
    [
        (None, None, False),
        (None, ["."], True),
        (["team-b"], ["team-b"], False),
        (None, ["team-b"], False),
    ],
)
def test_the_destination_rule_host_resolves_with_its_export_to_ist0174(
    prod_stack, rule_export, entry_export, reported
):
    rule = dr(
        "ext",
        "team-b",
        {"host": "ext.example.com"} | ({"exportTo": rule_export} if rule_export else {}),
    )
    entry = se(
        "ext",
        "team-c",
        {"hosts": ["ext.example.com"]} | ({"exportTo": entry_export} if entry_export else {}),
    )
    findings = with_cluster(prod_stack, [rule, entry], code="IST0174")
    assert bool(findings) is reported, findings
    if reported:
        assert findings[0].message.startswith(
            "The host ext.example.com defined in the DestinationRule does not match"
        )


def test_a_service_entry_subset_selects_by_its_workload_selector(prod_stack):
    entry = se(
        "db", "team-b", {"hosts": ["db.example.com"], "workloadSelector": {"labels": {"app": "db"}}}
    )
    rule = dr(
        "db",
        "team-b",
        {"host": "db.example.com", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    )
    assert (
        with_cluster(
            prod_stack,
            [entry, rule, pod("db-1", "team-b", {"app": "db", "version": "v1"})],
            code="IST0173",
        )
        == []
    )
    (finding,) = with_cluster(
        prod_stack,
        [entry, rule, pod("web-1", "team-b", {"app": "web", "version": "v1"})],
        code="IST0173",
    )
    assert finding.resource == "DestinationRule team-b/db"


def test_a_stack_subset_matching_only_another_models_pods_is_mesh0012(prod_stack):
    """istioctl is silent (it matches the subset's labels alone); the Service's endpoints carry
    none of them, so ml-mesh reports it for the stack's own subsets."""

    def relabel(objects: Objects) -> None:
        (rule,) = [
            o
            for o in objects
            if o["kind"] == "DestinationRule" and o["metadata"]["name"] == "fraud"
        ]
        rule["spec"]["subsets"][0]["labels"] = {"version": "v3"}  # sentiment's version

    findings = with_cluster(prod_stack, [], relabel)
    assert [
        (f.code, f.severity, f.path) for f in findings if f.code in ("IST0173", "MESH0012")
    ] == [("MESH0012", "error", "models.fraud.versions.v7")]


# --- IST0109: virtualservice/conflictingmeshgatewayhosts.go ---------------------------------------


def test_another_teams_virtual_service_on_a_stack_host_is_ist0109_on_both(prod_stack):
    foreign = vs("search", "team-b", {"hosts": [HOST], **route(HOST)})
    findings = with_cluster(prod_stack, [foreign], code="IST0109")
    assert {(f.resource, f.origin) for f in findings} == {
        ("VirtualService ml-serving/sentiment", "stack"),
        ("VirtualService team-b/search", "introduced"),
    }
    assert findings[0].message.startswith(
        f"The VirtualServices ml-serving/sentiment,team-b/search associated with mesh gateway define the same host */{HOST}"
    )
    assert {f.path for f in findings} == {"models.sentiment.hosts", None}


def test_a_conflict_already_live_is_the_clusters_on_the_foreign_object(prod_stack):
    _, objects = prod_stack
    live = copy.deepcopy(_stack_vs(objects))
    findings = with_cluster(
        prod_stack, [live, vs("search", "team-b", {"hosts": [HOST]})], code="IST0109"
    )
    assert {(f.resource, f.origin) for f in findings} == {
        ("VirtualService ml-serving/sentiment", "stack"),
        ("VirtualService team-b/search", "cluster"),
    }


@pytest.mark.parametrize(
    ("foreign", "reported"),
    [
        # a narrower scope still sees the stack's host, exported to all (testdata team2/google.com)
        ({"hosts": [HOST], "exportTo": ["."]}, True),
        ({"hosts": [HOST], "exportTo": ["team-b", "team-c"]}, True),
        # not bound to the mesh
        ({"hosts": [HOST], "gateways": ["team-b/gw"]}, False),
        ({"hosts": [HOST], "gateways": ["team-b/gw", "mesh"]}, True),
        # wildcard containment: only between a narrower scope and a host exported to all
        ({"hosts": ["*.ml-serving.svc.cluster.local"], "exportTo": ["."]}, True),
        ({"hosts": ["*.ml-serving.svc.cluster.local"]}, False),
        ({"hosts": ["*.svc.cluster.local"], "exportTo": ["team-b"]}, True),
        ({"hosts": ["fraud.ml-serving.svc.cluster.local"], "exportTo": ["."]}, True),
        ({"hosts": ["sentiment"], "exportTo": ["."]}, False),  # sentiment.team-b
    ],
)
def test_mesh_host_conflicts_follow_export_to_and_wildcards(prod_stack, foreign, reported):
    findings = with_cluster(prod_stack, [vs("search", "team-b", foreign)], code="IST0109")
    assert bool(findings) is reported, findings


def test_two_foreign_virtual_services_exported_to_their_own_namespaces_do_not_conflict(prod_stack):
    host = "ratings.team-a.svc.cluster.local"
    cluster = [
        vs("ratings", "team-a", {"hosts": ["ratings"], "exportTo": ["."]}),
        vs("ratings", "team-b", {"hosts": [host], "exportTo": ["."]}),
    ]
    assert with_cluster(prod_stack, cluster, code="IST0109") == []


def test_wildcard_and_exact_hosts_conflict_when_one_is_scoped(prod_stack):
    cluster = [
        vs("wild", "team-a", {"hosts": ["*.example.com"]}),
        vs("api", "team-b", {"hosts": ["api.example.com"], "exportTo": ["."]}),
    ]
    findings = run_rule(prod_stack, mesh_host_conflicts, cluster)
    assert {f.resource for f in findings} == {
        "VirtualService team-a/wild",
        "VirtualService team-b/api",
    }
    assert "define the same host team-b/api.example.com" in findings[0].message


def _istio_testdata(text: str) -> Objects:
    return [d for d in yaml.safe_load_all(text) if d]


# pkg/config/analysis/analyzers/testdata/virtualservice_conflictingmeshgatewayhosts.yaml
CONFLICTING_HOSTS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: foo}
spec: {hosts: [productpage]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bogus-productpage, namespace: foo}
spec: {hosts: [productpage]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: foo}
spec: {hosts: [reviews]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bar}
spec: {hosts: [reviews.foo.svc.cluster.local], gateways: [istio-ingressgateway]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: foo}
spec: {hosts: [ratings], gateways: [mesh]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bar}
spec: {hosts: [ratings.foo.svc.cluster.local, google.com], gateways: [istio-ingressgateway, mesh]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: team1}
spec: {hosts: [ratings], gateways: [mesh], exportTo: ["."]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: team2}
spec: {hosts: [ratings.team1.svc.cluster.local, google.com], exportTo: ["."], gateways: [istio-ingressgateway, mesh]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: team3}
spec: {hosts: [ratings], gateways: [mesh], exportTo: ["*"]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: team4}
spec: {hosts: [ratings.team3.svc.cluster.local], gateways: [istio-ingressgateway, mesh]}
"""

# pkg/config/analysis/analyzers/testdata/virtualservice_conflictingmeshgatewayhosts_with_exportto.yaml
CONFLICTING_HOSTS_EXPORT_TO = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: foo}
spec: {hosts: ['*.productpage']}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: bar}
spec: {hosts: ['*.productpage']}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-b, namespace: foo}
spec: {hosts: ['*.productpage.b'], exportTo: [foo]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-b, namespace: bar}
spec: {hosts: ['*.productpage.b'], exportTo: ['.']}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-c, namespace: foo}
spec: {hosts: ['*.productpage.c'], exportTo: [foo]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-c, namespace: bar}
spec: {hosts: ['*.productpage.c'], exportTo: ['*']}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-d, namespace: foo}
spec: {hosts: ['*.productpage.d'], exportTo: ['.']}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-d, namespace: bar}
spec: {hosts: ['*.d'], exportTo: ['*']}
"""


@pytest.mark.parametrize(
    ("testdata", "expected"),
    [
        (
            CONFLICTING_HOSTS,
            {
                "team3/ratings",
                "team4/ratings",
                "foo/ratings",
                "bar/ratings",
                "foo/productpage",
                "foo/bogus-productpage",
                "team2/ratings",
            },
        ),
        (
            CONFLICTING_HOSTS_EXPORT_TO,
            {
                "foo/productpage",
                "bar/productpage",
                "foo/productpage-c",
                "bar/productpage-c",
                "foo/productpage-d",
                "bar/productpage-d",
            },
        ),
    ],
    ids=["conflictingmeshgatewayhosts", "with_exportto"],
)
def test_conflicting_mesh_gateway_hosts_as_istios_testdata(prod_stack, testdata, expected):
    findings = run_rule(prod_stack, mesh_host_conflicts, _istio_testdata(testdata))
    assert sorted(f.resource.removeprefix("VirtualService ") for f in findings) == sorted(expected)


# --- IST0101 gateway / IST0132 / IST0165: virtualservice/gateways.go -----------------------------


@pytest.mark.parametrize(
    ("gateways", "codes"),
    [
        ([gateway("web", "team-b", ["*/web.example.com"])], set()),
        # a Gateway API Gateway of that name is not the Istio Gateway the reference means
        (
            [gateway("web", "team-b", ["*/web.example.com"], api="gateway.networking.k8s.io/v1")],
            {"IST0101", "IST0132"},
        ),
        ([gateway("web", "team-b", ["team-c/web.example.com"])], {"IST0132"}),
        ([gateway("web", "team-b", ["./*.example.com"])], set()),
        ([gateway("web", "team-b", ["*/*"])], set()),
        ([gateway("web", "team-b", ["other.example.com"])], {"IST0132"}),
    ],
)
def test_a_foreign_gateway_reference_resolves_to_an_istio_gateway(prod_stack, gateways, codes):
    foreign = vs("web", "team-b", {"hosts": ["web.example.com"], "gateways": ["web"]})
    findings = [
        f
        for f in with_cluster(prod_stack, [foreign, *gateways])
        if f.resource == "VirtualService team-b/web"
    ]
    assert {f.code for f in findings} == codes, findings
    for finding in findings:
        assert (finding.origin, finding.path) == ("cluster", None)
        if finding.code == "IST0101":
            assert finding.message.startswith('Referenced gateway not found: "web"')
        else:
            assert finding.message.startswith(
                "one or more host [web.example.com] defined in VirtualService team-b/web not found in Gateway team-b/web."
            )


def test_a_foreign_virtual_service_on_the_stacks_gateway_binds_only_to_hosts_it_offers(prod_stack):
    """The live Gateway offers the host to every namespace; the stack's offers it to its own
    (`./`): the foreign VirtualService is cut off by the stack (introduced)."""
    foreign = vs(
        "grab",
        "team-b",
        {"hosts": ["sentiment.models.example.com"], "gateways": ["ml-serving/ml-gateway"]},
    )
    live = gateway("ml-gateway", "ml-serving", ["*/sentiment.models.example.com"])
    assert (
        with_cluster(prod_stack, [foreign], code="IST0132")[0].origin == "cluster"
    )  # no gateway yet
    (finding,) = with_cluster(prod_stack, [foreign, live], code="IST0132")
    assert (finding.resource, finding.origin) == ("VirtualService team-b/grab", "introduced")


def test_a_reference_to_an_internal_gateway_is_ist0165(prod_stack):
    foreign = vs(
        "web",
        "team-b",
        {
            "hosts": ["web.example.com"],
            "gateways": ["team-b/web~istio-autogenerated-k8s-gateway~http"],
        },
    )
    findings = [
        f for f in with_cluster(prod_stack, [foreign]) if f.resource == "VirtualService team-b/web"
    ]
    assert [(f.code, f.severity) for f in findings] == [("IST0165", "warning")]
    assert findings[0].message.startswith(
        "Gateway reference in VirtualService team-b/web is to an implementation-generated internal Gateway"
    )


# pkg/config/analysis/analyzers/testdata/virtualservice_gateways.yaml (namespace `default`)
GATEWAYS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: default}
spec: {selector: {istio: ingressgateway}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: crossnamespace-gw, namespace: another}
spec: {selector: {istio: ingressgateway}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec: {hosts: ["*"], gateways: [httpbin-gateway]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin-bogus, namespace: default}
spec: {hosts: ["*"], gateways: [httpbin-gateway-bogus]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin-mesh, namespace: default}
spec: {hosts: ["*"], gateways: [mesh]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cross-test, namespace: default}
spec: {hosts: ["*"], gateways: [another/crossnamespace-gw]}
"""


def test_gateway_references_as_istios_testdata(prod_stack):
    findings = run_rule(prod_stack, gateway_references, _istio_testdata(GATEWAYS))
    assert sorted((f.code, f.resource) for f in findings) == [
        ("IST0101", "VirtualService default/httpbin-bogus"),
        ("IST0132", "VirtualService default/cross-test"),
        ("IST0132", "VirtualService default/httpbin"),
        ("IST0132", "VirtualService default/httpbin-bogus"),
    ]


# --- IST0118: service/portname.go ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "reported"),
    [
        (service("metrics", "team-b", [{"name": "metrics", "port": 9090}]), True),
        (
            service("metrics", "team-b", [{"name": "metrics", "port": 9090, "targetPort": "m"}]),
            True,
        ),
        (service("db", "team-b", [{"name": "db", "port": 3306}]), False),  # well-known port: TCP
        (service("dns", "team-b", [{"name": "dns", "port": 5353, "protocol": "UDP"}]), False),
        (service("grpcweb", "team-b", [{"name": "GRPC-Web-x", "port": 80}]), False),
        (service("empty", "team-b", [{"name": "http", "port": 80, "appProtocol": ""}]), True),
        (
            service(
                "ingress",
                "istio-system",
                [{"name": "status", "port": 15021}],
                labels={"istio": "ingressgateway"},
            ),
            False,
        ),
        (
            service(
                "old",
                "istio-system",
                [{"name": "status", "port": 15021}],
                labels={"release": "istio"},
            ),
            False,
        ),
        (
            service(
                "gw-istio",
                "team-b",
                [{"name": "status", "port": 15021}],
                labels={"gateway.istio.io/managed": "istio.io-gateway-controller"},
            ),
            False,
        ),
        (
            service("dns", "kube-system", [{"name": "dns", "port": 9153}]),
            False,
        ),  # ignored namespace
    ],
)
def test_service_port_names_skip_what_istio_skips(prod_stack, obj, reported):
    findings = with_cluster(prod_stack, [obj], code="IST0118")
    assert bool(findings) is reported, findings
    if reported:
        (finding,) = findings
        target = obj["spec"]["ports"][0].get("targetPort", "0")
        assert finding.message.startswith(
            f"Port name {obj['spec']['ports'][0]['name']} (port: {obj['spec']['ports'][0]['port']}, targetPort: {target}) "
            "doesn't follow the naming convention of Istio port."
        )
        assert (finding.severity, finding.origin, finding.path) == ("info", "cluster", None)


# --- IST0102 / IST0123: injection/injection.go ----------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "codes"),
    [
        (namespace("team-b"), {"IST0102"}),
        (namespace("team-b", {"istio-injection": ""}), {"IST0102"}),
        (namespace("team-b", {"istio-injection": "disabled"}), set()),  # opted out on purpose
        (namespace("team-b", {"istio.io/rev": "canary"}), set()),
        (namespace("team-b", {"istio.io/dataplane-mode": "ambient"}), set()),
        (namespace("istio-system"), set()),
        (namespace("kube-system"), set()),
        (namespace("local-path-storage"), set()),
        (
            namespace("team-b", {"istio-injection": "enabled", "istio.io/rev": "canary"}),
            {"IST0123"},
        ),
        (namespace("team-b", {"istio-injection": "disabled", "istio.io/rev": "canary"}), set()),
        (
            namespace("team-b", {"istio.io/rev": "canary", "istio.io/dataplane-mode": "ambient"}),
            {"IST0123"},
        ),
    ],
)
def test_namespace_injection_judges_foreign_namespaces_as_istio(prod_stack, obj, codes):
    findings = [f for f in with_cluster(prod_stack, [obj]) if f.code in ("IST0102", "IST0123")]
    assert {f.code for f in findings} == codes, findings
    assert all(f.origin == "cluster" and f.path is None for f in findings)
    for finding in findings:
        if finding.code == "IST0102":
            assert finding.message.startswith(
                "The namespace is not enabled for Istio injection. Run 'kubectl label namespace team-b istio-injection=enabled'"
            )
        else:
            assert finding.message.startswith(
                "The namespace has more than one type of injection labels ["
            )


def _injector(values: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("istio-sidecar-injector", "istio-system"),
        "data": {"values": values if isinstance(values, str) else json.dumps(values)},
    }


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"sidecarInjectorWebhook": {"enableNamespacesByDefault": True}}, "IST0148"),
        ({"sidecarInjectorWebhook": {"enableNamespacesByDefault": False}}, "IST0102"),
        ("not json", "IST0102"),
    ],
)
def test_injection_enabled_by_default_is_ist0148_not_ist0102(prod_stack, values, code):
    findings = with_cluster(prod_stack, [namespace("team-b"), _injector(values)])
    (finding,) = [f for f in findings if f.code in ("IST0102", "IST0148")]
    assert finding.code == code and finding.resource == "Namespace team-b"
    if code == "IST0148":
        assert finding.message == (
            "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true."
        )


def test_objects_of_ignored_namespaces_never_reach_a_rule(prod_stack):
    lost = vs("lost", "kube-system", route("nothing.kube-system.svc.cluster.local"))
    assert with_cluster(prod_stack, [lost]) == with_cluster(prod_stack, [])


# --- snapshot formats ----------------------------------------------------------------------------


def _conflicting() -> Objects:
    return [
        vs("search", "team-b", {"hosts": [HOST]}),
        namespace("team-b", {"istio-injection": "enabled"}),
        *ingress(),
    ]


@pytest.mark.parametrize(
    "text",
    [
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": _conflicting()}),
        yaml.safe_dump_all(_conflicting()),
        json.dumps({"apiVersion": "v1", "kind": "List", "items": _conflicting()}),
        json.dumps(_conflicting()),
    ],
    ids=["yaml-list", "multi-document", "json-list", "json-array"],
)
def test_every_snapshot_format_gives_the_same_host_findings(prod_stack, tmp_path, text):
    path = tmp_path / "snapshot"
    path.write_text(text)
    config, objects = prod_stack
    findings = check(config, copy.deepcopy(objects), cluster=load_snapshot([str(path)]))
    assert {(f.code, f.resource, f.origin) for f in findings if f.code.startswith("IST")} == {
        ("IST0109", "VirtualService ml-serving/sentiment", "stack"),
        ("IST0109", "VirtualService team-b/search", "introduced"),
    }


def test_the_stack_alone_is_judged_as_before(prod_stack):
    config, objects = prod_stack
    alone = [f for f in check(config, copy.deepcopy(objects)) if f.code.startswith("IST")]
    assert alone == []
    assert [f for f in with_cluster(prod_stack, []) if f.code.startswith("IST")] == []


def test_rules_see_every_stack_object_without_a_snapshot(prod_stack):
    """No snapshot: nothing is filtered, not even an object in kube-system."""
    config, _ = prod_stack
    lost = vs("lost", "kube-system", route("nothing.kube-system.svc.cluster.local"))
    findings = list(virtual_service_destinations(_Index(config, [lost])))
    assert [f.code for f in findings] == ["IST0101"]
    assert list(destination_rule_subsets(_Index(config, []))) == []
    assert list(namespace_injection(_Index(config, [namespace("kube-system")]))) != []
    assert list(service_port_names(_Index(config, []))) == []
