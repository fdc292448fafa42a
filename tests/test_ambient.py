"""dataplane: ambient. What the builders emit instead of sidecar artefacts (namespace labels, the
waypoint, the split L4/L7 policies, the ambient NetworkPolicy, waypoint-reported telemetry),
and what `mesh check` says of sidecar artefacts in an ambient namespace. docs/ambient.md."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from mesh import ambient
from mesh.alerts import CANARY_ERRORS, prometheus_rule
from mesh.checks import check
from mesh.config import parse_config
from mesh.config.errors import ConfigError
from mesh.journeys import journeys
from mesh.plan import WAYPOINT, build_plan
from mesh.progressive import success_rate_query
from mesh.promql import model_queries
from mesh.render import render_objects
from mesh.security import principal
from mesh.stackfile import load_stack, raw_project_config
from tests.conftest import EXAMPLES, PROJECT_DIR, of_kind, stack_raw, with_value, without

WAYPOINT_PORT = 15008


def ambient_raw(stack: str, routing: str = "istio") -> dict[str, Any]:
    """A committed stack on the ambient data plane: Istio 1.30, no nativeSidecars."""
    raw = with_value(stack_raw(stack), "dataplane", "ambient")
    raw = with_value(raw, "platform.istioVersion", "1.30")
    if "nativeSidecars" in raw.get("istio", {}):
        raw = without(raw, "istio.nativeSidecars")
    return with_value(raw, "routing", routing) if routing != "istio" else raw


def objects_of(raw: dict[str, Any], stack: str) -> list[dict[str, Any]]:
    return build_plan(parse_config(raw, stack)).objects()


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


# --- namespace and waypoint --------------------------------------------------------------------

NAMESPACE_LABELS = [
    # dataplane, istio.revision, the namespace's mesh labels
    ("sidecar", None, {"istio-injection": "enabled"}),
    ("sidecar", "1-30-3", {"istio.io/rev": "1-30-3"}),
    ("ambient", None, {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
    (
        "ambient",
        "1-30-3",
        {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"},
    ),
]


@pytest.mark.parametrize(("dataplane", "revision", "labels"), NAMESPACE_LABELS)
def test_the_namespace_is_labelled_for_its_data_plane(dataplane, revision, labels):
    raw = ambient_raw("dev") if dataplane == "ambient" else stack_raw("dev")
    if revision:
        raw = with_value(raw, "istio.revision", revision)
    namespace = build_plan(parse_config(raw, "dev")).namespace
    mesh = {
        k: v
        for k, v in namespace["metadata"]["labels"].items()
        if not k.startswith("app.kubernetes.io/")
    }
    assert mesh == labels


@pytest.mark.parametrize(
    ("revision", "labels"), [(None, {}), ("1-30-3", {"istio.io/rev": "1-30-3"})]
)
def test_the_waypoint_is_a_gateway_api_gateway_for_service_traffic(revision, labels):
    raw = ambient_raw("dev")
    if revision:
        raw = with_value(raw, "istio.revision", revision)
    plan = build_plan(parse_config(raw, "dev"))
    (component,) = [c for c in plan.components if c.type == WAYPOINT]
    (gateway,) = component.objects
    assert (gateway["apiVersion"], gateway["kind"], gateway["metadata"]["name"]) == (
        "gateway.networking.k8s.io/v1",
        "Gateway",
        "waypoint",
    )
    own = {k: v for k, v in gateway["metadata"]["labels"].items() if k.startswith("istio.io/")}
    assert own == {"istio.io/waypoint-for": "service", **labels}
    assert gateway["spec"] == {
        "gatewayClassName": "istio-waypoint",
        "listeners": [{"name": "mesh", "port": WAYPOINT_PORT, "protocol": "HBONE"}],
    }


def test_a_sidecar_stack_has_no_waypoint_component():
    assert WAYPOINT not in {
        c.type for c in build_plan(parse_config(stack_raw("prod"), "prod")).components
    }


# --- no sidecar artefact -----------------------------------------------------------------------

SIDECAR_KEYS = (
    "sidecar.istio.io/",
    "proxy.istio.io/",
    "istio-injection",
    "traffic.sidecar.istio.io",
)


def _walk(node: Any, path: str = ""):
    """Every (path, key, value) of a nested object."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key), value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def sidecar_artefacts(obj: dict[str, Any]) -> list[str]:
    found = []
    if obj["kind"] == "Sidecar":
        found.append("a Sidecar resource")
    for path, key, value in _walk(obj):
        if any(key.startswith(prefix) for prefix in SIDECAR_KEYS):
            found.append(f"{path}.{key}")
        if key in ("runAsUser", "runAsGroup") and value == 1337:
            found.append(f"{path}.{key}: 1337 (the proxy's UID)")
        if key == "name" and value == "istio-proxy":
            found.append(f"{path}: an istio-proxy container")
    return found


