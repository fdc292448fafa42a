"""mesh.trace on Gateway API routes and the ambient data plane, on objects built by hand in the
shapes ml-mesh renders for `routing: gateway-api` and `dataplane: ambient` (an ingress
Gateway of class istio in istio-ingress, one HTTPRoute per model with the Gateway and the
model Service as parents, a Service per version, a waypoint in the serving namespace, an L4
policy for ztunnel and an L7 one for the waypoint). Each row: objects in, request in, where it
ends (or why it is refused) out."""

from __future__ import annotations

import copy

import pytest

from mesh.trace import Objects, Request, Workload, trace, trace_process

NS = "ml-serving"
GW_NS = "istio-ingress"
HOST = "fraud.models.example.com"
TD = "cluster.local"
GATEWAY = Workload(
    GW_NS,
    "ml-gateway-istio",
    (("gateway.networking.k8s.io/gateway-name", "ml-gateway"),),
    gateway=True,
    name="ml-gateway",
)
CALLER = Workload("payments", "payments-api", sidecar="ambient", name="payments-api")
GW_PRINCIPAL = f"{TD}/ns/{GW_NS}/sa/ml-gateway-istio"
WAYPOINT_PRINCIPAL = f"{TD}/ns/{NS}/sa/waypoint"
INFER = "/v2/models/fraud/infer"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
API = "gateway.networking.k8s.io/v1"
PORTS = [
    {"name": "http", "port": 8000, "targetPort": "http", "appProtocol": "http"},
    {"name": "grpc", "port": 8001, "targetPort": "grpc", "appProtocol": "grpc"},
]


def _namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _service(name: str, selector: dict, ingress_waypoint: bool = True) -> dict:
    labels = {"istio.io/ingress-use-waypoint": "true"} if ingress_waypoint else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"selector": selector, "ports": copy.deepcopy(PORTS)},
    }


def _deployment(version: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"fraud-{version}", "namespace": NS},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "fraud", "version": version}},
                "spec": {
                    "serviceAccountName": "fraud",
                    "initContainers": [{"name": "fetch-model"}],
                    "containers": [
                        {
                            "name": "server",
                            "ports": [
                                {"name": "http", "containerPort": 8000},
                                {"name": "grpc", "containerPort": 8001},
                            ],
                        }
                    ],
                },
            },
        },
    }


def _backend(version: str, weight: int | None = None, port: int = 8000) -> dict:
    ref = {"group": "", "kind": "Service", "name": f"fraud-{version}", "port": port}
    return ref if weight is None else {**ref, "weight": weight}


def _route(rules: list[dict], name: str = "fraud", **spec) -> dict:
    return {
        "apiVersion": API,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS, "annotations": {"ml-mesh.io/canary": "v8"}},
        "spec": {
            "parentRefs": [
                {"name": "ml-gateway", "namespace": GW_NS, "sectionName": "https"},
                {"group": "", "kind": "Service", "name": "fraud"},
            ],
            "hostnames": [HOST],
            "rules": rules,
            **spec,
        },
    }


GRPC_RULE = {
    "matches": [
        {
            "headers": [
                {"name": "content-type", "type": "RegularExpression", "value": "application/grpc.*"}
            ]
        }
    ],
    "backendRefs": [_backend("v7", 90, 8001), _backend("v8", 10, 8001)],
}
CANARY_RULE = {
    "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
    "backendRefs": [_backend("v8", port=8000)],
}
DEFAULT_RULE = {
    "backendRefs": [_backend("v7", 90), _backend("v8", 10)],
    "filters": [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": _backend("v8"), "percent": 5},
        }
    ],
    "timeouts": {"request": "10s"},
}
LISTENER_ROUTES = {
    "namespaces": {
        "from": "Selector",
        "selector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
    },
    "kinds": [{"kind": "HTTPRoute"}],
}


def _policy(name: str, spec: dict) -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


