"""Gateway API analyzers (mesh/checks/gateway_api.py): object sets in, findings out.

The base set is the agreed gateway-api layout for one model (the ingress Gateway in its own
namespace admitting the serving namespace by selector, the model Service and one Service per
version, the model's HTTPRoute with the Gateway and the model Service as parents, the https
redirect route); it yields no finding. Each row breaks it the way a builder bug or a hand edit
would and names the finding istiod's behaviour implies.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from mesh.checks import Finding, check
from mesh.checks.gateway_api import (
    gateway_api_backends,
    gateway_api_conflicts,
    gateway_api_parents,
    gateway_api_weights,
)
from mesh.checks.index import _Index
from mesh.config import parse_config
from mesh.stackfile import PROJECT_DIR
from mesh.trace.objects import selects
from tests.conftest import stack_raw

NS, GW_NS = "ml-serving", "istio-ingress"
RULES = (gateway_api_parents, gateway_api_backends, gateway_api_weights, gateway_api_conflicts)
Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def config():
    return parse_config(stack_raw("prod"), "prod")


def _meta(name: str, namespace: str | None = NS, **labels: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": {"app": "sentiment", **labels}}
    if namespace:
        out["namespace"] = namespace
    return out


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name),
        "spec": {
            "selector": {"app": "sentiment"},
            "ports": [
                {"name": "http-rest", "port": 8501, "targetPort": 8501},
                {"name": "grpc", "port": 8500, "targetPort": 8500},
            ],
        },
    }


def _admitting(*namespaces: str) -> dict[str, Any]:
    """allowedRoutes admitting HTTPRoutes of `namespaces` by their name label."""
    expression = {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": list(namespaces),
    }
    return {
        "namespaces": {"from": "Selector", "selector": {"matchExpressions": [expression]}},
        "kinds": [{"kind": "HTTPRoute"}],
    }


# The agreed shape admits the serving namespace alone on both listeners; the https redirect
# route lives in the gateway's namespace, so the http listener must admit that one too (see
# the row "redirect route refused by the http listener" below).
def _listener(name: str, port: int, protocol: str) -> dict[str, Any]:
    admitted = (NS, GW_NS) if protocol == "HTTP" else (NS,)
    out: dict[str, Any] = {
        "name": name,
        "port": port,
        "protocol": protocol,
        "allowedRoutes": _admitting(*admitted),
    }
    if protocol == "HTTPS":
        ref = {"group": "", "kind": "Secret", "name": "models-example-com-tls"}
        out["tls"] = {"mode": "Terminate", "certificateRefs": [ref]}
    return out


def _route(name: str = "sentiment", namespace: str = NS, **spec: Any) -> dict[str, Any]:
    base = {
        "parentRefs": [
            {"name": "ml-gateway", "namespace": GW_NS, "sectionName": "https"},
            {"group": "", "kind": "Service", "name": "sentiment"},
        ],
        "hostnames": ["sentiment.models.example.com"],
        "rules": [
            {
                "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
                "backendRefs": [{"name": "sentiment-v4", "port": 8501}],
            },
            {
                "backendRefs": [
                    {"name": "sentiment-v3", "port": 8501, "weight": 90},
                    {"name": "sentiment-v4", "port": 8501, "weight": 10},
                ]
            },
        ],
    }
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(name, namespace),
        "spec": {**base, **spec},
    }


def base_objects() -> Objects:
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "ml-gateway", "namespace": GW_NS},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [_listener("http", 80, "HTTP"), _listener("https", 443, "HTTPS")],
        },
    }
    redirect = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "ml-gateway-https-redirect", "namespace": GW_NS},
        "spec": {
            "parentRefs": [{"name": "ml-gateway", "sectionName": "http"}],
            "hostnames": ["sentiment.models.example.com"],
            "rules": [
                {
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"scheme": "https", "statusCode": 301},
                        }
                    ]
                }
            ],
        },
    }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"istio-injection": "enabled"}},
    }
    services = [_service(n) for n in ("sentiment", "sentiment-v3", "sentiment-v4")]
    return [namespace, gateway, *services, _route(), redirect]


def _findings(config, objects: Objects) -> list[Finding]:
    index = _Index(config, objects)
    return [finding for rule in RULES for finding in rule(index)]


def _kind(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _edit(kind: str, name: str, change: Callable[[dict[str, Any]], None]):
    def apply(objects: Objects) -> Objects:
        change(_kind(objects, kind, name))
        return objects

    return apply


def _route_spec(**spec: Any):
    return _edit("HTTPRoute", "sentiment", lambda r: r["spec"].update(spec))


def _parent(i: int, **ref: Any):
    return _edit("HTTPRoute", "sentiment", lambda r: r["spec"]["parentRefs"].__setitem__(i, ref))


def _https_listener(**fields: Any):
    return _edit("Gateway", "ml-gateway", lambda g: g["spec"]["listeners"][1].update(fields))


def _backend(rule: int, i: int, **fields: Any):
    def change(route: dict[str, Any]) -> None:
        ref = route["spec"]["rules"][rule]["backendRefs"][i]
        for key, value in fields.items():
            if value is None:
                ref.pop(key, None)
            else:
                ref[key] = value

    return _edit("HTTPRoute", "sentiment", change)


def _drop(kind: str, name: str):
    def apply(objects: Objects) -> Objects:
        return [o for o in objects if (o["kind"], o["metadata"]["name"]) != (kind, name)]

    return apply


def _add(obj: dict[str, Any]):
    return lambda objects: [*objects, obj]


CASES = [
    # (what, edit of the base objects, expected (code, severity, phrase) findings)
    (
        "redirect route in the gateway namespace, http listener admitting the serving one only",
        _edit(
            "Gateway",
            "ml-gateway",
            lambda g: g["spec"]["listeners"][0].update(allowedRoutes=_admitting(NS)),
        ),
        [
            (
                "MESH0020",
                "error",
                "listener 'http' does not admit routes of namespace 'istio-ingress'",
            )
        ],
    ),
    (
        "mesh parent without group: defaulted to gateway.networking.k8s.io, Istio ignores it",
        _parent(1, kind="Service", name="sentiment"),
        [("MESH0020", "error", "unsupported parent gateway.networking.k8s.io/Service")],
    ),
    (
        "mesh parent Service that does not exist",
        _parent(1, group="", kind="Service", name="sentimant"),
        [("MESH0020", "error", "parent service 'sentimant' not found")],
    ),
    (
        "Gateway that does not exist",
        _parent(0, name="ml-gw", namespace=GW_NS, sectionName="https"),
        [("MESH0020", "error", "NoMatchingParent: the Gateway does not exist")],
    ),
    (
        "Gateway in the route's namespace by default (namespace omitted)",
        _parent(0, name="ml-gateway", sectionName="https"),
        [("MESH0020", "error", "Gateway ml-serving/ml-gateway")],
    ),
    (
        "sectionName that names no listener",
        _parent(0, name="ml-gateway", namespace=GW_NS, sectionName="tls"),
        [("MESH0020", "error", "sectionName 'tls' not found")],
    ),
    (
        "experimental parentRef port that no listener has",
        _parent(0, name="ml-gateway", namespace=GW_NS, sectionName="https", port=8443),
        [("MESH0020", "error", "port 8443 not found")],
    ),
    (
        "listener admitting another namespace only",
        _https_listener(
            allowedRoutes={
                "namespaces": {
                    "from": "Selector",
                    "selector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
                }
            }
        ),
        [("MESH0020", "error", "NotAllowedByListeners: listener 'https' does not admit")],
    ),
    (
        "listener with allowedRoutes defaulted to Same (the gateway's namespace)",
        _https_listener(allowedRoutes={}),
        [("MESH0020", "error", "does not admit routes of namespace 'ml-serving'")],
    ),
    (
        "listener that admits GRPCRoute only",
        _https_listener(
            allowedRoutes={"namespaces": {"from": "All"}, "kinds": [{"kind": "GRPCRoute"}]}
        ),
        [("MESH0020", "error", "kind HTTPRoute is not allowed")],
    ),
    (
        "listener hostname no route hostname matches",
        _https_listener(hostname="*.other.example.com"),
        [("MESH0021", "error", "NoMatchingListenerHostname")],
    ),
    (
        "wildcard listener hostname covering the route's",
        _https_listener(hostname="*.models.example.com"),
        [],
    ),
    (
        # Both listeners take it; on http the redirect route's catch-all rule (first by
        # namespace/name) shadows the model's default rule: why model routes name https.
        "no sectionName: attached to both listeners, the redirect shadows it on http",
        _parent(0, name="ml-gateway", namespace=GW_NS),
        [("MESH0024", "warning", "listener http hostname sentiment.models.example.com")],
    ),
    (
        "Service backendRef without port (as istiod reads it: port required)",
        _backend(1, 0, port=None),
        [("MESH0022", "error", "port is required in backendRef")],
    ),
    (
        "backendRef port the Service does not have",
        _backend(1, 1, port=9000),
        [("MESH0022", "error", "port 9000 is not a port of the Service ([8500, 8501])")],
    ),
    (
        "backendRef to a Service that does not exist",
        _drop("Service", "sentiment-v3"),
        [("MESH0022", "error", "BackendNotFound: backend(sentiment-v3.ml-serving.svc")],
    ),
    (
        "backendRef into another namespace without a ReferenceGrant",
        _backend(0, 0, namespace="ml-models"),
        [("MESH0022", "error", "RefNotPermitted")],
    ),
    (
        "backendRef kind Istio does not route to",
        _backend(0, 0, group="example.com", kind="Bucket"),
        [("MESH0022", "error", "referencing unsupported backendRef")],
    ),
    (
        "mirror to a Service that does not exist",
        _edit(
            "HTTPRoute",
            "sentiment",
            lambda r: r["spec"]["rules"][1].update(
                filters=[
                    {
                        "type": "RequestMirror",
                        "requestMirror": {"backendRef": {"name": "shadow", "port": 8501}},
                    }
                ]
            ),
        ),
        [("MESH0022", "error", "requestMirror.backendRef Service ml-serving/shadow")],
    ),
    (
        "every backendRef of a rule weighs 0",
        _backend(1, 1, weight=0),
        [],  # one 90/0 rule is fine: the idle version weighs 0 by design
    ),
    (
        "all backendRefs weigh 0: 500",
        lambda objects: _backend(1, 1, weight=0)(_backend(1, 0, weight=0)(objects)),
        [("MESH0023", "error", "direct response 500")],
    ),
    (
        "a second HTTPRoute with the same default rule on the same listener and hostname",
        _add(_route("sentiment-copy")),
        # Both rules of the newer route, on the listener and on the mesh Service.
        [
            ("MESH0024", "warning", "rules[0]: on Gateway istio-ingress/ml-gateway listener https"),
            ("MESH0024", "warning", "rules[1]: on Gateway istio-ingress/ml-gateway listener https"),
            ("MESH0024", "warning", "rules[0]: on Service ml-serving/sentiment the match"),
            ("MESH0024", "warning", "rules[1]: on Service ml-serving/sentiment the match"),
        ],
    ),
    (
        "a second HTTPRoute on the same mesh Service only",
        _add(
            _route(
                "sentiment-mesh",
                parentRefs=[{"group": "", "kind": "Service", "name": "sentiment"}],
            )
        ),
        [
            ("MESH0024", "warning", "rules[0]: on Service ml-serving/sentiment the match"),
            ("MESH0024", "warning", "rules[1]: on Service ml-serving/sentiment the match"),
        ],
    ),
    (
        "a second route with another hostname does not conflict on the listener",
        _add(
            _route(
                "other",
                parentRefs=[{"name": "ml-gateway", "namespace": GW_NS, "sectionName": "https"}],
                hostnames=["other.models.example.com"],
            )
        ),
        [],
    ),
]


def test_the_base_set_has_no_finding(config):
    assert _findings(config, base_objects()) == []


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gateway_api_findings(config, edit, expected):
    found = _findings(config, edit(copy.deepcopy(base_objects())))
    got = sorted((f.code, f.severity) for f in found)
    assert got == sorted((code, severity) for code, severity, _ in expected), found
    for code, _, phrase in expected:
        assert any(f.code == code and phrase in f.message for f in found), (phrase, found)
    for finding in found:  # a model's route names the model's key, the redirect `gateway`
        model_route = finding.resource.startswith(f"HTTPRoute {NS}/")
        assert finding.path == ("models.sentiment" if model_route else "gateway"), finding


def test_the_older_route_wins_a_conflict():
    """The Gateway API tie-break: the oldest creationTimestamp, then namespace/name."""
    config = parse_config(stack_raw("prod"), "prod")
    older = _route("zz-older")
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    found = _findings(config, [*base_objects(), older])
    conflicts = [f for f in found if f.code == "MESH0024"]
    assert conflicts and all("HTTPRoute ml-serving/zz-older's" in f.message for f in conflicts)
    assert {f.resource for f in conflicts} == {"HTTPRoute ml-serving/sentiment"}


def test_a_gateway_of_the_cluster_snapshot_resolves_the_parent(config):
    """With `--with`, the platform team's Gateway lives in the cluster, not the stack."""
    objects = base_objects()
    gateway = _kind(objects, "Gateway", "ml-gateway")
    stack = [o for o in objects if o is not gateway]
    without = [f for f in check(config, stack) if f.code.startswith("MESH002")]
    assert [f.code for f in without] == ["MESH0020", "MESH0020"], without
    with_cluster = check(config, stack, cluster=[gateway])
    assert [f for f in with_cluster if f.code.startswith("MESH002")] == []