@pytest.mark.parametrize("stack", ["prod", "dev"])
@pytest.mark.parametrize("routing", ["istio", "gateway-api"])
def test_an_ambient_render_has_no_sidecar_artefact_anywhere(stack, routing):
    objects = objects_of(ambient_raw(stack, routing), stack)
    found = {
        f"{o['kind']} {o['metadata']['name']}": sidecar_artefacts(o)
        for o in objects
        if sidecar_artefacts(o)
    }
    assert found == {}


def test_the_sidecar_render_has_what_the_ambient_one_drops():
    """The walk above finds what it looks for: prod as shipped is full of it."""
    objects = objects_of(stack_raw("prod"), "prod")
    found = [a for o in objects for a in sidecar_artefacts(o)]
    assert "a Sidecar resource" in found
    assert any("1337" in a for a in found)
    assert any("sidecar.istio.io/nativeSidecar" in a for a in found)


def test_the_download_runs_as_the_pods_user_in_ambient():
    for raw, uid in ((stack_raw("prod"), 1337), (ambient_raw("prod"), None)):
        deployment = named(objects_of(raw, "prod"), "Deployment", "sentiment-v3")
        (fetch,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert fetch["securityContext"].get("runAsUser") == uid


# --- Services, policies ------------------------------------------------------------------------

SERVICE_NAMES = [
    # routing, model, versions → the Services the L7 policy targets
    ("istio", "sentiment", ["sentiment"]),
    ("gateway-api", "sentiment", ["sentiment", "sentiment-v3", "sentiment-v4"]),
    ("gateway-api", "fraud", ["fraud", "fraud-v7"]),
]


@pytest.mark.parametrize(("routing", "model", "services"), SERVICE_NAMES)
def test_model_service_names_follow_the_routing(routing, model, services):
    config = parse_config(ambient_raw("prod", routing), "prod")
    assert ambient.model_service_names(config, model) == services


@pytest.mark.parametrize(("routing", "model", "services"), SERVICE_NAMES)
def test_the_l7_policy_targets_the_models_services(routing, model, services):
    objects = objects_of(ambient_raw("prod", routing), "prod")
    policy = named(objects, "AuthorizationPolicy", f"{model}-waypoint")
    assert "selector" not in policy["spec"]  # CEL: only one of targetRefs or selector
    assert policy["spec"]["targetRefs"] == [
        {"group": "", "kind": "Service", "name": s} for s in services
    ]
    (rule,) = policy["spec"]["rules"]
    config = parse_config(ambient_raw("prod", routing), "prod")
    callers = [principal(config, c) for c in config.models[model].callers]
    assert rule["from"] == [{"source": {"principals": [config.gateway_principal(), *callers]}}]
    # the inference operations of the sidecar policy, unchanged
    sidecar = named(objects_of(stack_raw("prod"), "prod"), "AuthorizationPolicy", model)
    assert rule["to"] == sidecar["spec"]["rules"][0]["to"]


L4 = [
    # model, server ports the waypoint may reach
    ("sentiment", ["8501", "8500"]),
    ("fraud", ["8000", "8001"]),
]


@pytest.mark.parametrize(("model", "ports"), L4)
def test_the_l4_policy_admits_only_the_waypoint_on_the_server_ports(model, ports):
    raw = with_value(ambient_raw("prod"), "security.metricsNamespaces", [])
    policy = named(objects_of(raw, "prod"), "AuthorizationPolicy", model)
    assert policy["spec"] == {
        "selector": {"matchLabels": {"app": model}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/ml-serving/sa/waypoint"]}}],
                "to": [{"operation": {"ports": ports}}],
            }
        ],
    }