L4 = _policy(
    "fraud",
    {
        "selector": {"matchLabels": {"app": "fraud"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": [WAYPOINT_PRINCIPAL]}}],
                "to": [{"operation": {"ports": ["8000", "8001"]}}],
            }
        ],
    },
)
L7 = _policy(
    "fraud-l7",
    {
        "targetRefs": [
            {"group": "", "kind": "Service", "name": n} for n in ("fraud", "fraud-v7", "fraud-v8")
        ],
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {"source": {"principals": [GW_PRINCIPAL, f"{TD}/ns/payments/sa/payments-api"]}}
                ],
                "to": [
                    {"operation": {"methods": ["POST"], "paths": ["/v2/models/fraud/*"]}},
                    {"operation": {"paths": ["/inference.GRPCInferenceService/*"]}},
                ],
            }
        ],
    },
)
NETPOL = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "fraud", "namespace": NS},
    "spec": {
        "podSelector": {"matchLabels": {"app": "fraud"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "podSelector": {
                            "matchLabels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}
                        }
                    },
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GW_NS}}},
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "payments"}
                        }
                    },
                ],
                "ports": [{"port": 15008}, {"port": "http"}, {"port": "grpc"}],
            }
        ],
    },
}

STACK = [
    _namespace(NS, **{"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
    _namespace(GW_NS),
    _namespace("payments", **{"istio.io/dataplane-mode": "ambient"}),
    {
        "apiVersion": API,
        "kind": "Gateway",
        "metadata": {"name": "ml-gateway", "namespace": GW_NS},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": LISTENER_ROUTES},
                {
                    "name": "https",
                    "port": 443,
                    "protocol": "HTTPS",
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [{"group": "", "kind": "Secret", "name": "ml-cert"}],
                    },
                    "allowedRoutes": LISTENER_ROUTES,
                },
            ],
        },
    },
    {
        "apiVersion": API,
        "kind": "HTTPRoute",
        # In the serving namespace: the listeners admit routes of that namespace only (see
        # test_redirect_route_in_the_gateway_namespace_is_not_attached).
        "metadata": {"name": "ml-gateway-https-redirect", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "ml-gateway", "namespace": GW_NS, "sectionName": "http"}],
            "hostnames": [HOST],
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
    },
    {
        "apiVersion": API,
        "kind": "Gateway",
        "metadata": {
            "name": "waypoint",
            "namespace": NS,
            "labels": {"istio.io/waypoint-for": "service"},
        },
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    },
    _service("fraud", {"app": "fraud"}),
    _service("fraud-v7", {"app": "fraud", "version": "v7"}),
    _service("fraud-v8", {"app": "fraud", "version": "v8"}),
    _deployment("v7"),
    _deployment("v8"),
    _route([GRPC_RULE, CANARY_RULE, DEFAULT_RULE]),
    L4,
    L7,
    {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"mtls": {"mode": "STRICT"}},
    },
    NETPOL,
]


def _objects(*changes) -> Objects:
    objects = copy.deepcopy(STACK)
    for change in changes:
        objects = change(objects)
    return Objects(objects)


def _replace(kind: str, name: str, new: dict | None):
    def change(objects: list[dict]) -> list[dict]:
        kept = [o for o in objects if not (o["kind"] == kind and o["metadata"]["name"] == name)]
        return kept + ([new] if new is not None else [])

    return change


def _relabel_service(name: str, **labels: str):
    def change(objects: list[dict]) -> list[dict]:
        for obj in objects:
            if obj["kind"] == "Service" and obj["metadata"]["name"] == name:
                obj["metadata"]["labels"] = labels
        return objects

    return change


def rest(host: str = HOST, port: int = 443, tls: bool = True, path: str = INFER, **kw) -> Request:
    return Request(port=port, host=host, tls=tls, method="POST", path=path, **kw)


def grpc(host: str = HOST, port: int = 443, tls: bool = True) -> Request:
    return Request(port=port, host=host, tls=tls, protocol="grpc", method="POST", path=GRPC_INFER)


def _reached(branch) -> str:
    """The workload a branch reaches (`fraud-v7`), else the host it was sent to."""
    return (branch.workload or branch.host).rsplit("/", 1)[-1].split(".")[0]


def _summary(result) -> tuple:
    """(final verdict, status, the live split with container ports, the mirror's share)."""
    live = sorted(
        (_reached(b), round(b.share, 2), b.container_port)
        for b in result.branches
        if b.kind == "route" and b.share > 0
    )
    mirrored = [
        (b.host.split(".")[0], b.share, b.outcome.verdict)
        for b in result.branches
        if b.kind == "mirror"
    ]
    final = result.final()
    return final.verdict, final.status, live, mirrored


