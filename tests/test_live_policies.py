"""Workload policies and route matches, as Istio's analyzers judge them (issue 12).

IST0130/IST0131 (mesh.checks.matches) run on every VirtualService, the stack's alone too; the
selector rules (mesh.checks.workload_policies) run over the stack and, with `cluster=`, a snapshot
of the cluster it lands in. Each rule is pinned on the stack's objects and on foreign ones
(`introduced` when the stack causes the finding, `cluster` when the snapshot alone has it), and
where Istio stays silent. Cases marked "Istio testdata" are ported from
pkg/config/analysis/analyzers/testdata in istio/istio 1.30.3 with the expectations of
analyzers_test.go.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from mesh.checks import check
from mesh.checks.index import _Index
from mesh.checks.matches import as_json, unreachable_routes
from mesh.checks.workload_policies import (
    authorization_policies,
    namespace_match,
    selector_string,
    sidecar_selectors,
    telemetry_selectors,
)
from mesh.config import parse_config
from mesh.plan import build_plan
from tests.conftest import PROJECT_DIR, stack_raw, with_value
from tests.test_checks import _pinned

NS = "ml-serving"
CODES = {"IST0101", "IST0110", "IST0111", "IST0127", "IST0130", "IST0131", "IST0134"}
CODES |= {"IST0159", "IST0160", "MESH0005", "MESH0006"}


def _config(stack: str = "prod", raw: dict[str, Any] | None = None):
    return parse_config(_pinned(raw if raw is not None else stack_raw(stack)), stack)


@pytest.fixture(scope="module")
def prod():
    config = _config()
    return config, build_plan(config).objects()


def _namespace(name: str, injected: bool = True) -> dict[str, Any]:
    labels = {"istio-injection": "enabled"} if injected else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _pod(name: str, namespace: str, labels: dict[str, str], proxy: bool = True) -> dict[str, Any]:
    containers = [{"name": "app", "image": "app:1"}]
    if proxy:
        containers.append({"name": "istio-proxy", "image": "istio/proxyv2:1.30.3"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": containers},
    }


def _obj(kind: str, name: str, namespace: str, spec: dict[str, Any], **meta: Any) -> dict:
    group = {
        "Sidecar": "networking.istio.io/v1",
        "ServiceEntry": "networking.istio.io/v1",
        "VirtualService": "networking.istio.io/v1",
        "Telemetry": "telemetry.istio.io/v1",
        "AuthorizationPolicy": "security.istio.io/v1",
    }[kind]
    metadata = {"name": name, "namespace": namespace, **meta}
    return {"apiVersion": group, "kind": kind, "metadata": metadata, "spec": spec}


GATEWAY = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
# A cluster ml-mesh lands in: its namespaces, the ingress gateway (pods, Service, TLS Secret's
# metadata, so the gateway analyzers have nothing to say), a workload of another team.
BASE = [
    _namespace(NS),
    _namespace("istio-system", injected=False),
    _namespace("team-b"),
    _namespace("payments"),
    _pod("istio-ingressgateway-1", "istio-system", GATEWAY),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
        "spec": {
            "selector": GATEWAY,
            "ports": [
                {"name": "http2", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 443, "targetPort": 8443},
            ],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "models-example-com-tls", "namespace": "istio-system"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    },
    _pod("web-1", "team-b", {"app": "web"}),
]


def _live(prod, *extra: dict[str, Any], base: list | None = None) -> list[tuple]:
    """(severity, code, resource, origin, path) of this module's codes, stack over cluster."""
    config, objects = prod
    cluster = copy.deepcopy([*(BASE if base is None else base), *extra])
    findings = check(config, objects, cluster=cluster)
    return sorted(
        (f.severity, f.code, f.resource, f.origin, f.path) for f in findings if f.code in CODES
    )


def _messages(prod, *extra: dict[str, Any], code: str) -> list[str]:
    config, objects = prod
    findings = check(config, objects, cluster=copy.deepcopy([*BASE, *extra]))
    return sorted(f.message for f in findings if f.code == code)


# --- IST0130 / IST0131: unreachable rules and ineffective matches --------------------------

ISTIO_DUPMATCHES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sample-foo-cluster01, namespace: foo}
spec:
  hosts: [sample.foo.svc.cluster.local]
  http:
  - fault: {delay: {fixedDelay: 5s, percentage: {value: 100}}}
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
  - mirror: {host: sample.bar.svc.cluster.local}
    route: [{destination: {host: sample.bar.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: duplicate-match}
spec:
  hosts: [sample.baz.svc.cluster.local]
  http:
  - name: send /api/v1/products to sample.foo
    match: [{name: prefix /api/v1/products, uri: {prefix: /api/v1/products}}]
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
  - name: send /api/v1/products to sample.bar
    match: [{uri: {prefix: /api/v1/products}}]
    route: [{destination: {host: sample.bar.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: almost-duplicate-match}
spec:
  hosts: [sample.bar.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /api/v1/products}}]
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
  - name: send /api/v1/products and /potato to sample.bar
    match:
    - {name: prefix /api/v1/products, uri: {prefix: /api/v1/products}}
    - {name: prefix /potato, uri: {prefix: /potato}}
    route: [{destination: {host: sample.bar.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: duplicate-tcp-match}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - match: [{port: 31400}]
    route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v1}}]
  - match: [{port: 31400}]
    route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: duplicate-empty-tcp}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v1}}]
  - route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: almost-duplicate-tcp-match}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - match: [{port: 31400}]
    route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v1}}]
  - match: [{port: 31400}, {port: 31401}]
    route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-routing, namespace: none}