def test_the_l4_policy_has_nothing_ztunnel_cannot_enforce():
    """ztunnel turns an ALLOW rule with L7 attributes into DENY: no paths, methods, hosts."""
    l7 = {"paths", "notPaths", "methods", "notMethods", "hosts", "notHosts"}
    for policy in of_kind(objects_of(ambient_raw("prod"), "prod"), "AuthorizationPolicy"):
        if "selector" in policy["spec"]:
            for rule in policy["spec"]["rules"]:
                for to in rule.get("to", []):
                    assert not l7 & set(to["operation"]), policy["metadata"]["name"]


def test_the_model_services_go_through_the_waypoint_from_ingress():
    for raw, labels in (
        (ambient_raw("prod"), {"istio.io/ingress-use-waypoint": "true"}),
        (stack_raw("prod"), {}),
    ):
        service = named(objects_of(raw, "prod"), "Service", "sentiment")
        own = {k: v for k, v in service["metadata"]["labels"].items() if k.startswith("istio.io/")}
        assert own == labels


def test_the_network_policy_admits_hbone_from_the_waypoint_and_the_snat_probes():
    raw = with_value(ambient_raw("prod"), "security.metricsNamespaces", [])
    policy = named(objects_of(raw, "prod"), "NetworkPolicy", "sentiment")
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ml-serving"}
                    },
                    "podSelector": {
                        "matchLabels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": WAYPOINT_PORT}],
        },
        {
            "from": [{"ipBlock": {"cidr": "169.254.7.127/32"}}],
            "ports": [{"protocol": "TCP", "port": 8501}],  # the probes' REST port
        },
    ]


METRICS_SCRAPE = [
    # (changes to the ambient prod stack, the metrics namespaces' ports, L4 rule for them)
    # protected (STRICT, L4 policy): only an enrolled Prometheus, as HBONE on 15008 with its
    # identity, which the L4 policy admits on the metrics port alone.
    ({}, [WAYPOINT_PORT], True),
    # the mesh's mTLS mode, an L4 policy: a plaintext scrape has no identity, refused anyway.
    (
        {"protected": False, "security.authorization": True, "security.networkPolicy": True},
        [WAYPOINT_PORT],
        True,
    ),
    # neither STRICT nor an L4 policy: a plaintext scrape passes ztunnel, so its port opens.
    ({"protected": False, "security.networkPolicy": True}, [WAYPOINT_PORT, 8002], False),
]


@pytest.mark.parametrize(("changes", "ports", "l4"), METRICS_SCRAPE)
def test_metrics_namespaces_reach_a_meshed_scrape_in_ambient(changes, ports, l4):
    raw = with_value(ambient_raw("prod"), "security.metricsNamespaces", ["monitoring"])
    for path, value in changes.items():
        raw = with_value(raw, path, value)
    objects = objects_of(raw, "prod")
    network = named(objects, "NetworkPolicy", "fraud")["spec"]["ingress"][-1]
    assert network["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert [p["port"] for p in network["ports"]] == ports
    policies = [
        o for o in of_kind(objects, "AuthorizationPolicy") if o["metadata"]["name"] == "fraud"
    ]
    rules = [r for p in policies for r in p["spec"]["rules"]]
    metrics_rule = {
        "from": [{"source": {"namespaces": ["monitoring"]}}],
        "to": [{"operation": {"ports": ["8002"]}}],
    }
    assert (metrics_rule in rules) == l4
    if l4:  # the waypoint alone on the server ports: the metrics rule opens nothing else
        assert rules[0]["to"] == [{"operation": {"ports": ["8000", "8001"]}}]


def test_peer_authentication_stays_namespace_wide():
    (peer,) = of_kind(objects_of(ambient_raw("prod"), "prod"), "PeerAuthentication")
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}