MESH_HOST = f"fraud.{NS}.svc.cluster.local"
OUTSIDE = Workload("payments", "legacy", sidecar="none", name="no mesh")
STRANGER = Workload("other-team", "default", sidecar="ambient", name="stranger")
SIDECAR_CALLER = Workload("payments", "payments-api", sidecar="classic", name="payments-api")

CASES = [
    # (label, changes, source, request, verdict, status, live split, mirror)
    (
        "ingress https REST: listener https, the weighted rule, each version through the waypoint",
        (),
        GATEWAY,
        rest(),
        "served",
        None,
        [("fraud-v7", 90, 8000), ("fraud-v8", 10, 8000)],
        [("fraud-v8", 5.0, "served")],
    ),
    (
        "ingress gRPC: the content-type rule to the gRPC port",
        (),
        GATEWAY,
        grpc(),
        "served",
        None,
        [("fraud-v7", 90, 8001), ("fraud-v8", 10, 8001)],
        [],
    ),
    (
        "ingress header match: x-canary always → v8 only",
        (),
        GATEWAY,
        rest(headers=(("x-canary", "always"),)),
        "served",
        None,
        [("fraud-v8", 100, 8000)],
        [],
    ),
    (
        "ingress http: the redirect route on listener http answers 301",
        (),
        GATEWAY,
        rest(port=80, tls=False),
        "redirected",
        301,
        [],
        [],
    ),
    (
        "ingress plain gRPC: the 301 is not followed",
        (),
        GATEWAY,
        grpc(port=80, tls=False),
        "unfollowed-redirect",
        301,
        [],
        [],
    ),
    (
        "ingress unknown host: no route on the listener",
        (),
        GATEWAY,
        rest(host="unknown.models.example.com"),
        "no-route",
        404,
        [],
        [],
    ),
    ("ingress no listener on 8443", (), GATEWAY, rest(port=8443), "refused", None, [], []),
    (
        "ingress admin API: 403 at the waypoint (L7 policy by targetRefs)",
        (),
        GATEWAY,
        rest(path="/v2/repository/models/fraud/load"),
        "denied",
        403,
        [("fraud-v7", 90, None), ("fraud-v8", 10, None)],
        [("fraud-v8", 5.0, "denied")],
    ),
    (
        "L4 policy admitting the gateway principal only: ztunnel sees the waypoint, refuses",
        (
            _replace(
                "AuthorizationPolicy",
                "fraud",
                _policy(
                    "fraud",
                    {
                        "selector": {"matchLabels": {"app": "fraud"}},
                        "rules": [{"from": [{"source": {"principals": [GW_PRINCIPAL]}}]}],
                    },
                ),
            ),
        ),
        GATEWAY,
        rest(),
        "denied",
        None,
        [("fraud-v7", 90, 8000), ("fraud-v8", 10, 8000)],
        [("fraud-v8", 5.0, "denied")],
    ),
    (
        "NetworkPolicy without 15008: the HBONE connection is dropped",
        (
            _replace(
                "NetworkPolicy",
                "fraud",
                {
                    **NETPOL,
                    "spec": {
                        **NETPOL["spec"],
                        "ingress": [
                            {
                                **NETPOL["spec"]["ingress"][0],
                                "ports": [{"port": "http"}, {"port": "grpc"}],
                            }
                        ],
                    },
                },
            ),
        ),
        GATEWAY,
        rest(),
        "dropped",
        None,
        [("fraud-v7", 90, 8000), ("fraud-v8", 10, 8000)],
        [("fraud-v8", 5.0, "dropped")],
    ),
    (
        "without ingress-use-waypoint the gateway goes straight to the pod: ztunnel sees the "
        "gateway, which the L4 policy does not admit",
        (_relabel_service("fraud-v7"), _relabel_service("fraud-v8")),
        GATEWAY,
        rest(),
        "denied",
        None,
        [("fraud-v7", 90, 8000), ("fraud-v8", 10, 8000)],
        [("fraud-v8", 5.0, "denied")],
    ),
    (
        "mesh caller (ambient): ztunnel → waypoint, the GAMMA route splits, ztunnel admits the waypoint",
        (),
        CALLER,
        rest(host=MESH_HOST, port=8000, tls=False),
        "served",
        None,
        [("fraud-v7", 90, 8000), ("fraud-v8", 10, 8000)],
        [("fraud-v8", 5.0, "served")],
    ),
    (
        "mesh caller gRPC port: the same HTTPRoute (no parentRef port) serves 8001",
        (),
        CALLER,
        Request(port=8001, host=MESH_HOST, protocol="grpc", method="POST", path=GRPC_INFER),
        "served",
        None,
        [("fraud-v7", 90, 8001), ("fraud-v8", 10, 8001)],
        [],
    ),
    (
        "unknown ambient caller: 403 at the waypoint",
        (),
        STRANGER,
        rest(host=MESH_HOST, port=8000, tls=False),
        "denied",
        403,
        [],
        [],
    ),
    (
        "caller outside the mesh: plaintext meets STRICT at ztunnel",
        (),
        OUTSIDE,
        rest(host=MESH_HOST, port=8000, tls=False),
        "reset",
        None,
        [("fraud-v7", 50, 8000), ("fraud-v8", 50, 8000)],
        [],
    ),
    (
        "sidecar caller: its sidecar applies the GAMMA route itself and skips the waypoint, "
        "so ztunnel sees the caller, not the waypoint",
        (),
        SIDECAR_CALLER,
        rest(host=MESH_HOST, port=8000, tls=False),
        "denied",
        None,
        [("fraud-v7", 90, 8000), ("fraud-v8", 10, 8000)],
        [("fraud-v8", 5.0, "denied")],
    ),
    (
        "use-waypoint: none on the Service: L4 only, the caller's identity at ztunnel",
        (_relabel_service("fraud", **{"istio.io/use-waypoint": "none"}),),
        CALLER,
        rest(host=MESH_HOST, port=8000, tls=False),
        "denied",
        None,
        [("fraud-v7", 50, 8000), ("fraud-v8", 50, 8000)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("changes", "source", "request_", "verdict", "status", "split", "mirror"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_ambient_gateway_api(changes, source, request_, verdict, status, split, mirror):
    result = trace(_objects(*changes), source, request_)
    assert _summary(result) == (verdict, status, split, mirror)


def test_hops_gateway_waypoint_ztunnel_pod():
    """The steps name each hop: the listener, the route, the waypoint (HBONE, its policy),
    then the pod's ztunnel with the waypoint's identity."""
    result = trace(_objects(), GATEWAY, rest())
    ats = [s.at for s in result.steps]
    assert ats[:3] == ["gateway", "virtualhost", "route"]
    branch = next(b for b in result.branches if b.kind == "route" and "v7" in b.host)
    details = [f"{s.at}: {s.detail}" for s in branch.steps]
    assert any(
        d.startswith("waypoint: ") and "ml-serving/waypoint (sa waypoint)" in d for d in details
    )
    assert any("waypoint, peer " + GW_PRINCIPAL in d and "rule 0 allows" in d for d in details)
    assert any(d.startswith("networkpolicy: HBONE to :15008") for d in details)
    assert any(
        d.startswith("authz: ml-serving/fraud: ztunnel, peer " + WAYPOINT_PRINCIPAL)
        for d in details
    )
    assert branch.outcome.verdict == "served" and branch.container == "server"


def test_ztunnel_drops_http_rules_of_an_allow_policy():
    """An ALLOW rule with paths, enforced by ztunnel (selector policy), never matches: the
    request through the waypoint is refused although the path would fit."""
    l7_on_ztunnel = _policy(
        "fraud",
        {
            "selector": {"matchLabels": {"app": "fraud"}},
            "rules": [
                {
                    "from": [{"source": {"principals": [WAYPOINT_PRINCIPAL]}}],
                    "to": [{"operation": {"paths": ["/v2/*"]}}],
                }
            ],
        },
    )
    result = trace(
        _objects(_replace("AuthorizationPolicy", "fraud", l7_on_ztunnel)), GATEWAY, rest()
    )
    assert result.final().verdict == "denied"
    assert "ztunnel" in result.final().detail


def test_ztunnel_enforces_a_deny_rule_without_its_http_parts():
    """A DENY rule for one path, at ztunnel, denies every request of that peer."""
    deny = _policy(
        "deny-admin",
        {
            "selector": {"matchLabels": {"app": "fraud"}},
            "action": "DENY",
            "rules": [
                {
                    "from": [{"source": {"principals": [WAYPOINT_PRINCIPAL]}}],
                    "to": [{"operation": {"paths": ["/admin"]}}],
                }
            ],
        },
    )
    result = trace(_objects(lambda o: [*o, deny]), GATEWAY, rest())
    assert result.final().verdict == "denied"
    assert "DENY rule 0" in result.final().detail


def test_ambient_init_container_is_captured_by_ztunnel():
    """In-pod redirection exists before any container: the init container's store request
    goes through ztunnel (to a host outside the mesh: forwarded unchanged)."""
    objects = _objects()
    pod = objects.pod(f"{NS}/fraud-v7")
    assert objects.sidecar_mode(pod) == "ambient"
    result = trace_process(
        objects, pod, "fetch-model", Request(port=443, host="s3.eu-west-1.amazonaws.com", tls=True)
    )
    assert [s.at for s in result.steps] == ["capture", "ztunnel", "networkpolicy"]
    assert result.outcome.verdict == "passthrough"


def test_dataplane_none_label_opts_a_pod_out():
    def opt_out(objects):
        for obj in objects:
            if obj["kind"] == "Deployment":
                obj["spec"]["template"]["metadata"]["labels"]["istio.io/dataplane-mode"] = "none"
        return objects

    objects = _objects(opt_out)
    assert objects.sidecar_mode(objects.pod(f"{NS}/fraud-v7")) == "none"


def test_waypoint_for_workload_traffic_only_is_not_used_for_services():
    """`istio.io/waypoint-for: workload`: the Service has no waypoint, ztunnel sends at L4."""

    def workload_only(objects):
        for obj in objects:
            if obj["kind"] == "Gateway" and obj["metadata"]["name"] == "waypoint":
                obj["metadata"]["labels"]["istio.io/waypoint-for"] = "workload"
        return objects

    result = trace(_objects(workload_only), CALLER, rest(host=MESH_HOST, port=8000, tls=False))
    assert "waypoint" not in [s.at for s in result.steps]
    assert "ztunnel (L4, no waypoint)" in result.steps[-1].detail


# --- Gateway API rule selection (sidecar data plane, no policies) --------------------------


def _sidecar_stack(rules: list[dict], *more: dict) -> Objects:
    objects = [
        _namespace(NS, **{"istio-injection": "enabled"}),
        _namespace(GW_NS),
        *(o for o in STACK if o["kind"] == "Gateway" and o["metadata"]["name"] == "ml-gateway"),
        _service("fraud", {"app": "fraud"}, ingress_waypoint=False),
        _service("fraud-v7", {"app": "fraud", "version": "v7"}, ingress_waypoint=False),
        _service("fraud-v8", {"app": "fraud", "version": "v8"}, ingress_waypoint=False),
        _deployment("v7"),
        _deployment("v8"),
        _route(rules),
        *more,
    ]
    return Objects(copy.deepcopy(objects))


def _to(version: str, **match) -> dict:
    return {"matches": [match] if match else [], "backendRefs": [_backend(version)]}


RULE_CASES = [
    # (label, rules, request path / method / headers, version reached)
    (
        "exact path over a longer prefix",
        [
            _to("v7", path={"type": "PathPrefix", "value": "/v2/models/fraud"}),
            _to("v8", path={"type": "Exact", "value": INFER}),
        ],
        ("POST", INFER, ()),
        "fraud-v8",
    ),
    (
        "longest prefix first, whatever the order",
        [
            _to("v7", path={"type": "PathPrefix", "value": "/v2"}),
            _to("v8", path={"type": "PathPrefix", "value": "/v2/models"}),
        ],
        ("POST", INFER, ()),
        "fraud-v8",
    ),
    (
        "a prefix matches whole segments only",
        [_to("v8", path={"type": "PathPrefix", "value": "/v2/model"}), _to("v7")],
        ("POST", INFER, ()),
        "fraud-v7",
    ),
    (
        "a method match before one without",
        [
            _to("v7", path={"type": "PathPrefix", "value": "/v2"}),
            _to("v8", path={"type": "PathPrefix", "value": "/v2"}, method="POST"),
        ],
        ("POST", INFER, ()),
        "fraud-v8",
    ),
    (
        "more header matches first",
        [
            _to("v7", headers=[{"name": "a", "value": "1"}]),
            _to("v8", headers=[{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]),
        ],
        ("POST", INFER, (("a", "1"), ("b", "2"))),
        "fraud-v8",
    ),
    (
        "equal rank: the rule order stands",
        [
            _to("v7", headers=[{"name": "a", "value": "1"}]),
            _to("v8", headers=[{"name": "b", "value": "2"}]),
        ],
        ("POST", INFER, (("a", "1"), ("b", "2"))),
        "fraud-v7",
    ),
    (
        "a regex header match is RE2 over the whole value",
        [
            _to(
                "v8",
                headers=[
                    {
                        "name": "cookie",
                        "type": "RegularExpression",
                        "value": "^(.*?;)?(canary=1)(;.*)?$",
                    }
                ],
            ),
            _to("v7"),
        ],
        ("POST", INFER, (("cookie", "a=b;canary=1"),)),
        "fraud-v8",
    ),
]


@pytest.mark.parametrize(
    ("rules", "call", "reached"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_httproute_rule_precedence(rules, call, reached):
    method, path, headers = call
    request = Request(port=443, host=HOST, tls=True, method=method, path=path, headers=headers)
    result = trace(_sidecar_stack(rules), GATEWAY, request)
    assert result.ok, result.final()
    assert {b.host.split(".")[0] for b in result.branches if b.kind == "route"} == {reached}


def test_older_route_wins_between_equal_rules_of_two_routes():
    newer = copy.deepcopy(_route([_to("v8")], name="aaa"))
    newer["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    objects = _sidecar_stack([_to("v7")], newer)
    for obj in objects.kind("HTTPRoute"):
        if obj["metadata"]["name"] == "fraud":
            obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    result = trace(objects, GATEWAY, rest())
    assert [b.host.split(".")[0] for b in result.branches] == ["fraud-v7"]


@pytest.mark.parametrize(
    ("backend_refs", "outcome"),
    [
        ([_backend("v7", 0), _backend("v8", 3)], ("served", None, [("fraud-v8", 100, 8000)])),
        (
            [_backend("v7", 1), _backend("v8", 3)],
            ("served", None, [("fraud-v7", 25, 8000), ("fraud-v8", 75, 8000)]),
        ),
        ([_backend("v7", 0), _backend("v8", 0)], ("aborted", 500, [])),
        ([], ("aborted", 404, [])),
    ],
    ids=["weight 0 never", "relative weights", "all zero: 500", "no backendRefs: 404"],
)
def test_backend_weights(backend_refs, outcome):
    result = trace(_sidecar_stack([{"backendRefs": backend_refs}]), GATEWAY, rest())
    assert _summary(result)[:3] == outcome


def test_listener_allowed_routes_refuse_another_namespace():
    route = _route([_to("v7")])
    route["metadata"]["namespace"] = "elsewhere"
    route["spec"]["parentRefs"] = route["spec"]["parentRefs"][:1]
    objects = Objects([o for o in _sidecar_stack([]).all if o["kind"] != "HTTPRoute"] + [route])
    result = trace(objects, GATEWAY, rest())
    assert result.outcome.verdict == "no-route"
    assert any("not attached: allowedRoutes' namespace selector" in s.detail for s in result.steps)


def test_section_name_keeps_a_route_off_the_other_listener():
    """The model route attaches to `https` only: plain HTTP finds no route (no redirect
    route in these objects)."""
    result = trace(_sidecar_stack([_to("v7")]), GATEWAY, rest(port=80, tls=False))
    assert result.outcome.verdict == "no-route"


def test_gateway_api_sidecar_pods_get_mtls_from_the_gateway():
    """Sidecar data plane: the backend Service's pods, Istio mTLS, the container port."""
    result = trace(_sidecar_stack([_to("v7")]), GATEWAY, rest())
    (branch,) = result.branches
    assert branch.cluster == f"outbound|8000||fraud-v7.{NS}.svc.cluster.local"
    assert branch.outcome.verdict == "served" and branch.container_port == 8000
    assert any(s.at == "mtls" and "client mTLS" in s.detail for s in branch.steps)


def test_sidecar_client_applies_the_gamma_route():
    result = trace(
        _sidecar_stack([CANARY_RULE, DEFAULT_RULE]),
        Workload("payments", "payments-api"),
        rest(host=MESH_HOST, port=8000, tls=False, headers=(("x-canary", "always"),)),
    )
    assert [s.at for s in result.steps][:2] == ["sidecar", "virtualhost"]
    assert _summary(result)[2] == [("fraud-v8", 100, 8000)]


def test_redirect_route_in_the_gateway_namespace_is_not_attached():
    """A listener whose allowedRoutes select the serving namespace only does not take a
    route of the Gateway's own namespace: plain HTTP then finds no route (404), not the 301."""

    def move(objects):
        for obj in objects:
            if obj["metadata"]["name"] == "ml-gateway-https-redirect":
                obj["metadata"]["namespace"] = GW_NS
        return objects

    result = trace(_objects(move), GATEWAY, rest(port=80, tls=False))
    assert result.outcome.verdict == "no-route"
    assert any(
        s.detail.startswith(f"HTTPRoute {GW_NS}/ml-gateway-https-redirect not attached")
        for s in result.steps
    )


# --- journeys of an ambient + gateway-api config through these objects ---------------------


def _ambient_config():
    from mesh.config import parse_config
    from tests.conftest import stack_raw

    raw = stack_raw("prod")
    raw.update(dataplane="ambient", routing="gateway-api")
    raw["platform"]["istioVersion"] = "1.30"
    raw.pop("istio")
    raw["gateway"]["namespace"] = GW_NS
    del raw["models"]["sentiment"]
    return parse_config(raw, "prod")


JOURNEYS = [
    # (journey, verdict, split, container ports)
    ("REST https fraud.models.example.com", "served", "fraud-v7 90% / fraud-v8 10%", {8000}),
    ("gRPC https fraud.models.example.com", "served", "fraud-v7 90% / fraud-v8 10%", {8001}),
    ("REST http fraud.models.example.com", "redirected", "", set()),
    ("gRPC http fraud.models.example.com", "unfollowed-redirect", "", set()),
    ("admin API /v2/repository/models/fraud/load", "denied", "fraud-v7 90% / fraud-v8 10%", set()),
    ("unserved host unknown.models.example.com", "no-route", "", set()),
    ("REST from payments/payments-api", "served", "fraud-v7 90% / fraud-v8 10%", {8000}),
    ("gRPC from payments/payments-api", "served", "fraud-v7 90% / fraud-v8 10%", {8001}),
    ("REST from payments/payments-api outside the mesh", "reset", "v7 50% / v8 50%", {8000}),
    ("REST from other-team/default (not a caller)", "denied", "", set()),
    ("fraud-v7 kubelet readiness probe", "served", "", set()),
    # ztunnel enforces no outbound traffic policy: TLS to any host is shown, not promised; the
    # promise that holds is the egress NetworkPolicy's, which these objects lack (see
    # test_egress_network_policy_under_ztunnel), so plain HTTP passes and the journey fails.
    (
        "fraud-v7 server → registry.example.org:443 (not registered; no policy can name the host)",
        "passthrough",
        "",
        set(),
    ),
    ("fraud-v7 server → registry.example.org:80 (not registered)", "passthrough", "", set()),
]
BROKEN = {"fraud-v7 server → registry.example.org:80 (not registered)"}


@pytest.mark.parametrize(("name", "verdict", "split", "ports"), JOURNEYS)
def test_journeys_of_an_ambient_gateway_api_stack(name, verdict, split, ports):
    from mesh.journeys import journeys

    found = {j.name: j for j in journeys(_ambient_config(), objects=_objects())}
    journey = found[name]
    assert journey.trace.final().verdict == verdict
    assert journey.trace.split() == split
    assert {b.container_port for b in journey.trace.branches if b.kind == "route"} - {None} == ports
    assert journey.passed == (name not in BROKEN)


def test_journey_of_a_header_rule_checks_the_version_service():
    """A match rule must reach its version: in gateway-api routing the branch names the
    version's Service (`fraud-v8`), not a subset."""
    from mesh.journeys import Journey

    result = trace(_objects(), GATEWAY, rest(headers=(("x-canary", "always"),)))
    assert Journey("ingress", "fraud", "match", "ok", result, subset="v8", port=8000).passed
    assert not Journey("ingress", "fraud", "match", "ok", result, subset="v7", port=8000).passed


def test_the_docs_example_holds_these_objects():
    """docs/trace.md traces docs/examples/ambient-gateway-api.yaml: the objects of this file."""
    from mesh.trace import load_files
    from tests.conftest import PROJECT_DIR

    assert load_files([PROJECT_DIR / "docs/examples/ambient-gateway-api.yaml"]) == STACK


# --- egress NetworkPolicy under ztunnel, and an enrolled Prometheus -------------------------

EGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "fraud-egress", "namespace": NS},
    "spec": {
        "podSelector": {"matchLabels": {"app": "fraud"}},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                        "podSelector": {
                            "matchLabels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}
                        },
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 15008}],
            },
            {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}], "ports": [{"port": 80}]},
            {"ports": [{"protocol": "TCP", "port": 443}]},
        ],
    },
}
MODEL_SERVICE = f"fraud.{NS}.svc.cluster.local"
EGRESS_ROWS = [
    # (egress policy, request from the server, final verdict, the deciding step says)
    (None, Request(port=80, host="registry.example.org"), "passthrough", "no NetworkPolicy"),
    (EGRESS, Request(port=80, host="registry.example.org"), "dropped", "admits no egress"),
    (EGRESS, Request(port=443, host="registry.example.org", tls=True), "passthrough", "egress[2]"),
    (EGRESS, Request(port=22, host="203.0.113.7"), "dropped", "admits no egress"),
    (EGRESS, Request(port=80, host="169.254.169.254"), "passthrough", "egress[1]"),
    # a model Service: HBONE to the waypoint, which egress[0] admits; there the L7 policy
    # refuses the model's own identity (not a caller)
    (EGRESS, rest(host=MODEL_SERVICE, port=8000, tls=False), "denied", "egress[0]"),
]