def test_a_selector_on_labels_of_an_unknown_namespace_is_not_judged(config):
    objects = [o for o in base_objects() if o["kind"] != "Namespace"]
    _kind(objects, "Gateway", "ml-gateway")["spec"]["listeners"][1]["allowedRoutes"] = {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "ml"}}}
    }
    assert _findings(config, objects) == []


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        ({}, {"a": "1"}, True),
    ],
)
def test_label_selectors_match_as_kubernetes_does(selector, labels, matches):
    assert selects(selector, labels) is matches


def test_todays_stacks_have_no_gateway_api_finding():
    """The default mode renders no Gateway API route: the analyzers add nothing."""
    for stack in ("dev", "prod"):
        config = parse_config(stack_raw(stack), stack)
        from mesh.plan import build_plan

        found = [f for f in check(config, build_plan(config).objects()) if f.code >= "MESH0020"]
        assert found == []


POOLS_STACK = str(PROJECT_DIR / "examples" / "Pulumi.llm-pools.yaml")


def _pool_stack():
    from mesh.plan import build_plan
    from mesh.stackfile import load_stack

    config = load_stack(POOLS_STACK).config
    return config, build_plan(config)


def _weights(route: dict[str, Any], *weights: int) -> None:
    """The weights of v1, v2... in version order, whatever the order of the backendRefs (the
    pool route writes the stable pool last)."""
    (rule,) = route["spec"]["rules"]
    refs = sorted(rule["backendRefs"], key=lambda ref: ref["name"])
    for ref, weight in zip(refs, weights, strict=True):
        ref["weight"] = weight