# --- egress ------------------------------------------------------------------------------------


def test_the_store_entries_are_reachable_by_the_model_pods_only_at_the_waypoint():
    objects = objects_of(ambient_raw("prod"), "prod")
    assert of_kind(objects, "Sidecar") == []
    policy = named(objects, "AuthorizationPolicy", "model-store")
    assert policy["spec"] == {
        "targetRefs": [
            {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "model-store"},
            {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "aws-sts"},
        ],
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {
                        "source": {
                            "principals": [
                                "cluster.local/ns/ml-serving/sa/fraud",
                                "cluster.local/ns/ml-serving/sa/sentiment",
                            ]
                        }
                    }
                ]
            }
        ],
    }


DNS_RULE = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
WAYPOINT_RULE = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-serving"}},
            "podSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}},
        }
    ],
    "ports": [{"protocol": "TCP", "port": WAYPOINT_PORT}],
}
IMDS_RULE = {
    "to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}],
    "ports": [{"protocol": "TCP", "port": 80}],
}
TLS_ANYWHERE = {"ports": [{"protocol": "TCP", "port": 443}]}
EGRESS_POLICIES = [
    # (changes to the ambient prod stack, the egress rules of fraud-egress; None: no policy)
    ({}, [DNS_RULE, WAYPOINT_RULE, TLS_ANYWHERE]),
    (
        {"storage.nodeCredentials": True, "models.fraud.roleArn": None},
        [DNS_RULE, WAYPOINT_RULE, IMDS_RULE, TLS_ANYWHERE],
    ),
    (
        {"storage.endpoint": {"host": "minio.minio.svc.cluster.local", "tls": False}},
        [
            DNS_RULE,
            WAYPOINT_RULE,
            {
                "to": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "minio"}}}
                ]
            },
            TLS_ANYWHERE,
        ],
    ),
    (
        {"storage.endpoint": {"host": "s3.example.com", "port": 9000}},
        [
            DNS_RULE,
            WAYPOINT_RULE,
            {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 9000}]},
        ],
    ),
    # acknowledged open egress: no policy, and no MESH0025
    ({"security.restrictEgress": False}, None),
    ({"protected": False}, None),
]


@pytest.mark.parametrize(("changes", "rules"), EGRESS_POLICIES)
def test_egress_is_restricted_by_a_network_policy_that_names_no_hosts(changes, rules):
    raw = ambient_raw("prod")
    for path, value in changes.items():
        raw = without(raw, path) if value is None else with_value(raw, path, value)
    config = parse_config(raw, "prod")
    objects = build_plan(config).objects()
    found = [
        o for o in of_kind(objects, "NetworkPolicy") if o["metadata"]["name"] == "fraud-egress"
    ]
    warned = [f for f in check(config, objects) if f.code == "MESH0025"]
    if rules is None:
        assert found == [] and warned == []
        return
    (policy,) = found
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "fraud"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["egress"] == rules
    (warning,) = [f for f in warned if f.resource == "NetworkPolicy ml-serving/fraud-egress"]
    assert warning.severity == "warning"
    assert warning.path == "security.restrictEgress"
    assert "cannot name hosts" in warning.message
    assert "security.restrictEgress: false" in warning.message