@pytest.mark.parametrize(("policy", "request_", "verdict", "says"), EGRESS_ROWS)
def test_egress_network_policy_under_ztunnel(policy, request_, verdict, says):
    """What ztunnel sends out of an ambient pod meets the pod's egress NetworkPolicy (ambient
    never bypasses NetworkPolicy): HBONE to the waypoint's 15008, an outside destination's
    original port; an ipBlock admits only a destination addressed by IP."""
    objects = _objects(*([lambda o: [*o, copy.deepcopy(policy)]] if policy else []))
    pod = objects.pod(f"{NS}/fraud-v7")
    result = trace_process(objects, pod, "server", request_)
    assert result.final().verdict == verdict
    steps = [s.detail for s in result.steps if s.at == "networkpolicy"]
    steps += [s.detail for b in result.branches for s in b.steps if s.at == "networkpolicy"]
    assert any(says in detail for detail in steps), steps


def test_a_waypoint_the_egress_policy_omits_is_unreachable():
    closed = copy.deepcopy(EGRESS)
    closed["spec"]["egress"] = closed["spec"]["egress"][1:]
    objects = _objects(lambda o: [*o, closed])
    pod = objects.pod(f"{NS}/fraud-v7")
    result = trace_process(objects, pod, "server", rest(host=MODEL_SERVICE, port=8000, tls=False))
    assert result.final().verdict == "dropped"
    assert "egress" in result.final().detail