spec:
  hosts: [www1.googleapis.com, api1.facebook.com]
  tls:
  - match: [{port: 2443, sniHosts: [www1.googleapis.com]}]
    route: [{destination: {host: www1.googleapis.com}}]
  - match: [{port: 2443, sniHosts: [www1.googleapis.com]}]
    route: [{destination: {host: api1.facebook.com}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-routing-almostmatch, namespace: none}
spec:
  hosts: [www1.example.com]
  tls:
  - match: [{port: 2443, sniHosts: [www1.example.com]}]
    route: [{destination: {host: www1.googleapis.com}}]
  - match:
    - {port: 2443, sniHosts: [www1.example.com]}
    - {port: 8443, sniHosts: [www1.example.com]}
    route: [{destination: {host: api1.facebook.com}}]
"""

ISTIO_OVERLAPPING = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: non-method-get}
spec:
  hosts: [sample.baz.svc.cluster.local]
  http:
  - name: send product to sample.foo
    match:
    - uri: {prefix: /api/v1/product}
    - {uri: {prefix: /api/v1/products}, method: {exact: GET}}
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: uri-with-prefix-exact}
spec:
  hosts: [sample.baz.svc.cluster.local]
  http:
  - name: send product to sample.foo
    match:
    - uri: {prefix: /}
    - {uri: {exact: /}, method: {exact: GET}}
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: overlapping-in-single-match}
spec:
  hosts: [sample.baz.svc.cluster.local]
  http:
  - name: send product to sample.foo
    match:
    - {uri: {prefix: /api/v1/product}, method: {exact: GET}}
    - {uri: {prefix: /api/v1/products}, method: {exact: GET}}
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: overlapping-in-two-matches}
spec:
  hosts: [sample.baz.svc.cluster.local]
  http:
  - name: send product to sample.foo
    match: [{uri: {prefix: /api/v1/product}, method: {exact: GET}}]
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
  - name: send products to sample.bar
    match: [{uri: {prefix: /api/v1/products}, method: {exact: GET}}]
    route: [{destination: {host: sample.bar.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: overlapping-mathes-with-different-methods}
spec:
  hosts: [sample.baz.svc.cluster.local]
  http:
  - name: send product to sample.foo
    match: [{uri: {prefix: /api/v1/prod}, method: {exact: GET}}]
    route: [{destination: {host: sample.foo.svc.cluster.local}}]
  - name: send products to sample.bar
    match:
    - {uri: {prefix: /api/v1/product}, method: {exact: GET}}
    - {uri: {prefix: /api/v1/products}, method: {exact: POST}}
    route: [{destination: {host: sample.bar.svc.cluster.local, subset: v1}}]
"""

# analyzers_test.go "dupmatches" (both files, schema ValidationAnalyzer on VirtualService).
ISTIO_EXPECTED = sorted(
    [
        ("IST0130", "foo/sample-foo-cluster01"),
        ("IST0130", "default/duplicate-match"),
        ("IST0131", "default/almost-duplicate-match"),
        ("IST0131", "default/duplicate-match"),
        ("IST0130", "default/duplicate-tcp-match"),
        ("IST0130", "default/duplicate-empty-tcp"),
        ("IST0131", "default/almost-duplicate-tcp-match"),
        ("IST0131", "default/duplicate-tcp-match"),
        ("IST0130", "none/tls-routing"),
        ("IST0131", "none/tls-routing-almostmatch"),
        ("IST0131", "none/tls-routing"),
        ("IST0131", "default/non-method-get"),
        ("IST0131", "default/overlapping-in-single-match"),
        ("IST0131", "default/overlapping-in-two-matches"),
        ("IST0131", "default/overlapping-mathes-with-different-methods"),
    ]
)


def _route_findings(documents: str, default_namespace: str = "default"):
    config = _config("dev")
    objects = [d for d in yaml.safe_load_all(documents) if d]
    for obj in objects:
        obj["metadata"].setdefault("namespace", default_namespace)
    return list(unreachable_routes(_Index(config, objects, None, frozenset())))


def test_unreachable_rules_and_ineffective_matches_are_those_istio_reports_on_its_testdata():
    found = _route_findings(ISTIO_DUPMATCHES + "\n---\n" + ISTIO_OVERLAPPING)
    assert sorted((f.code, f.resource.split(" ", 1)[1]) for f in found) == ISTIO_EXPECTED
    assert {f.origin for f in found} == {"cluster"}
    assert {f.severity for f in found if f.code == "IST0130"} == {"warning"}
    assert {f.severity for f in found if f.code == "IST0131"} == {"info"}


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (
            "foo/sample-foo-cluster01",
            "VirtualService rule #1 not used (only the last rule can have no matches).",
        ),
        (
            "default/duplicate-match",
            'VirtualService rule "send /api/v1/products to sample.bar" match #0 is not used '
            '(duplicate/overlapping match in rule "send /api/v1/products to sample.foo").',
        ),
        (
            "default/duplicate-match",
            'VirtualService rule "send /api/v1/products to sample.bar" not used '
            "(all matches used by prior rules).",
        ),
        (
            "default/almost-duplicate-match",
            'VirtualService rule "send /api/v1/products and /potato to sample.bar" match '
            '"prefix /api/v1/products" is not used (duplicate/overlapping match in rule #0).',
        ),
        (
            "default/overlapping-in-two-matches",
            'VirtualService rule "send products to sample.bar" match #0 of prefix '
            "/api/v1/products is not used (duplicate/overlapping match in rule #0 of prefix "
            '/api/v1/product on "send product to sample.foo").',
        ),
    ],
)
def test_unreachable_rule_messages_number_rules_and_matches_as_istio_does(resource, message):
    found = _route_findings(ISTIO_DUPMATCHES + "\n---\n" + ISTIO_OVERLAPPING)
    assert message in {f.message for f in found if f.resource.endswith(resource)}