def test_a_sidecar_stack_restricts_egress_with_the_sidecar_not_a_network_policy():
    objects = objects_of(stack_raw("prod"), "prod")
    assert [o for o in of_kind(objects, "NetworkPolicy") if "egress" in o["spec"]] == []
    assert of_kind(objects, "Sidecar")


def test_flagger_egress_covers_the_primary_pods():
    raw = progressive(ambient_raw("prod"))
    policy = named(objects_of(raw, "prod"), "NetworkPolicy", "sentiment-egress")
    assert policy["spec"]["podSelector"] == {
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["sentiment", "sentiment-primary"]}
        ]
    }


def test_instance_metadata_is_called_from_the_pod_not_the_waypoint():
    raw = with_value(ambient_raw("dev"), "storage.nodeCredentials", True)
    entry = named(objects_of(raw, "dev"), "ServiceEntry", "instance-metadata")
    assert entry["metadata"]["labels"]["istio.io/use-waypoint"] == "none"


# --- telemetry ---------------------------------------------------------------------------------

REPORTERS = [("sidecar", "destination"), ("ambient", "waypoint")]
PROGRESSIVE = {"stepWeight": 5, "maxWeight": 30}


def progressive(raw: dict[str, Any]) -> dict[str, Any]:
    """prod's sentiment rolled out by Flagger (as tests/test_progressive.py sets it up)."""
    raw = with_value(raw, "models.sentiment.canary", {"version": "v4"})
    return with_value(raw, "models.sentiment.progressive", PROGRESSIVE)


def _raw(dataplane: str) -> dict[str, Any]:
    return ambient_raw("prod") if dataplane == "ambient" else stack_raw("prod")


@pytest.mark.parametrize(("dataplane", "reporter"), REPORTERS)
def test_server_side_queries_read_the_reporter_of_the_data_plane(dataplane, reporter):
    config = parse_config(_raw(dataplane), "prod")
    queries = model_queries(config, "sentiment")
    for query in (queries.request_rate, queries.error_ratio, queries.p99_latency):
        assert f'reporter="{reporter}"' in query
        assert 'reporter="source"' not in query
    assert f'reporter="{reporter}"' in queries.canary_error_excess
    # the caller side stays the callers' proxies (the ingress gateway)
    assert 'reporter="source"' in queries.caller_error_ratio


@pytest.mark.parametrize(("dataplane", "reporter"), REPORTERS)
def test_the_canary_alert_reads_the_reporter_of_the_data_plane(dataplane, reporter):
    config = parse_config(_raw(dataplane), "prod")
    rules = {r["alert"]: r for g in prometheus_rule(config)["spec"]["groups"] for r in g["rules"]}
    canary = rules[CANARY_ERRORS]
    assert f'reporter="{reporter}"' in canary["expr"]
    assert ('reporter="waypoint"' in canary["annotations"]["description"]) == (
        dataplane == "ambient"
    )


@pytest.mark.parametrize(("dataplane", "reporter"), REPORTERS)
def test_the_flagger_success_rate_reads_the_reporter_of_the_data_plane(dataplane, reporter):
    raw = progressive(_raw(dataplane))
    template = named(objects_of(raw, "prod"), "MetricTemplate", "sentiment-request-success-rate")
    assert template["spec"]["query"] == success_rate_query(parse_config(raw, "prod"))
    assert f'reporter="{reporter}"' in template["spec"]["query"]