def _split_findings(config, objects) -> list[Finding]:
    return [f for f in check(config, objects) if f.code == "MESH0026"]


def test_a_pool_stack_s_two_routes_split_alike():
    """The builders give `chat` (mesh) and `chat-pools` (Gateway) one split: no MESH0026,
    with the modelled InferencePools among the objects or without."""
    config, plan = _pool_stack()
    assert _split_findings(config, plan.objects()) == []
    assert _split_findings(config, plan.cluster_objects()) == []


@pytest.mark.parametrize(
    ("route", "weights", "phrase"),
    [
        (
            "chat-pools",
            (75, 25),
            "go v1 75% / v2 25% (InferencePools) but the mesh callers' go v1 90% / v2 10%",
        ),
        (
            "chat",
            (50, 50),
            "go v1 90% / v2 10% (InferencePools) but the mesh callers' go v1 50% / v2 50%",
        ),
        # Relative weights: 9:1 is 90:10, the same shares.
        ("chat", (9, 1), None),
    ],
)
def test_pool_and_mesh_routes_that_split_differently_are_an_error(route, weights, phrase):
    config, plan = _pool_stack()
    objects = copy.deepcopy(plan.objects())
    _weights(
        next(o for o in objects if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == route),
        *weights,
    )
    found = _split_findings(config, objects)
    if phrase is None:
        assert found == []
        return
    (finding,) = found
    assert (finding.severity, finding.resource, finding.path) == (
        "error",
        "HTTPRoute llm-prod/chat-pools",
        "models.chat",
    )
    assert phrase in finding.message, finding.message