UNREACHABLE_AFTER_CATCH_ALL = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: after-catch-all}
spec:
  hosts: [a.example.com]
  http:
  - route: [{destination: {host: a}}]
  - match: [{headers: {x: {exact: "1"}}}, {headers: {x: {exact: "2"}}}]
    route: [{destination: {host: b}}]
"""


def test_every_match_after_a_rule_without_matches_is_unreachable_and_reported_once():
    (finding,) = _route_findings(UNREACHABLE_AFTER_CATCH_ALL)
    assert finding.code == "IST0130"
    assert finding.message == (
        "VirtualService rule #1 not used (route without matches defined before)."
    )


@pytest.mark.parametrize(
    ("name", "http"),
    [
        # a prefix "/" match is no catch-all for the validation: later rules stay reachable
        (
            "slash-prefix",
            [
                {"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": "a"}}]},
                {"match": [{"uri": {"exact": "/x"}}], "route": [{"destination": {"host": "b"}}]},
            ],
        ),
        # the same headers with another port, gateway or value are other matches
        (
            "other-port",
            [
                {"match": [{"port": 80, "headers": {"x": {"exact": "1"}}}]},
                {"match": [{"port": 81, "headers": {"x": {"exact": "1"}}}]},
            ],
        ),
        (
            "exact-vs-prefix",
            [
                {"match": [{"headers": {"x": {"exact": "1"}}}]},
                {"match": [{"headers": {"x": {"prefix": "1"}}}]},
            ],
        ),
        # one rule without matches, last: the weighted default route ml-mesh builds
        ("default-last", [{"match": [{"headers": {"x": {"exact": "1"}}}]}, {}]),
    ],
)
def test_distinct_matches_and_one_final_default_route_are_reachable(name, http):
    vs = _obj("VirtualService", name, "default", {"hosts": ["a.example.com"], "http": http})
    assert _route_findings(yaml.safe_dump(vs)) == []


def test_matches_that_differ_only_in_name_or_zero_values_are_duplicates():
    """asJSON drops the name; Go's encoding/json omits zero values."""
    a = {"name": "a", "headers": {"x": {"exact": "1"}}}
    b = {"name": "b", "headers": {"x": {"exact": "1"}}, "port": 0, "queryParams": {}}
    assert as_json(a, http=True) == as_json(b, http=True)
    assert as_json({"headers": {"x": {"exact": ""}}}, True) != as_json({"headers": {"x": {}}}, True)


def _all_features_raw() -> dict[str, Any]:
    from mesh.stackfile import raw_project_config

    document = yaml.safe_load((PROJECT_DIR / "examples/Pulumi.all-features.yaml").read_text())
    return raw_project_config(document)


def test_an_ab_rule_with_the_conditions_of_an_earlier_one_is_reported_on_its_config_key():
    raw = _all_features_raw()
    model = next(name for name, m in raw["models"].items() if m.get("matches"))
    first = raw["models"][model]["matches"]["beta"]
    raw = with_value(raw, f"models.{model}.matches.alpha", copy.deepcopy(first))
    config = parse_config(raw, "all-features")
    found = [f for f in check(config, build_plan(config).objects()) if f.code in CODES]
    unused = [f for f in found if f.code == "IST0130"]
    assert unused and {f.path for f in found} == {f"models.{model}.matches.beta"}
    assert {f.origin for f in found} == {"stack"}
    assert all("Match rule beta has only conditions an earlier rule" in f.message for f in unused)
    # the gRPC route's two blocks (mesh and gateway) are one message, as analyze dedupes
    assert len({f.message for f in found}) == len(found)


