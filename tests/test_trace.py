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


# --- rules a second reading against the Istio and Kubernetes sources pinned ------------------


def _ns_policy(kind: str, spec: dict, namespace: str = NS, name: str = "default") -> dict:
    group = (
        "networking.istio.io/v1"
        if kind in ("Sidecar", "DestinationRule")
        else "security.istio.io/v1"
    )
    return {
        "apiVersion": group,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


STRICT = _ns_policy("PeerAuthentication", {"mtls": {"mode": "STRICT"}})


def test_a_sidecar_without_egress_listeners_imports_every_service():
    sidecar = _ns_policy("Sidecar", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}})
    result = trace(_objects(sidecar), CLIENT, _http("api", 8080))
    assert result.final().verdict == "served"


def test_a_service_without_selector_has_no_endpoints():
    manual = _service("manual", ("http", 8080))
    del manual["spec"]["selector"]
    result = trace(_objects(manual), CLIENT, _http("manual", 8080))
    assert result.final().verdict == "no-endpoints"


def test_a_numeric_target_port_is_forwarded_even_if_no_container_declares_it():
    service = _service("api", ("http", 8080))
    service["spec"]["ports"][0]["targetPort"] = 7070
    objects = [o for o in copy.deepcopy(BASE) if o["kind"] != "Service"]
    result = trace(Objects([*objects, service]), CLIENT, _http("api", 8080))
    assert result.final().verdict == "served"
    assert {b.container_port for b in result.branches} == {7070}


@pytest.mark.parametrize(("regex", "verdict_subset"), [("*", "v2"), ("(", "v1")])
def test_a_regex_star_is_a_presence_match_and_a_broken_regex_matches_nothing(regex, verdict_subset):
    vs = _vs({"match": [{"headers": {"x-a": {"regex": regex}}}], "route": [_to("v2", 8080)]}, REST)
    result = trace(_objects(vs), GATEWAY, _http(headers=(("x-a", "anything"),)))
    assert [b.subset for b in result.branches] == [verdict_subset]


def test_an_external_two_label_host_is_not_taken_for_a_service():
    entry = copy.deepcopy(S3)
    entry["spec"]["hosts"] = ["github.com"]
    source = Workload(NS, "api", (("app", "api"),))
    objects = _objects(entry, _sidecar("REGISTRY_ONLY", ["./*"]))
    assert (
        trace(objects, source, Request(port=443, host="github.com", tls=True)).outcome.verdict
        == "egress"
    )


def test_root_namespace_policies_apply_to_the_pods_their_selector_matches():
    deny = _policy("DENY", [{}], "deny-api")
    deny["metadata"]["namespace"] = "istio-system"
    assert trace(_objects(_vs(REST), deny), GATEWAY, _http()).final().verdict == "denied"


def test_service_accounts_in_a_source_need_that_account():
    other = _policy("ALLOW", [{"from": [{"source": {"serviceAccounts": ["app/nobody"]}}]}])
    mine = _policy("ALLOW", [{"from": [{"source": {"serviceAccounts": ["istio-system/gw"]}}]}])
    assert trace(_objects(_vs(REST), other), GATEWAY, _http()).final().verdict == "denied"
    assert trace(_objects(_vs(REST), mine), GATEWAY, _http()).final().verdict == "served"


def test_a_wildcard_destination_rule_in_the_clients_namespace_comes_first():
    """Lookup goes client namespace, host namespace, root; in each the most specific host."""
    disable = _ns_policy(
        "DestinationRule",
        {"host": "*.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
        namespace="other",
        name="plain",
    )
    client = Workload("other", "client")
    assert (
        trace(_objects(STRICT, disable), client, _http("api.shop", 8080)).final().verdict == "reset"
    )
    assert trace(_objects(STRICT), client, _http("api.shop", 8080)).final().verdict == "served"
    # in the host's namespace, the exact `api` rule is more specific than a wildcard
    disable["metadata"]["namespace"] = NS
    assert (
        trace(_objects(STRICT, disable), client, _http("api.shop", 8080)).final().verdict
        == "served"
    )


def test_auto_mtls_sends_plaintext_where_the_port_disables_mtls_and_int_port_keys_count():
    per_port = _ns_policy(
        "PeerAuthentication",
        {
            "selector": {"matchLabels": {"app": "api"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {8080: {"mode": "DISABLE"}},
        },
        name="api",
    )
    only_gateway = _policy("ALLOW", [GATEWAY_PRINCIPAL])
    result = trace(_objects(per_port, only_gateway, _vs(REST)), GATEWAY, _http())
    (branch,) = result.branches
    assert [s.detail for s in branch.steps if s.at == "mtls"] == [
        "DISABLE (PeerAuthentication shop/api); client plaintext"
    ]
    assert branch.outcome.verdict == "denied"  # no peer identity without mTLS


def test_the_inject_annotation_opts_a_pod_out_of_the_mesh():
    pod = _deployment("api", "v3", meta={"annotations": {"sidecar.istio.io/inject": "false"}})
    objects = _objects(pod)
    assert objects.sidecar_mode(objects.pod(f"{NS}/api-v3")) == "none"


def test_dot_slash_gateway_references_bind_in_the_virtual_services_namespace():
    result = trace(_objects(_vs(REST, gateways=("./gw",))), GATEWAY, _http())
    assert result.final().verdict == "served"


def test_https_redirect_answers_for_a_bare_server_host_even_without_a_virtual_service():
    objects = _objects()
    server = objects.kind("Gateway")[0]["spec"]["servers"][0]
    server["hosts"] = ["old.example.com"]
    server["tls"] = {"httpsRedirect": True}
    assert trace(objects, GATEWAY, _http("old.example.com")).outcome.status == 301
    grpc = trace(objects, GATEWAY, _http("old.example.com", protocol="grpc", method="POST"))
    assert grpc.outcome.verdict == "unfollowed-redirect" and not grpc.ok


def test_source_labels_at_a_gateway_are_the_gateway_pods_labels():
    vs = _vs(
        {"match": [{"sourceLabels": {"istio": "ingressgateway"}}], "route": [_to("v2", 8080)]}, REST
    )
    assert [b.subset for b in trace(_objects(vs), GATEWAY, _http()).branches] == ["v2"]


def test_excluded_outbound_ranges_are_not_captured():
    pod = _deployment(
        "api",
        "v3",
        meta={
            "annotations": {
                "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32"
            }
        },
    )
    objects = _objects(pod, _sidecar("REGISTRY_ONLY", ["./*"]))
    imds = Request(port=80, host="169.254.169.254", method="PUT", path="/latest/api/token")
    result = trace_process(objects, objects.pod(f"{NS}/api-v3"), "app", imds)
    assert result.outcome.verdict == "direct"
    other = trace_process(
        objects, objects.pod(f"{NS}/api-v3"), "app", Request(port=80, host="10.0.0.1")
    )
    assert other.outcome.verdict == "blackholed"