def test_flaggers_services_meet_the_waypoint_and_carry_the_split_l7_policy():
    raw = progressive(ambient_raw("prod"))
    raw = with_value(
        raw,
        "models.sentiment.progressive.loadTest",
        {"url": "http://flagger-loadtester.test/", "cmd": "hey http://sentiment-canary/"},
    )
    objects = objects_of(raw, "prod")
    service = named(objects, "Canary", "sentiment")["spec"]["service"]
    label = {"labels": {"istio.io/ingress-use-waypoint": "true"}}
    assert (service["apex"], service["primary"], service["canary"]) == (label, label, label)
    primary = named(objects, "AuthorizationPolicy", "sentiment-primary-waypoint")["spec"]
    canary = named(objects, "AuthorizationPolicy", "sentiment-canary-waypoint")["spec"]
    assert [r["name"] for r in primary["targetRefs"]] == ["sentiment", "sentiment-primary"]
    assert [r["name"] for r in canary["targetRefs"]] == ["sentiment-canary"]
    loadtester = "cluster.local/ns/test/sa/default"
    principals = [
        p for s in (primary, canary) for p in [s["rules"][0]["from"][0]["source"]["principals"]]
    ]
    assert [loadtester in p for p in principals] == [False, True]
    # both workloads admit the waypoint at L4
    for workload in ("sentiment", "sentiment-primary"):
        l4 = named(objects, "AuthorizationPolicy", workload)["spec"]
        assert l4["rules"][0]["from"][0]["source"]["principals"] == [
            "cluster.local/ns/ml-serving/sa/waypoint"
        ]


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.22", "1.23"])
def test_ambient_on_istio_before_1_24_is_refused(version):
    raw = with_value(ambient_raw("dev"), "platform.istioVersion", version)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "dev")
    assert caught.value.path == "dataplane"
    assert caught.value.problem.startswith("ambient needs Istio 1.24+")


SIDECAR_STACKS = ["prod", "dev", *(str(p) for p in EXAMPLES if "ambient" not in p.name)]


@pytest.mark.parametrize("source", SIDECAR_STACKS)
def test_dataplane_sidecar_said_explicitly_renders_byte_identical(source):
    """The default is `sidecar`: saying so changes no byte, and nothing ambient appears."""
    stack = load_stack(source)
    explicit = copy.deepcopy(stack.raw)
    explicit["dataplane"] = "sidecar"
    as_shipped = render_objects(stack.config, set())
    said = render_objects(parse_config(explicit, stack.name), set())
    assert said == as_shipped
    text = repr(as_shipped)
    for ambient_only in ("istio.io/use-waypoint", "istio.io/ingress-use-waypoint", "waypoint"):
        assert ambient_only not in text


# --- mesh check --------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_an_ambient_stack_has_no_finding_of_its_own(stack):
    config = parse_config(ambient_raw(stack), stack)
    findings = check(config, build_plan(config).objects())
    # prod's tag-only images, as shipped, and a protected stack's open egress (MESH0025)
    assert {f.code for f in findings} <= {"MESH0003", "MESH0025"}
    assert any(f.code == "MESH0025" for f in findings) == config.egress_restricted()


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _sidecar(name: str, namespace: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"egress": [{"hosts": ["./*"]}]}
    if selector:
        spec["workloadSelector"] = {"labels": selector}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


SIDECAR_FINDINGS = [
    # the cluster's extra objects, the findings on them (code, resource)
    (
        [_namespace("amb", {"istio.io/dataplane-mode": "ambient"}), _sidecar("only", "amb")],
        [("IST0167", "Sidecar amb/only")],
    ),
    (
        [
            _namespace("amb", {"istio.io/dataplane-mode": "ambient"}),
            _sidecar("a", "amb"),
            _sidecar("b", "amb"),
        ],
        [("IST0167", "Sidecar amb/a"), ("IST0167", "Sidecar amb/b")],
    ),
    (  # istio.io/rev makes it a sidecar namespace for Istio (NamespaceInAmbientMode)
        [
            _namespace("mixed", {"istio.io/dataplane-mode": "ambient", "istio.io/rev": "x"}),
            _sidecar("a", "mixed"),
            _sidecar("b", "mixed"),
        ],
        [
            ("IST0111", "Sidecar mixed/a"),
            ("IST0111", "Sidecar mixed/b"),
            ("IST0123", "Namespace mixed"),
        ],
    ),
    (
        [_namespace("side", {"istio-injection": "enabled"}), _sidecar("only", "side")],
        [],
    ),
    (  # an injection label in an ambient namespace
        [_namespace("both", {"istio.io/dataplane-mode": "ambient", "istio-injection": "enabled"})],
        [("IST0123", "Namespace both")],
    ),
]