@pytest.mark.parametrize(
    "source",
    ["dev", "prod", *sorted(p.name for p in (PROJECT_DIR / "examples").glob("Pulumi.*.yaml"))],
)
def test_no_shipped_stack_builds_an_unreachable_rule_or_a_policy_finding(source):
    if source.endswith(".yaml"):
        from mesh.stackfile import raw_project_config

        document = yaml.safe_load((PROJECT_DIR / "examples" / source).read_text())
        config = parse_config(raw_project_config(document), source.split(".")[1])
    else:
        config = parse_config(stack_raw(source), source)
    findings = check(config, build_plan(config).objects())
    assert [f for f in findings if f.code in CODES] == []


def test_a_foreign_virtual_service_with_an_unreachable_rule_is_the_clusters_own(prod):
    vs = _obj(
        "VirtualService",
        "legacy",
        "team-b",
        {"hosts": ["legacy.example.com"], "http": [{"route": []}, {"route": []}]},
    )
    assert _live(prod, vs) == [
        ("warning", "IST0130", "VirtualService team-b/legacy", "cluster", None)
    ]


# --- sidecar/selector.go SelectorAnalyzer ---------------------------------------------------


def test_a_second_sidecar_without_selector_in_the_serving_namespace_fails_both(prod):
    other = _obj("Sidecar", "team-default", NS, {"egress": [{"hosts": ["./*"]}]})
    assert _live(prod, other) == [
        ("error", "IST0111", f"Sidecar {NS}/default", "stack", "security.restrictEgress"),
        ("error", "IST0111", f"Sidecar {NS}/team-default", "introduced", None),
    ]
    (message, _) = _messages(prod, other, code="IST0111")
    assert message.startswith(
        'The Sidecars [default team-default] in namespace "ml-serving" have no workload '
        "selector, which can lead to undefined behavior."
    )


@pytest.mark.parametrize(
    "sidecar",
    [
        # the live version of ml-mesh's own Sidecar: replaced by the stack's
        _obj("Sidecar", "default", NS, {"egress": [{"hosts": ["*/*"]}]}),
        # selector-less, in another namespace
        _obj("Sidecar", "default", "team-b", {"egress": [{"hosts": ["./*"]}]}),
        # a selector next to ml-mesh's selector-less one, matching a pod of the stack
        _obj("Sidecar", "sentiment", NS, {"workloadSelector": {"labels": {"app": "sentiment"}}}),
        # a selector matching a live pod of the snapshot
        _obj("Sidecar", "web", "team-b", {"workloadSelector": {"labels": {"app": "web"}}}),
    ],
    ids=["replaced", "other-namespace", "selector-on-stack-pods", "selector-on-live-pod"],
)
def test_sidecars_istio_accepts_next_to_ml_mesh_stay_silent(prod, sidecar):
    assert _live(prod, sidecar) == []


def test_a_sidecar_selector_matching_no_pod_of_its_namespace_is_referenced_not_found(prod):
    # app=web runs in team-b, not in ml-serving: Istio matches in the Sidecar's namespace only
    sidecar = _obj("Sidecar", "web", NS, {"workloadSelector": {"labels": {"app": "web"}}})
    assert _live(prod, sidecar) == [("error", "IST0101", f"Sidecar {NS}/web", "cluster", None)]
    assert _messages(prod, sidecar, code="IST0101") == ['Referenced selector not found: "app=web"']


def test_two_sidecars_selecting_one_pod_conflict_on_both(prod):
    one = _obj("Sidecar", "one", "team-b", {"workloadSelector": {"labels": {"app": "web"}}})
    two = _obj("Sidecar", "two", "team-b", {"workloadSelector": {"labels": {"app": "web"}}})
    assert _live(prod, one, two) == [
        ("error", "IST0110", "Sidecar team-b/one", "cluster", None),
        ("error", "IST0110", "Sidecar team-b/two", "cluster", None),
    ]
    assert set(_messages(prod, one, two, code="IST0110")) == {
        'The Sidecars [one two] in namespace "team-b" select the same workload pod "web-1", '
        "which can lead to undefined behavior."
    }


def test_two_sidecars_selecting_the_stacks_pods_conflict_because_of_the_stack(prod):
    one = _obj("Sidecar", "one", NS, {"workloadSelector": {"labels": {"app": "fraud"}}})
    two = _obj("Sidecar", "two", NS, {"workloadSelector": {"labels": {"version": "v7"}}})
    # fraud-v7's live pod (before the stack) carries neither label: the stack's pods bring it
    found = _live(prod, one, two, _pod("other", NS, {"app": "other"}))
    assert ("error", "IST0110", f"Sidecar {NS}/one", "introduced", None) in found
    assert ("error", "IST0110", f"Sidecar {NS}/two", "introduced", None) in found
    assert {m for m in _messages(prod, one, two, code="IST0110")} == {
        f'The Sidecars [one two] in namespace "{NS}" select the same workload pod "fraud-v7-*", '
        "which can lead to undefined behavior."
    }


