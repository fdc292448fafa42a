"""mesh.trace on objects ml-mesh did not make: a table of objects in, a request in, the
destination or the refusal out, each row one Istio or Kubernetes rule the simulator follows."""

from __future__ import annotations

import copy

import pytest

from mesh.trace import MeshSettings, Objects, Request, Workload, capture, trace, trace_process
from mesh.trace.flagger import expand

NS = "shop"
GATEWAY = Workload("istio-system", "gw", (("istio", "ingressgateway"),), gateway=True)
CLIENT = Workload("shop", "client")


def _service(name: str, *ports: tuple[str, int]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
        },
    }


def _deployment(name: str, version: str, replicas: int = 1, ports=(8080, 9090), **pod) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-{version}", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": name, "version": version}, **pod.pop("meta", {})},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [{"name": "app", "ports": [{"containerPort": p} for p in ports]}],
                    **pod,
                },
            },
        },
    }


BASE = [
    {"kind": "Namespace", "metadata": {"name": NS, "labels": {"istio-injection": "enabled"}}},
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": NS},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["./*.example.com"],
                }
            ],
        },
    },
    _service("api", ("http", 8080), ("grpc", 9090)),
    _deployment("api", "v1"),
    _deployment("api", "v2"),
    {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {
            "host": "api",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    },
]


def _vs(*http: dict, hosts=("api.example.com", "api"), gateways=("gw", "mesh")) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {"hosts": list(hosts), "gateways": list(gateways), "http": list(http)},
    }


def _to(subset: str, port: int, weight: int | None = None) -> dict:
    target: dict = {"destination": {"host": "api", "subset": subset, "port": {"number": port}}}
    if weight is not None:
        target["weight"] = weight
    return target


GRPC_BY_PORT = {"name": "grpc", "match": [{"port": 9090}], "route": [_to("v2", 9090)]}
REST = {"name": "rest", "route": [_to("v1", 8080)]}


def _objects(*extra: dict, settings: MeshSettings | None = None) -> Objects:
    return Objects([*copy.deepcopy(BASE), *extra], settings)


def _http(host="api.example.com", port=80, **kw) -> Request:
    return Request(port=port, host=host, **kw)


ROUTING = [
    # (why, extra objects, source, request, verdict, cluster of the first live branch)
    (
        "a gateway drops a match on the Service port: gRPC falls to the REST route",
        [_vs(GRPC_BY_PORT, REST)],
        GATEWAY,
        _http(protocol="grpc", method="POST", path="/pkg.Svc/Call"),
        "wrong-protocol",
        "outbound|8080|v1|api.shop.svc.cluster.local",
    ),
    (
        "in the mesh the same match selects the gRPC port",
        [_vs(GRPC_BY_PORT, REST)],
        CLIENT,
        _http("api", 9090, protocol="grpc", method="POST", path="/pkg.Svc/Call"),
        "served",
        "outbound|9090|v2|api.shop.svc.cluster.local",
    ),
    (
        "a gateway-scoped content-type match reaches the gRPC port at the gateway",
        [
            _vs(
                {
                    "match": [
                        {
                            "gateways": ["gw"],
                            "headers": {"content-type": {"prefix": "application/grpc"}},
                        }
                    ],
                    "route": [_to("v2", 9090)],
                },
                REST,
            )
        ],
        GATEWAY,
        _http(protocol="grpc", method="POST", path="/pkg.Svc/Call"),
        "served",
        "outbound|9090|v2|api.shop.svc.cluster.local",
    ),
    (
        "a subset no DestinationRule defines: 503 NC",
        [_vs({"route": [_to("v9", 8080)]})],
        GATEWAY,
        _http(),
        "no-cluster",
        "outbound|8080|v9|api.shop.svc.cluster.local",
    ),
    (
        "a host the Gateway server does not list: 404",
        [_vs(REST, hosts=("api.other.org",))],
        GATEWAY,
        _http("api.other.org"),
        "no-route",
        None,
    ),
    (
        "the Host header's port is ignored",
        [_vs(REST)],
        GATEWAY,
        _http("api.example.com:80"),
        "served",
        "outbound|8080|v1|api.shop.svc.cluster.local",
    ),
    (
        "a VirtualService not bound to the gateway: 404",
        [_vs(REST, gateways=("mesh",))],
        GATEWAY,
        _http(),
        "no-route",
        None,
    ),
    (
        "no VirtualService in the mesh: the Service's default cluster",
        [],
        CLIENT,
        _http("api.shop", 8080),
        "served",
        "outbound|8080||api.shop.svc.cluster.local",
    ),
    (
        "a header match sends the request to its version",
        [
            _vs(
                {"match": [{"headers": {"x-beta": {"exact": "1"}}}], "route": [_to("v2", 8080)]},
                REST,
            )
        ],
        GATEWAY,
        _http(headers=(("X-Beta", "1"),)),
        "served",
        "outbound|8080|v2|api.shop.svc.cluster.local",
    ),
]


@pytest.mark.parametrize(
    ("why", "extra", "source", "request_", "verdict", "cluster"),
    ROUTING,
    ids=[row[0] for row in ROUTING],
)
def test_routing_journeys(why, extra, source, request_, verdict, cluster):
    result = trace(_objects(*extra), source, request_)
    assert result.final().verdict == verdict, [s.detail for s in result.steps]
    live = [b for b in result.branches if b.kind == "route"]
    assert (live[0].cluster if live else None) == cluster


def test_weights_are_relative_and_each_branch_is_followed():
    vs = _vs({"route": [_to("v1", 8080, 1), _to("v2", 8080, 3)]})
    result = trace(_objects(vs), GATEWAY, _http())
    assert [(b.subset, b.share) for b in result.branches] == [("v1", 25.0), ("v2", 75.0)]
    assert result.ok


def test_a_version_without_pods_answers_503_uh():
    objects = [o for o in BASE if o.get("metadata", {}).get("name") != "api-v2"]
    objects.append(_deployment("api", "v2", replicas=0))
    result = trace(Objects([*objects, _vs({"route": [_to("v2", 8080)]})]), GATEWAY, _http())
    assert result.final().verdict == "no-endpoints"
    assert result.final().status == 503


def test_https_redirect_answers_301_before_any_route():
    objects = _objects(_vs(REST))
    gateway = objects.kind("Gateway")[0]
    gateway["spec"]["servers"][0]["tls"] = {"httpsRedirect": True}
    result = trace(objects, GATEWAY, _http())
    assert (result.outcome.verdict, result.outcome.status) == ("redirected", 301)


def _policy(action: str, rules: list[dict], name: str = "p") -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "action": action, "rules": rules},
    }


GATEWAY_PRINCIPAL = {"from": [{"source": {"principals": ["cluster.local/ns/istio-system/sa/gw"]}}]}
AUTHZ = [
    ("no policy: allowed", [], "served"),
    ("an ALLOW for the gateway: allowed", [_policy("ALLOW", [GATEWAY_PRINCIPAL])], "served"),
    (
        "an ALLOW for another principal: 403",
        [_policy("ALLOW", [{"from": [{"source": {"principals": ["x/ns/y/sa/z"]}}]}])],
        "denied",
    ),
    ("an ALLOW without rules allows nothing", [_policy("ALLOW", [])], "denied"),
    (
        "DENY wins over ALLOW",
        [
            _policy("ALLOW", [GATEWAY_PRINCIPAL]),
            _policy("DENY", [{"to": [{"operation": {"paths": ["/admin*"]}}]}], "deny"),
        ],
        "denied",
    ),
    (
        "ports are container ports",
        [_policy("ALLOW", [{"to": [{"operation": {"ports": ["8080"]}}]}])],
        "served",
    ),
]


@pytest.mark.parametrize(("why", "policies", "verdict"), AUTHZ, ids=[r[0] for r in AUTHZ])
def test_authorization_journeys(why, policies, verdict):
    result = trace(_objects(_vs(REST), *policies), GATEWAY, _http(path="/admin/x"))
    assert result.final().verdict == verdict


def test_strict_mtls_resets_a_client_without_sidecar():
    strict = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    bare = Workload("other", "x", sidecar="none")
    assert trace(_objects(strict), bare, _http("api.shop", 8080)).final().verdict == "reset"
    assert trace(_objects(), bare, _http("api.shop", 8080)).final().verdict == "served"
    with_sidecar = trace(_objects(strict), Workload("other", "x"), _http("api.shop", 8080))
    assert with_sidecar.final().verdict == "served"


def _sidecar(mode: str, hosts: list[str]) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"egress": [{"hosts": hosts}], "outboundTrafficPolicy": {"mode": mode}},
    }


S3 = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "s3", "namespace": NS},
    "spec": {
        "hosts": ["bucket.s3.amazonaws.com"],
        "exportTo": ["."],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
    },
}
EGRESS = [
    (
        "registered host",
        [S3, _sidecar("REGISTRY_ONLY", ["./*"])],
        "bucket.s3.amazonaws.com",
        "egress",
    ),
    ("unregistered host", [S3, _sidecar("REGISTRY_ONLY", ["./*"])], "evil.example", "blackholed"),
    (
        "unregistered, ALLOW_ANY",
        [S3, _sidecar("ALLOW_ANY", ["./*"])],
        "evil.example",
        "passthrough",
    ),
    (
        "registered but outside the egress hosts",
        [S3, _sidecar("REGISTRY_ONLY", ["istio-system/*"])],
        "bucket.s3.amazonaws.com",
        "blackholed",
    ),
]


@pytest.mark.parametrize(("why", "extra", "host", "verdict"), EGRESS, ids=[r[0] for r in EGRESS])
def test_egress_journeys(why, extra, host, verdict):
    source = Workload(NS, "api", (("app", "api"),))
    result = trace(_objects(*extra), source, Request(port=443, host=host, tls=True))
    assert result.outcome.verdict == verdict


def _fetching_pod(native: str, uid: int | None) -> dict:
    deployment = _deployment(
        "api",
        "v3",
        meta={"annotations": {"sidecar.istio.io/nativeSidecar": native}},
        initContainers=[{"name": "fetch", "securityContext": {"runAsUser": uid} if uid else {}}],
    )
    return deployment


CAPTURE = [
    ("native sidecar: the init container is proxied", "true", None, False, "proxy"),
    ("classic, no CNI: istio-init runs last, so not captured", "false", None, False, "none"),
    ("classic with CNI: captured before the proxy runs", "false", None, True, "no-proxy"),
    ("classic with CNI, UID 1337: not captured", "false", 1337, True, "none"),
]


@pytest.mark.parametrize(
    ("why", "native", "uid", "cni", "how"), CAPTURE, ids=[r[0] for r in CAPTURE]
)
def test_init_container_capture(why, native, uid, cni, how):
    objects = _objects(_fetching_pod(native, uid), settings=MeshSettings(cni=cni))
    pod = objects.pod(f"{NS}/api-v3")
    assert capture(objects, pod, "fetch")[0] == how
    result = trace_process(objects, pod, "fetch", Request(port=443, host="evil.example", tls=True))
    assert result.ok == (how != "no-proxy")


def test_a_network_policy_admits_only_its_peers_on_named_ports():
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {
            "podSelector": {"matchLabels": {"app": "api"}},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ok"}
                            }
                        }
                    ],
                    "ports": [{"port": 8080}],
                }
            ],
        },
    }
    objects = _objects(policy)
    assert trace(objects, Workload("ok", "a"), _http("api.shop", 8080)).ok
    assert (
        trace(objects, Workload("bad", "a"), _http("api.shop", 8080)).final().verdict == "dropped"
    )
    assert trace(objects, Workload("ok", "a"), _http("api.shop", 9090)).final().verdict == "dropped"


def test_flagger_canary_expands_to_the_services_and_routes_flagger_creates():
    target = _deployment("api", "v1")
    target["metadata"]["name"] = "api"
    target["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "service": {"port": 8080, "gateways": ["shop/gw"], "hosts": ["api.example.com"]},
            "analysis": {"stepWeight": 20},
        },
    }
    objects = Objects(expand([BASE[0], BASE[1], target, canary]))
    result = trace(objects, GATEWAY, _http())
    assert [(b.host, b.share) for b in result.branches] == [
        ("api-primary.shop.svc.cluster.local", 80.0),
        ("api-canary.shop.svc.cluster.local", 20.0),
    ]
    assert [b.workload for b in result.branches] == [
        "Deployment shop/api-primary",
        "Deployment shop/api",
    ]
    assert result.ok