SCRAPES = [
    # (Prometheus enrolled, L4 rule for its namespace on 8002, NetworkPolicy admits 15008, verdict)
    (False, True, True, "dropped"),  # plaintext to :8002: the NetworkPolicy admits HBONE only
    (True, False, True, "denied"),  # enrolled, but the L4 policy admits only the waypoint
    (True, True, False, "dropped"),  # HBONE from monitoring not admitted on 15008
    (True, True, True, "served"),
]


@pytest.mark.parametrize(("enrolled", "l4", "hbone", "verdict"), SCRAPES)
def test_an_ambient_scrape_needs_an_enrolled_prometheus(enrolled, l4, hbone, verdict):
    from mesh.journeys import scrape

    def open_metrics(objects):
        for obj in objects:
            name, kind = obj["metadata"]["name"], obj["kind"]
            if kind == "AuthorizationPolicy" and name == "fraud" and l4:
                obj["spec"]["rules"].append(
                    {
                        "from": [{"source": {"namespaces": ["monitoring"]}}],
                        "to": [{"operation": {"ports": ["8002"]}}],
                    }
                )
            if kind == "NetworkPolicy" and name == "fraud" and hbone:
                obj["spec"]["ingress"].append(
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                                }
                            }
                        ],
                        "ports": [{"port": 15008}],
                    }
                )
        return objects

    objects = _objects(open_metrics)
    pod = objects.pod(f"{NS}/fraud-v7")
    result = scrape(objects, pod, "monitoring", 8002, "/metrics", enrolled=enrolled)
    assert result.final().verdict == verdict, result.final().detail