# --- telemetry/selector.go, telemetry/default_selector.go ----------------------------------


def test_a_second_telemetry_without_selector_in_the_serving_namespace_fails_both(prod):
    other = _obj("Telemetry", "team-logs", NS, {"accessLogging": [{"providers": []}]})
    assert _live(prod, other) == [
        ("error", "IST0160", f"Telemetry {NS}/ml-mesh", "stack", "telemetry"),
        ("error", "IST0160", f"Telemetry {NS}/team-logs", "introduced", None),
    ]
    assert _messages(prod, other, code="IST0160")[0].startswith(
        'The Telemetries [ml-mesh team-logs] in namespace "ml-serving" have no workload selector'
    )


@pytest.mark.parametrize(
    "telemetry",
    [
        # the mesh-wide default of the root namespace, and one in another namespace
        _obj("Telemetry", "mesh-default", "istio-system", {"tracing": [{}]}),
        _obj("Telemetry", "team", "team-b", {"tracing": [{}]}),
        # `selector: {}`: neither selector-less for the default analyzer nor a selector
        _obj("Telemetry", "empty", NS, {"selector": {}, "tracing": [{}]}),
        # a selector matching the stack's pods, and one a live pod
        _obj("Telemetry", "fraud", NS, {"selector": {"matchLabels": {"app": "fraud"}}}),
        _obj("Telemetry", "web", "team-b", {"selector": {"matchLabels": {"app": "web"}}}),
        # the live version of ml-mesh's own
        _obj("Telemetry", "ml-mesh", NS, {"tracing": [{}]}),
    ],
    ids=["root", "other-namespace", "empty-selector", "stack-pods", "live-pod", "replaced"],
)
def test_telemetries_istio_accepts_next_to_ml_mesh_stay_silent(prod, telemetry):
    assert _live(prod, telemetry) == []


def test_telemetry_selectors_matching_nothing_or_the_same_pod_are_reported(prod):
    ghost = _obj("Telemetry", "ghost", "team-b", {"selector": {"matchLabels": {"app": "ghost"}}})
    one = _obj("Telemetry", "one", NS, {"selector": {"matchLabels": {"app": "sentiment"}}})
    two = _obj("Telemetry", "two", NS, {"selector": {"matchLabels": {"version": "v3"}}})
    assert _live(prod, ghost, one, two) == [
        ("error", "IST0101", "Telemetry team-b/ghost", "cluster", None),
        ("error", "IST0159", f"Telemetry {NS}/one", "introduced", None),
        ("error", "IST0159", f"Telemetry {NS}/two", "introduced", None),
    ]


# --- authz/authorizationpolicies.go AuthorizationPoliciesAnalyzer --------------------------


def _policy(name: str, namespace: str, selector: dict | None = None, **source: Any) -> dict:
    spec: dict[str, Any] = {"rules": [{"from": [{"source": source}]}] if source else []}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    return _obj("AuthorizationPolicy", name, namespace, spec)


@pytest.mark.parametrize(
    ("policy", "labels"),
    [
        (_policy("ghost", "team-b", {"app": "ghost"}), "app=ghost"),
        # the pod exists, but in another namespace
        (_policy("web", NS, {"app": "web"}), "app=web"),
        # mesh-wide (root namespace) with a selector no pod anywhere has
        (_policy("mesh-ghost", "istio-system", {"app": "ghost"}), "app=ghost"),
        # namespace-wide in a namespace without any pod
        (_policy("empty", "payments"), ""),
    ],
    ids=["no-pod", "other-namespace", "root-no-pod", "namespace-wide-empty"],
)
def test_an_authorization_policy_selecting_no_workload_is_reported(prod, policy, labels):
    (found,) = _live(prod, policy)
    assert found[:2] == ("warning", "IST0127") and found[3] == "cluster"
    assert _messages(prod, policy, code="IST0127") == [
        f"No matching workloads for this resource with the following labels: {labels}"
    ]


@pytest.mark.parametrize(
    "policy",
    [
        _policy("web", "team-b", {"app": "web"}),
        # mesh-wide: a selector matching a pod of any namespace, or no selector at all
        _policy("mesh-web", "istio-system", {"app": "web"}),
        _policy("mesh-wide", "istio-system"),
        # namespace-wide in a namespace with pods, and on the stack's own pods
        _policy("all", "team-b"),
        _policy("fraud-extra", NS, {"app": "fraud", "version": "v7"}),
        # namespaces Istio matches by pattern
        _policy("any", "team-b", {"app": "web"}, namespaces=["*", "team-*", "*-b", "PAYMENTS"]),
    ],
    ids=["pod", "root-pod", "root-wide", "namespace-wide", "stack-pods", "patterns"],
)
def test_authorization_policies_istio_accepts_stay_silent(prod, policy):
    assert _live(prod, policy) == []