@pytest.mark.parametrize(("cluster", "expected"), SIDECAR_FINDINGS)
def test_sidecars_and_injection_labels_in_ambient_namespaces_are_reported(cluster, expected):
    config = parse_config(ambient_raw("dev"), "dev")
    objects = build_plan(config).objects()
    findings = check(config, objects, cluster=copy.deepcopy([*objects, *cluster]))
    names = {
        f"Sidecar {s['metadata']['namespace']}/{s['metadata']['name']}"
        for s in cluster
        if s["kind"] == "Sidecar"
    }
    names |= {f"Namespace {n['metadata']['name']}" for n in cluster if n["kind"] == "Namespace"}
    assert sorted((f.code, f.resource) for f in findings if f.resource in names) == expected


def test_a_sidecar_selecting_the_stacks_ambient_pods_is_ineffective():
    config = parse_config(ambient_raw("dev"), "dev")
    objects = build_plan(config).objects()
    model = sorted(config.models)[0]
    cluster = [*objects, _sidecar("pinned", config.namespace, {"app": model})]
    findings = check(config, objects, cluster=copy.deepcopy(cluster))
    assert [(f.code, f.severity) for f in findings if f.resource.startswith("Sidecar")] == [
        ("IST0167", "warning")
    ]


# --- examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["ambient-istio", "ambient-gateway-api"])
def test_the_ambient_examples_are_ambient_and_pass_mesh_check(example):
    stack = load_stack(str(PROJECT_DIR / "examples" / f"Pulumi.{example}.yaml"))
    assert stack.config.ambient()
    objects = build_plan(stack.config).objects()
    assert [o["metadata"]["name"] for o in of_kind(objects, "Sidecar")] == []
    assert {o["metadata"]["name"] for o in of_kind(objects, "Gateway")} >= {"waypoint"}
    findings = check(stack.config, objects)
    assert {f.code for f in findings} == {"MESH0003", "MESH0025"}


def test_flaggers_primary_pods_are_isolated_by_the_ambient_network_policy_too():
    """Flagger copies the model's pods as `<m>-primary` (`app: <m>-primary`): the ambient
    NetworkPolicy selects both workloads, or the primary, which serves the live traffic, would
    accept connections from anywhere."""
    policy = named(
        objects_of(progressive(ambient_raw("prod")), "prod"), "NetworkPolicy", "sentiment"
    )
    assert policy["spec"]["podSelector"] == {
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["sentiment", "sentiment-primary"]}
        ]
    }
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 15008}]


def test_an_enrolled_prometheus_scrapes_llm_servers_on_their_serving_port():
    """vLLM and SGLang serve /metrics on the API port: in ambient the L4 policy admits the
    metrics namespaces there, and every journey of the LLM example holds (the scrape among
    them), which it did not while only a separate metrics port was opened."""
    document = yaml.safe_load((PROJECT_DIR / "examples" / "Pulumi.llm.yaml").read_text())
    raw = with_value(raw_project_config(document), "dataplane", "ambient")
    raw = with_value(raw, "platform.istioVersion", "1.30")
    if "nativeSidecars" in raw.get("istio", {}):
        raw = without(raw, "istio.nativeSidecars")
    config = parse_config(raw, "llm")
    policy = named(build_plan(config).objects(), "AuthorizationPolicy", "chat")
    scrape = [r for r in policy["spec"]["rules"] if "namespaces" in r["from"][0]["source"]]
    assert scrape and scrape[0]["to"] == [{"operation": {"ports": ["8000"]}}]
    found = journeys(config)
    assert any("scrape :8000" in j.name and j.passed for j in found)
    assert [j.name for j in found if not j.passed] == []