def test_a_pod_without_sidecar_does_not_count_for_an_authorization_policy(prod):
    base = [
        *BASE,
        _namespace("legacy", injected=False),
        _pod("old", "legacy", {"app": "old"}, False),
    ]
    policy = _policy("old", "legacy", {"app": "old"})
    assert _live(prod, policy, base=base) == [
        ("warning", "IST0127", "AuthorizationPolicy legacy/old", "cluster", None)
    ]
    injected = _pod("old", "legacy", {"app": "old", "sidecar.istio.io/inject": "true"}, False)
    assert _live(prod, policy, base=[*base[:-1], injected]) == []


def test_source_namespaces_the_cluster_lacks_are_referenced_not_found(prod):
    policy = _policy(
        "callers", "team-b", {"app": "web"}, namespaces=["nowhere"], notNamespaces=["gone-*"]
    )
    assert _live(prod, policy) == [
        ("error", "IST0101", "AuthorizationPolicy team-b/callers", "cluster", None),
        ("error", "IST0101", "AuthorizationPolicy team-b/callers", "cluster", None),
    ]
    assert _messages(prod, policy, code="IST0101") == [
        'Referenced namespace not found: "gone-*"',
        'Referenced namespace not found: "nowhere"',
    ]


def test_a_callers_namespace_the_cluster_lacks_warns_on_the_stacks_policy(prod):
    base = [n for n in BASE if n["metadata"]["name"] != "payments"]
    assert _live(prod, base=base) == [
        ("warning", "MESH0006", f"AuthorizationPolicy {NS}/fraud", "stack", "models.fraud.callers")
    ]
    assert _live(prod) == []  # with the payments namespace


def test_namespace_existence_is_not_judged_without_the_clusters_namespaces(prod):
    """The stack alone, or a snapshot taken without `namespaces`, proves no namespace absent."""
    config, objects = prod
    policy = _policy("callers", "team-b", {"app": "web"}, namespaces=["nowhere"])
    pod = _pod("web-1", "team-b", {"app": "web"})
    gateway = [o for o in BASE if o["kind"] != "Namespace"]
    for cluster in ([*gateway, pod, policy], None):
        findings = check(config, objects, cluster=copy.deepcopy(cluster))
        on_policies = {f.code for f in findings if f.resource.startswith("AuthorizationPolicy")}
        assert on_policies & {"IST0101", "MESH0006"} == set()


def test_a_stack_policy_whose_pods_are_scaled_to_zero_selects_no_workload(prod):
    """The config refuses 0 replicas for a routed version; a plan that has them anyway (or a
    snapshot's Deployment at 0) has no pod for the policy."""
    config, objects = prod
    objects = copy.deepcopy(objects)
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "fraud-v7"
    ]
    deployment["spec"]["replicas"] = 0
    found = [f for f in check(config, objects) if f.code == "IST0127"]
    assert [(f.resource, f.origin, f.path) for f in found] == [
        (f"AuthorizationPolicy {NS}/fraud", "stack", "models.fraud")
    ]


def test_namespace_patterns_match_as_istio_does():
    assert namespace_match("team-b", "*") and namespace_match("team-b", "team-*")
    assert namespace_match("team-b", "*-b") and namespace_match("Team-B", "team-b")
    assert not namespace_match("team-b", "team-c") and not namespace_match("b-team", "*-c")
    assert selector_string({"version": "v1", "app": "a"}) == "app=a,version=v1"


# --- ServiceEntries: IST0134 and MESH0005 ---------------------------------------------------


def _entry(name: str, namespace: str, protocol: str | None, **spec: Any) -> dict:
    port: dict[str, Any] = {"number": 443, "name": "p"}
    if protocol:
        port["protocol"] = protocol
    body = {"hosts": ["s3.eu-west-1.amazonaws.com"], "ports": [port], **spec}
    return _obj("ServiceEntry", name, namespace, body, creationTimestamp="2025-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("entry", "reported"),
    [
        (_entry("tcp", "team-b", "TCP", exportTo=["."]), True),
        (_entry("unset", "team-b", None, exportTo=["."]), True),
        (_entry("lower", "team-b", "tcp", exportTo=["."]), True),
        (_entry("addresses", "team-b", "TCP", exportTo=["."], addresses=["10.0.0.1"]), False),
        (_entry("http", "team-b", "HTTP", exportTo=["."]), False),
    ],
    ids=["tcp", "unset", "lowercase", "addresses", "http"],
)
def test_service_entries_without_addresses_need_them_for_tcp_ports(prod, entry, reported):
    expected = [("warning", "IST0134", "ServiceEntry team-b/" + entry["metadata"]["name"])]
    assert [f[:3] for f in _live(prod, entry)] == (expected if reported else [])


def test_an_allocated_address_in_the_status_satisfies_ist0134(prod):
    entry = _entry("allocated", "team-b", "TCP", exportTo=["."])
    entry["status"] = {"addresses": [{"value": "240.240.0.1"}]}
    assert _live(prod, entry) == []


def test_an_older_service_entry_with_another_protocol_for_the_stacks_host_fails_the_stack(prod):
    older = _entry("s3", NS, "HTTPS")
    assert _live(prod, older) == [
        ("error", "MESH0005", f"ServiceEntry {NS}/model-store", "stack", "storage")
    ]
    (message,) = _messages(prod, older, code="MESH0005")
    assert message.startswith(
        "port 443 of host s3.eu-west-1.amazonaws.com is declared TLS here and HTTPS by "
        f"ServiceEntry {NS}/s3: istiod keeps ServiceEntry {NS}/s3"
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (_entry("s3", NS, "TLS"), []),  # the same protocol
        (_entry("s3", "team-b", "HTTPS", exportTo=["."]), []),  # not visible to ml-serving
        (_entry("s3", "team-b", "HTTPS", exportTo=["~"]), []),  # visible to no one
        (
            _entry("s3", "team-b", "HTTPS"),  # exported everywhere: both seen in ml-serving
            [("warning", "MESH0005", f"ServiceEntry {NS}/model-store", "stack", "storage")],
        ),
    ],
    ids=["same-protocol", "exported-to-own-namespace", "exported-nowhere", "exported-everywhere"],
)
def test_service_entry_protocols_conflict_only_where_a_proxy_sees_both(prod, entry, expected):
    assert _live(prod, entry) == expected


# --- Istio testdata, ported (analyzers_test.go expectations) -------------------------------

SELECTOR_PODS = """
- {apiVersion: v1, kind: Pod, metadata: {name: productpage, namespace: default, labels: {app: productpage}}}
- {apiVersion: v1, kind: Pod, metadata: {name: productpage-other, namespace: other, labels: {app: productpage}}}
- {apiVersion: v1, kind: Pod, metadata: {name: reviews, namespace: default, labels: {app: reviews}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: ratings, namespace: default, labels: {app: ratings-app, myapp: ratings-myapp}}
"""

# testdata/sidecar-selector.yaml and telemetry-selector.yaml: the same pods and selectors.
SELECTORS = {
    "maps-correctly-no-conflicts": ("default", {"app": "productpage"}),
    "maps-to-nonexistent": ("default", {"app": "bogus"}),
    "maps-to-different-ns": ("other", {"app": "reviews"}),
    "dupe-1": ("default", {"app": "reviews"}),
    "dupe-2": ("default", {"app": "reviews"}),
    "overlap-1": ("default", {"app": "ratings-app"}),
    "overlap-2": ("default", {"myapp": "ratings-myapp"}),
}
SELECTOR_EXPECTED = [
    ("IST0101", "default/maps-to-nonexistent"),
    ("IST0101", "other/maps-to-different-ns"),
    ("conflict", "default/dupe-1"),
    ("conflict", "default/dupe-2"),
    ("conflict", "default/overlap-1"),
    ("conflict", "default/overlap-2"),
]


def _istio(objects: list[dict[str, Any]], rule) -> list[tuple[str, str]]:
    """Every object a cluster's (no stack): findings as (code, namespace/name)."""
    index = _Index(_config("dev"), copy.deepcopy(objects), None, frozenset())
    return sorted((f.code, f.resource.split(" ", 1)[1]) for f in rule(index))


@pytest.mark.parametrize(
    ("kind", "field", "rule", "conflict"),
    [
        ("Sidecar", "workloadSelector", sidecar_selectors, "IST0110"),
        ("Telemetry", "selector", telemetry_selectors, "IST0159"),
    ],
)
def test_selector_analyzers_report_what_istio_reports_on_its_testdata(kind, field, rule, conflict):
    key = "labels" if kind == "Sidecar" else "matchLabels"
    policies = [
        _obj(kind, name, namespace, {field: {key: labels}})
        for name, (namespace, labels) in SELECTORS.items()
    ]
    found = _istio([*yaml.safe_load(SELECTOR_PODS), *policies], rule)
    expected = [(conflict if c == "conflict" else c, r) for c, r in SELECTOR_EXPECTED]
    assert found == sorted(expected)


@pytest.mark.parametrize(
    ("kind", "field", "rule", "code"),
    [
        ("Sidecar", "workloadSelector", sidecar_selectors, "IST0111"),
        ("Telemetry", "selector", telemetry_selectors, "IST0160"),
    ],
)
def test_default_selector_analyzers_report_what_istio_reports_on_its_testdata(
    kind, field, rule, code
):
    """testdata/sidecar-default-selector.yaml and telemetry-default-selector.yaml."""
    key = "labels" if kind == "Sidecar" else "matchLabels"
    objects = [
        _obj(kind, "no-selector", "ns1", {}),
        _obj(kind, "has-selector", "ns1", {field: {key: {"app": "foo"}}}),
        _obj(kind, "has-conflict-1", "ns2", {}),
        _obj(kind, "has-conflict-2", "ns2", {}),
        _namespace("ns1", injected=False),
        _namespace("ns2", injected=False),
        _pod("random-pod", "ns1", {"app": "foo"}, proxy=False),
    ]
    assert [f for f in _istio(objects, rule) if f[0] == code] == [
        (code, "ns2/has-conflict-1"),
        (code, "ns2/has-conflict-2"),
    ]


def test_authorization_policy_analyzer_reports_what_istio_reports_on_its_testdata():
    """testdata/authorizationpolicies.yaml (the rules' `to` and `when` left out: unread)."""
    sleep = {"principals": ["cluster.local/ns/default/sa/sleep"]}
    patterns = ["prod-*", "*-test", "*-bogus", "bogus-*", "*", "httpbin"]

    def policy(name, namespace, selector=None, **source):
        found = _policy(name, namespace, selector)
        found["spec"]["rules"] = [{"from": [{"source": sleep}, {"source": source}]}]
        return found

    httpbin = {"app": "httpbin", "version": "v1"}
    pod = _pod("httpbin-55bf89f8c9-wzfrh", "httpbin", httpbin, proxy=False)
    ambient = _pod("sleep-55bf89f8c9-wzfrh", "test-ambient", {"app": "sleep", "version": "v1"})
    ambient["spec"]["containers"].pop()
    ambient["metadata"]["annotations"] = {"ambient.istio.io/redirection": "enabled"}
    objects = [
        _namespace("httpbin"),
        _namespace("prod-httpbin"),
        _namespace("httpbin-test"),
        pod,
        ambient,
        policy("httpbin", "httpbin", httpbin, namespaces=["httpbin"]),
        _obj("AuthorizationPolicy", "meshwide-httpbin", "istio-system", {}),
        _policy("meshwide-httpbin-v1", "istio-system", {"version": "bogus-version"}),
        policy("httpbin-empty-namespace-wide", "httpbin-empty", namespaces=["httpbin"]),
        policy("httpbin-namespace-wide", "httpbin", namespaces=["httpbin"]),
        policy("httpbin-nopods", "httpbin", {"app": "bogus-label", "version": "v1"}),
        policy("httpbin-bogus-not-ns", "httpbin", httpbin, notNamespaces=patterns),
        policy("httpbin-bogus-ns", "httpbin", httpbin, namespaces=patterns),
        policy("no-workload", "test-ambient", httpbin, namespaces=["httpbin"]),
        policy("valid-policy", "test-ambient", {"app": "sleep", "version": "v1"}),
    ]
    assert _istio(objects, authorization_policies) == sorted(
        [
            ("IST0127", "istio-system/meshwide-httpbin-v1"),
            ("IST0127", "httpbin-empty/httpbin-empty-namespace-wide"),
            ("IST0127", "httpbin/httpbin-nopods"),
            ("IST0101", "httpbin/httpbin-bogus-ns"),
            ("IST0101", "httpbin/httpbin-bogus-ns"),
            ("IST0101", "httpbin/httpbin-bogus-not-ns"),
            ("IST0101", "httpbin/httpbin-bogus-not-ns"),
            ("IST0127", "test-ambient/no-workload"),
        ]
    )


def test_the_policy_of_flaggers_primary_selects_the_pods_flagger_will_make():
    """Progressive mode: the `<m>-primary` AuthorizationPolicy selects pods no Deployment of
    the stack has; Flagger copies the Canary's target to them (as mesh.checks.kubernetes
    models it), so neither the stack alone nor a cluster with the live primary pods warns."""
    raw = with_value(stack_raw("prod"), "models.sentiment.canary", {"version": "v4"})
    raw = with_value(raw, "models.sentiment.progressive", {"stepWeight": 5, "maxWeight": 30})
    config = _config(raw=raw)
    objects = build_plan(config).objects()
    assert any(o["metadata"]["name"] == "sentiment-primary" for o in objects)
    assert [f for f in check(config, objects) if f.code in CODES] == []
    live = _pod("sentiment-primary-5d9f", NS, {"app": "sentiment-primary"})
    two = [
        _obj("Sidecar", n, NS, {"workloadSelector": {"labels": {"app": "sentiment-primary"}}})
        for n in ("one", "two")
    ]
    findings = check(config, objects, cluster=copy.deepcopy([*BASE, live, *two]))
    # one conflict per pod and Sidecar: the live primary pod, not also Flagger's template
    assert (
        sorted(f.message.rsplit(" pod ", 1)[1] for f in findings if f.code == "IST0110")
        == ['"sentiment-primary-5d9f", which can lead to undefined behavior.'] * 2
    )


def test_pods_of_a_namespace_without_injection_select_no_policy_only_against_the_cluster():
    """Without a snapshot the missing injection is IST0102's, once; against the cluster the
    policies' pods get no sidecar, so Istio's IST0127 reports each policy too."""
    config = _config()
    objects = copy.deepcopy(build_plan(config).objects())
    (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
    namespace["metadata"]["labels"].pop("istio-injection")
    alone = {f.code for f in check(config, objects)}
    assert "IST0102" in alone and "IST0127" not in alone
    live = [f for f in check(config, objects, cluster=copy.deepcopy(BASE)) if f.code == "IST0127"]
    assert {(f.resource, f.origin) for f in live} == {
        (f"AuthorizationPolicy {NS}/fraud", "stack"),
        (f"AuthorizationPolicy {NS}/sentiment", "stack"),
    }
