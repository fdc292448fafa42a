"""Progressive delivery: a model handed to Flagger gets a target Deployment and a Canary, and
none of the objects Flagger creates and owns itself."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import re2

from mesh.config import parse_config
from mesh.plan import MODEL, build_plan
from mesh.render import traffic_table
from mesh.trace import authz
from mesh.trace.flagger import expand
from mesh.trace.objects import Objects, selects
from tests import conformance
from tests.conftest import shared_path, with_value
from tests.harness import run_program, try_program

FLAGGER_OWNED = {"Service", "VirtualService", "DestinationRule"}


@pytest.fixture
def progressive(prod) -> dict:
    """prod with sentiment handed to Flagger; fraud stays in ml-mesh's own routing."""
    raw = with_value(prod, "models.sentiment.canary", {"version": "v4"})
    return with_value(raw, "models.sentiment.progressive", {"stepWeight": 5, "maxWeight": 30})


def _model_objects(raw: dict, name: str, stack: str = "prod") -> dict[tuple[str, str], dict]:
    plan = build_plan(parse_config(raw, stack))
    (component,) = [c for c in plan.components if c.name == name]
    return {(o["kind"], o["metadata"]["name"]): o for o in component.objects}


def _canary(raw: dict, stack: str = "prod") -> dict:
    return _model_objects(raw, "sentiment", stack)[("Canary", "sentiment")]


@pytest.fixture(scope="module")
def canary_schema() -> dict:
    return json.loads(shared_path("flagger", "schemas-strict", "Canary.json").read_text())


def test_progressive_model_is_a_service_account_a_target_deployment_and_a_canary(progressive):
    assert set(_model_objects(progressive, "sentiment")) == {
        ("ServiceAccount", "sentiment"),
        ("Deployment", "sentiment"),
        ("HorizontalPodAutoscaler", "sentiment"),  # prod autoscales sentiment
        ("Canary", "sentiment"),
        ("MetricTemplate", "sentiment-request-success-rate"),  # what its success rate reads
        ("PodDisruptionBudget", "sentiment-primary"),  # Flagger's primary, which it leaves bare
        # prod's authorization: Flagger's canary pods (app=sentiment) and its primary copies
        ("AuthorizationPolicy", "sentiment"),
        ("AuthorizationPolicy", "sentiment-primary"),
        # and one NetworkPolicy for both workloads
        ("NetworkPolicy", "sentiment"),
    }


def test_the_network_policy_of_a_progressive_model_selects_canary_and_primary(progressive):
    policy = _model_objects(progressive, "sentiment")[("NetworkPolicy", "sentiment")]["spec"]
    assert policy["podSelector"] == {
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["sentiment", "sentiment-primary"]}
        ]
    }


def test_an_autoscaled_target_leaves_replicas_to_its_hpa_which_flagger_copies(progressive):
    objects = _model_objects(progressive, "sentiment")
    target = objects[("Deployment", "sentiment")]
    assert "replicas" not in target["spec"]
    hpa = objects[("HorizontalPodAutoscaler", "sentiment")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sentiment",
    }
    assert hpa["minReplicas"] == 2  # v4's replicas: the target runs the canary version
    assert objects[("Canary", "sentiment")]["spec"]["autoscalerRef"] == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "sentiment",
    }
    policy = objects[("AuthorizationPolicy", "sentiment-primary")]["spec"]
    assert policy["selector"] == {"matchLabels": {"app": "sentiment-primary"}}


def test_ml_mesh_emits_none_of_the_objects_flagger_owns(progressive):
    objects = _model_objects(progressive, "sentiment")
    assert not {kind for kind, _ in objects} & FLAGGER_OWNED
    workloads = {
        name for kind, name in objects if kind in ("Deployment", "HorizontalPodAutoscaler")
    }
    assert workloads == {"sentiment"}  # never sentiment-primary / -canary / -v3 / -v4


def _primary_budget(raw: dict, stack: str = "prod") -> dict:
    return _model_objects(raw, "sentiment", stack)[("PodDisruptionBudget", "sentiment-primary")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_flaggers_primary_has_a_disruption_budget_of_one_pod(progressive, dev, stack):
    raw = progressive
    if stack == "dev":  # unprotected, not autoscaled: a budget all the same, as for versions
        raw = with_value(dev, "models.sentiment.progressive", {})
        raw["models"]["sentiment"]["canary"].pop("weight", None)
    budget = _primary_budget(raw, stack)
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app": "sentiment-primary"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert conformance.problems(budget) == []


def test_the_primary_budget_selects_exactly_the_pods_flagger_makes_for_the_primary(progressive):
    """Against the objects Flagger adds (mesh.trace.flagger): every pod of `<m>-primary` and
    none of the target's, whose pods Flagger scales to 0 between analyses."""
    budget = _primary_budget(progressive)
    plan = build_plan(parse_config(progressive, "prod"))
    pods = Objects(expand(plan.objects())).pods
    selected = {p.workload for p in pods if selects(budget["spec"]["selector"], p.labels)}
    assert selected == {"Deployment ml-serving/sentiment-primary"}


def test_a_budget_follows_the_primary_when_the_target_changes(progressive):
    promoted = with_value(progressive, "models.sentiment.stable", "v4")
    del promoted["models"]["sentiment"]["canary"]
    assert _primary_budget(promoted) == _primary_budget(progressive)


def test_other_models_keep_their_own_routing(progressive):
    fraud = _model_objects(progressive, "fraud")
    assert {kind for kind, _ in fraud} >= FLAGGER_OWNED | {"Deployment"}


def test_target_runs_the_canary_version_else_stable(progressive):
    target = _model_objects(progressive, "sentiment")[("Deployment", "sentiment")]
    template = target["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "sentiment", "version": "v4"}
    assert "--model_base_path=/models/sentiment" in template["spec"]["containers"][0]["args"]
    assert template["spec"]["initContainers"][0]["args"][0] == "s3://acme-models-prod/sentiment/4"
    promoted = with_value(progressive, "models.sentiment.stable", "v4")
    del promoted["models"]["sentiment"]["canary"]
    target = _model_objects(promoted, "sentiment")[("Deployment", "sentiment")]
    assert target["spec"]["template"]["metadata"]["labels"]["version"] == "v4"


def test_target_selects_on_the_app_label_alone_which_flagger_rewrites_for_the_primary(
    progressive,
):
    target = _model_objects(progressive, "sentiment")[("Deployment", "sentiment")]
    assert target["spec"]["selector"] == {"matchLabels": {"app": "sentiment"}}


def test_canary_routes_through_our_gateway_hosts_and_the_mesh(progressive):
    canary = _canary(progressive)
    assert canary["apiVersion"] == "flagger.app/v1beta1"
    spec = canary["spec"]
    assert spec["provider"] == "istio"
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sentiment"}
    assert spec["service"] == {
        "name": "sentiment",
        "port": 8501,
        "targetPort": "http-rest",
        "portName": "http-rest",
        "appProtocol": "http",
        "portDiscovery": False,
        "gateways": ["ml-serving/ml-gateway", "mesh"],
        "hosts": ["sentiment.models.example.com"],
    }


SUCCESS_RATE_REF = {"name": "sentiment-request-success-rate", "namespace": "ml-serving"}


def test_canary_analysis_checks_our_success_rate_and_flaggers_latency(progressive):
    analysis = _canary(progressive)["spec"]["analysis"]
    assert analysis == {
        "interval": "1m",
        "threshold": 5,
        "maxWeight": 30,
        "stepWeight": 5,
        "metrics": [
            {
                "name": "ml-mesh-request-success-rate",
                "templateRef": SUCCESS_RATE_REF,
                "interval": "1m",
                "thresholdRange": {"min": 99},
            },
            {"name": "request-duration", "interval": "1m", "thresholdRange": {"max": 500}},
        ],
    }


def test_flaggers_built_in_success_rate_is_not_used_under_any_name(progressive):
    """Flagger runs its built-in query (403 = success) for any metric named
    request-success-rate, even one with a templateRef."""
    metrics = _canary(progressive)["spec"]["analysis"]["metrics"]
    assert "request-success-rate" not in {m["name"] for m in metrics}
    templates = _model_objects(progressive, "sentiment")
    for metric in metrics:
        if metric["name"] != "request-duration":
            ref = metric["templateRef"]
            assert ("MetricTemplate", ref["name"]) in templates
            assert (
                templates[("MetricTemplate", ref["name"])]["metadata"]["namespace"]
                == (ref["namespace"])
            )


# Flagger v1.44's built-in Istio request-success-rate (pkg/metrics/observers/istio.go), the
# query ours must keep the labels of.
FLAGGER_SUCCESS_RATE = """
sum(rate(istio_requests_total{reporter="destination",
  destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}",
  response_code!~"5.*"}[{{ interval }}]))
/ sum(rate(istio_requests_total{reporter="destination",
  destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}"
}[{{ interval }}])) * 100
"""
TEMPLATE_CALL = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


def _render(query: str, canary: dict, interval: str) -> str:
    """The query as Flagger renders it for `canary` (pkg/metrics/observers/render.go with
    MetricTemplateModel's functions, `missingkey=error`): an unknown function is an error."""
    spec = canary["spec"]
    values = {
        "name": canary["metadata"]["name"],
        "namespace": canary["metadata"]["namespace"],
        "target": spec["targetRef"]["name"],
        "service": spec["service"].get("name", spec["targetRef"]["name"]),
        "interval": interval,
    }

    def call(match: re.Match) -> str:
        assert match[1] in values, f"Flagger has no template function {match[1]!r}"
        return values[match[1]]

    return TEMPLATE_CALL.sub(call, query)


def _parsed_selectors(query: str) -> list[dict[str, tuple[str, str]]]:
    parser = pytest.importorskip(
        "promql_parser", reason="promql-parser (requirements-dev.txt) parses PromQL for real"
    )
    found: list = []
    parser.walk(
        parser.parse(query),
        lambda node: found.append(node) if isinstance(node, parser.VectorSelector) else None,
    )
    assert {vector.name for vector in found} <= {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
    }
    assert len({vector.name for vector in found}) == 1
    return [
        {m.name: (str(m.op).rpartition(".")[2], m.value) for m in vector.matchers.matchers}
        for vector in found
    ]


def _success_rate(raw: dict) -> tuple[dict, dict]:
    objects = _model_objects(raw, "sentiment")
    template = objects[("MetricTemplate", "sentiment-request-success-rate")]
    return template, objects[("Canary", "sentiment")]


def test_the_success_rate_template_asks_the_configured_prometheus(progressive):
    template, _ = _success_rate(progressive)
    assert template["apiVersion"] == "flagger.app/v1beta1"
    assert template["metadata"]["namespace"] == "ml-serving"
    # Flagger's own Prometheus for Istio when nothing is set (its chart's metricsServer)
    assert template["spec"]["provider"] == {
        "type": "prometheus",
        "address": "http://prometheus.istio-system:9090",
    }
    raw = with_value(progressive, "telemetry.prometheus.address", "http://prometheus.mon:9090")
    template, _ = _success_rate(raw)
    assert template["spec"]["provider"]["address"] == "http://prometheus.mon:9090"


def test_the_success_rate_query_parses_once_flagger_renders_it(progressive):
    template, canary = _success_rate(progressive)
    metric = canary["spec"]["analysis"]["metrics"][0]
    query = _render(template["spec"]["query"], canary, metric["interval"])
    assert "{{" not in query
    assert len(_parsed_selectors(query)) == 2  # served / every request


def test_the_success_rate_reads_the_same_requests_as_flaggers_built_in(progressive):
    """Only the response codes counted as served differ from Flagger's own query."""
    template, canary = _success_rate(progressive)
    ours = _parsed_selectors(_render(template["spec"]["query"], canary, "1m"))
    theirs = _parsed_selectors(_render(FLAGGER_SUCCESS_RATE, canary, "1m"))
    assert ours[1] == theirs[1]  # the denominator: every request to the canary
    assert {k: v for k, v in ours[0].items() if k != "response_code"} == {
        k: v for k, v in theirs[0].items() if k != "response_code"
    }
    assert ours[1] == {
        "reporter": ("Equal", "destination"),
        "destination_workload_namespace": ("Equal", "ml-serving"),
        "destination_workload": ("Re", "sentiment"),
    }


def _not_served(raw: dict) -> re2._Regexp:
    template, canary = _success_rate(raw)
    served = _parsed_selectors(_render(template["spec"]["query"], canary, "1m"))[0]
    op, pattern = served["response_code"]
    assert op == "NotRe"  # the numerator leaves these out
    return re2.compile(f"^(?:{pattern})$")  # PromQL anchors label regexes


@pytest.mark.parametrize("code", ["403", "401", "404", "0", "500", "503", "504"])
def test_refused_missing_reset_and_5xx_responses_count_as_failures(progressive, code):
    """403 is what our AuthorizationPolicy answers a caller it does not admit: a load test
    refused that way now lowers the success rate instead of passing it."""
    assert _not_served(progressive).match(code)


@pytest.mark.parametrize("code", ["200", "201", "204", "304", "400", "429"])
def test_answers_a_healthy_canary_gives_count_as_served(progressive, code):
    """400 (bad input) and 429 (too many requests) answer the client's request the same way
    from a good version; counting them would roll back on a misbehaving client."""
    assert not _not_served(progressive).match(code)


def test_the_success_rate_counts_the_canary_pods_not_the_primary(progressive):
    template, canary = _success_rate(progressive)
    served = _parsed_selectors(_render(template["spec"]["query"], canary, "1m"))[0]
    workload = re2.compile(f"^(?:{served['destination_workload'][1]})$")
    assert workload.match("sentiment")
    assert not workload.match("sentiment-primary")


def test_step_weights_load_test_timeout_and_retries_reach_the_canary(progressive):
    raw = with_value(
        progressive,
        "models.sentiment.progressive",
        {
            "interval": "30s",
            "stepWeights": [1, 5, 20, 50],
            "minSuccessRate": 99.5,
            "maxLatencyMs": 250,
            "loadTest": {
                "url": "http://flagger-loadtester.test/",
                "cmd": "hey -z 1m -q 10 -c 2 http://sentiment-canary.ml-serving:8501/",
            },
        },
    )
    raw = with_value(raw, "models.sentiment.timeout", "10s")
    raw = with_value(raw, "models.sentiment.retries", {"attempts": 2, "perTryTimeout": "4s"})
    spec = _canary(raw)["spec"]
    assert spec["analysis"]["stepWeights"] == [1, 5, 20, 50]
    assert "stepWeight" not in spec["analysis"] and "maxWeight" not in spec["analysis"]
    assert spec["analysis"]["metrics"][0] == {
        "name": "ml-mesh-request-success-rate",
        "templateRef": SUCCESS_RATE_REF,
        "interval": "30s",
        "thresholdRange": {"min": 99.5},
    }
    assert spec["analysis"]["webhooks"] == [
        {
            "name": "load-test",
            "type": "rollout",
            "url": "http://flagger-loadtester.test/",
            "timeout": "5s",
            "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://sentiment-canary.ml-serving:8501/"},
        }
    ]
    assert (spec["service"]["timeout"], spec["service"]["retries"]) == (
        "10s",
        {"attempts": 2, "perTryTimeout": "4s"},
    )


def test_canary_passes_flaggers_strict_schema(progressive, canary_schema):
    jsonschema.validate(_canary(progressive), canary_schema)
    raw = with_value(
        progressive,
        "models.sentiment.progressive",
        {
            "stepWeights": [10, 30],
            "loadTest": {"url": "http://flagger-loadtester.test/", "cmd": "hey http://x/"},
        },
    )
    raw = with_value(raw, "models.sentiment.retries", {"attempts": 1, "retryOn": "5xx"})
    jsonschema.validate(_canary(raw), canary_schema)


def test_canary_is_a_custom_resource_in_the_model_component_after_its_target(progressive):
    run = run_program(progressive, stack="prod")
    registered = run.resource("Canary", "sentiment")
    assert registered.type == "kubernetes:flagger.app/v1beta1:Canary"
    assert registered.parent_type == MODEL
    # the analysis reads the model's own MetricTemplate: created before, deleted after it
    template = run.resource("MetricTemplate", "sentiment-request-success-rate")
    assert template.type == "kubernetes:flagger.app/v1beta1:MetricTemplate"
    assert template.parent_type == MODEL
    assert {(t.rpartition(":")[2], n) for t, n in registered.depends_on} >= {
        ("Deployment", "sentiment"),
        ("MetricTemplate", "sentiment-request-success-rate"),
    }
    assert run.outputs["models"]["sentiment"]["routing"] == "flagger"
    assert run.outputs["models"]["sentiment"]["traffic"] == {}


def test_traffic_table_shows_flagger_owns_the_split(progressive):
    rows = [r.split() for r in traffic_table(parse_config(progressive, "prod")).splitlines()]
    assert ["sentiment", "tensorflow-serving", "v3", "-", "-"] in rows
    assert ["sentiment", "tensorflow-serving", "v4", "target", "flagger", "2"] in rows


LOADTESTER = "cluster.local/ns/test/sa/default"
LOAD_TEST = {
    "url": "http://flagger-loadtester.test/",
    "cmd": "hey -z 1m -q 10 -c 2 -m POST http://sentiment-canary.ml-serving:8501/v1/models/sentiment:predict",
}


def _with_load_test(raw: dict, **load_test) -> dict:
    return with_value(raw, "models.sentiment.progressive.loadTest", {**LOAD_TEST, **load_test})


def _decision(raw: dict, workload: str, principal: str | None) -> authz.Decision:
    """What the proxy of `workload`'s pods answers to the load test's request, with the
    objects Flagger creates for the Canary (the primary copy, its Services)."""
    objects = Objects(expand(build_plan(parse_config(raw, "prod")).objects()))
    pod = objects.pod(f"ml-serving/{workload}")
    assert pod is not None, workload
    request = authz.AuthzRequest(
        principal=principal,
        namespace=principal.split("/")[2] if principal else None,
        port=8501,
        method="POST",
        path="/v1/models/sentiment:predict",
        host="sentiment-canary.ml-serving:8501",
        headers={},
    )
    return authz.decide(objects, pod, request)


def test_the_loadtester_reaches_the_canary_pods_flagger_analyses(progressive):
    """Without it, prod's policy refuses the whole load test with 403 (which Flagger's
    built-in success rate would count as success)."""
    raw = _with_load_test(progressive)
    decision = _decision(raw, "sentiment", LOADTESTER)
    assert decision.allowed, decision.reason
    assert decision.policy == "ml-serving/sentiment"
    assert not _decision(progressive, "sentiment", LOADTESTER).allowed  # no load test: no entry


def test_the_loadtester_stays_out_of_the_primary_that_serves_live_traffic(progressive):
    raw = _with_load_test(progressive)
    assert not _decision(raw, "sentiment-primary", LOADTESTER).allowed
    # the gateway still reaches both, an unknown caller neither
    gateway = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    for workload in ("sentiment", "sentiment-primary"):
        assert _decision(raw, workload, gateway).allowed
        assert not _decision(raw, workload, "cluster.local/ns/test/sa/other").allowed
        assert not _decision(raw, workload, None).allowed


def test_the_loadtester_principal_uses_the_trust_domain_and_is_listed_once(progressive):
    raw = _with_load_test(progressive, serviceAccount="loadtest/flagger-loadtester")
    raw = with_value(raw, "security.trustDomain", "corp.example")
    raw = with_value(raw, "models.sentiment.callers", ["loadtest/flagger-loadtester"])
    policy = _model_objects(raw, "sentiment")[("AuthorizationPolicy", "sentiment")]
    (rule,) = policy["spec"]["rules"]
    assert rule["from"][0]["source"]["principals"] == [
        # the gateway's principal is in the stack's trust domain too (gateway identity)
        "corp.example/ns/istio-system/sa/istio-ingressgateway-service-account",
        "corp.example/ns/loadtest/sa/flagger-loadtester",
    ]


@pytest.mark.parametrize(
    ("url", "caller"),
    [
        ("http://flagger-loadtester.test/", "test/default"),
        ("http://flagger-loadtester.test:80/", "test/default"),
        ("http://flagger-loadtester.loadtest.svc/", "loadtest/default"),
        ("http://flagger-loadtester.loadtest.svc.cluster.local/", "loadtest/default"),
        ("https://loadtester.qa.svc.corp.internal:8443/", "qa/default"),
    ],
)
def test_the_loadtester_defaults_to_the_default_account_of_the_urls_namespace(
    progressive, url, caller
):
    """The loadtester chart creates no service account unless asked to, so its pods run as
    their namespace's `default`; the namespace is the Service URL's second label."""
    config = parse_config(_with_load_test(progressive, url=url), "prod")
    load_test = config.models["sentiment"].progressive.load_test
    assert load_test.service_account is None
    assert load_test.caller() == caller


def test_an_explicit_loadtester_service_account_wins_over_the_url(progressive):
    raw = _with_load_test(progressive, serviceAccount="test/flagger-loadtester")
    config = parse_config(raw, "prod")
    assert config.models["sentiment"].progressive.load_test.caller() == "test/flagger-loadtester"


MISTAKES = [
    (
        "matches",
        "models.sentiment.matches",
        {"b": {"version": "v4", "headers": {"x-b": {"exact": "1"}}}},
        "models.sentiment.matches",
        "Flagger owns the VirtualService",
    ),
    (
        "mirror",
        "models.sentiment.mirror",
        {"version": "v4", "percent": 5},
        "models.sentiment.mirror",
        "Flagger owns the VirtualService",
    ),
    (
        "canary weight",
        "models.sentiment.canary.weight",
        10,
        "models.sentiment.canary.weight",
        "Flagger sets the weights",
    ),
    (
        "step above max",
        "models.sentiment.progressive.stepWeight",
        40,
        "models.sentiment.progressive.stepWeight",
        "more than maxWeight 30",
    ),
    (
        "steps not increasing",
        "models.sentiment.progressive",
        {"stepWeights": [10, 5]},
        "models.sentiment.progressive.stepWeights",
        "strictly increasing",
    ),
    (
        "both step kinds",
        "models.sentiment.progressive",
        {"stepWeight": 5, "stepWeights": [10]},
        "models.sentiment.progressive.stepWeight",
        "not both",
    ),
    (
        "max weight with step weights",
        "models.sentiment.progressive",
        {"maxWeight": 50, "stepWeights": [10]},
        "models.sentiment.progressive.maxWeight",
        "last step",
    ),
    (
        "load test URL",
        "models.sentiment.progressive.loadTest",
        {"url": "flagger-loadtester", "cmd": "hey"},
        "models.sentiment.progressive.loadTest.url",
        "http(s) URL",
    ),
    (
        "load test URL without a namespace",
        "models.sentiment.progressive.loadTest",
        {"url": "http://flagger-loadtester/", "cmd": "hey"},
        "models.sentiment.progressive.loadTest.serviceAccount",
        "cannot be derived from url 'http://flagger-loadtester/', whose host names no "
        "namespace; set it to the loadtester's <namespace>/<serviceaccount>",
    ),
    (
        "load test URL outside the cluster",
        "models.sentiment.progressive.loadTest",
        {"url": "https://loadtest.example.com/", "cmd": "hey"},
        "models.sentiment.progressive.loadTest.serviceAccount",
        "whose host names no namespace",
    ),
    (
        "loadtester service account without a namespace",
        "models.sentiment.progressive.loadTest",
        {"url": "http://flagger-loadtester.test/", "cmd": "hey", "serviceAccount": "default"},
        "models.sentiment.progressive.loadTest.serviceAccount",
        "<namespace>/<serviceaccount>",
    ),
    (
        "target without replicas",
        "models.sentiment.versions.v4.replicas",
        0,
        "models.sentiment.versions.v4.replicas",
        "is the Flagger target",
    ),
]


@pytest.mark.parametrize(
    ("edit", "value", "path", "hint"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_progressive_mistake_is_refused_naming_its_path(progressive, edit, value, path, hint):
    run, error = try_program(with_value(progressive, edit, value), stack="prod")
    message = str(error)
    assert message.startswith(f"ml-mesh: invalid config for stack 'prod': {path}: "), message
    assert hint in message
    assert run.resources == []


def test_versions_that_are_not_the_target_may_have_no_replicas(progressive):
    raw = with_value(progressive, "models.sentiment.versions.v3.replicas", 0)
    assert try_program(raw, stack="prod")[1] is None


# --- the Flagger provider per routing mode and data plane -----------------------------------

ROUTE_KINDS = {"Service", "VirtualService", "DestinationRule", "HTTPRoute", "GRPCRoute"}


def _in_mode(raw: dict, routing: str, dataplane: str) -> dict:
    """`raw` with the stack-wide routing API and data plane (ambient: Istio 1.24+, no
    native-sidecar setting; prod sets none of the gateway keys gateway-api refuses)."""
    raw = with_value(with_value(raw, "routing", routing), "dataplane", dataplane)
    if dataplane == "ambient":
        raw = with_value(raw, "platform.istioVersion", "1.30")
        raw.get("istio", {}).pop("nativeSidecars", None)
    return raw


# routing, dataplane | Canary provider, analysis latency metric, reporter of both templates
MODES = [
    ("istio", "sidecar", "istio", "request-duration", "destination"),
    ("istio", "ambient", "istio", "ml-mesh-request-duration", "waypoint"),
    ("gateway-api", "sidecar", "gatewayapi:v1", "ml-mesh-request-duration", "destination"),
    ("gateway-api", "ambient", "gatewayapi:v1", "ml-mesh-request-duration", "waypoint"),
]
MODE_IDS = [f"{m[0]}+{m[1]}" for m in MODES]
GATEWAY_API_REFS = [
    # prod has TLS with the redirect: the model attaches to the https listener only
    {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "ml-gateway",
        "namespace": "istio-system",
        "sectionName": "https",
    },
    {"group": "", "kind": "Service", "name": "sentiment"},  # GAMMA: mesh callers of <m>
]


def _objects_in(raw: dict, routing: str, dataplane: str) -> dict[tuple[str, str], dict]:
    return _model_objects(_in_mode(raw, routing, dataplane), "sentiment")


@pytest.mark.parametrize(
    ("routing", "dataplane", "provider", "latency", "reporter"), MODES, ids=MODE_IDS
)
def test_each_mode_hands_flagger_its_provider_and_no_route_of_ours(
    progressive, routing, dataplane, provider, latency, reporter
):
    objects = _objects_in(progressive, routing, dataplane)
    canary = objects[("Canary", "sentiment")]
    spec = canary["spec"]
    assert spec["provider"] == provider
    # Flagger makes the Services and the route (VirtualService or HTTPRoute): never ml-mesh
    assert not {kind for kind, _ in objects} & ROUTE_KINDS
    assert [m["name"] for m in spec["analysis"]["metrics"]] == [
        "ml-mesh-request-success-rate",
        latency,
    ]
    templates = [o for (kind, _), o in objects.items() if kind == "MetricTemplate"]
    assert len(templates) == (1 if latency == "request-duration" else 2)
    for template in templates:
        for matchers in _parsed_selectors(_render(template["spec"]["query"], canary, "1m")):
            assert matchers["reporter"] == ("Equal", reporter)
            assert matchers["destination_workload"] == ("Re", "sentiment")


@pytest.mark.parametrize(
    ("routing", "dataplane", "service"),
    [
        ("istio", "sidecar", {"gateways": ["ml-serving/ml-gateway", "mesh"]}),
        ("gateway-api", "sidecar", {"gatewayRefs": GATEWAY_API_REFS}),
        (
            "gateway-api",
            "ambient",
            {
                "gatewayRefs": GATEWAY_API_REFS,
                # Flagger's Services are the model's: the gateway goes through the waypoint
                "apex": {"labels": {"istio.io/ingress-use-waypoint": "true"}},
                "primary": {"labels": {"istio.io/ingress-use-waypoint": "true"}},
                "canary": {"labels": {"istio.io/ingress-use-waypoint": "true"}},
            },
        ),
    ],
    ids=["istio+sidecar", "gateway-api+sidecar", "gateway-api+ambient"],
)
def test_the_canary_service_names_the_parents_of_its_route(
    progressive, routing, dataplane, service
):
    spec = _objects_in(progressive, routing, dataplane)[("Canary", "sentiment")]["spec"]
    assert spec["service"] == {
        "name": "sentiment",
        "port": 8501,
        "targetPort": "http-rest",
        "portName": "http-rest",
        "appProtocol": "http",
        "portDiscovery": False,
        "hosts": ["sentiment.models.example.com"],
        **service,
    }


@pytest.mark.parametrize(
    ("tls", "sections"),
    [
        (None, ["http"]),
        ({"credentialName": "tls", "httpsRedirect": False}, ["http", "https"]),
        ({"credentialName": "tls"}, ["https"]),  # the redirect route owns http
    ],
)
def test_the_ingress_listeners_a_flagger_route_attaches_to(dev, tls, sections):
    raw = with_value(dev, "models.sentiment.progressive", {})
    raw["models"]["sentiment"]["canary"].pop("weight", None)
    if tls is not None:
        raw = with_value(raw, "gateway.tls", tls)
    spec = _canary(_in_mode(raw, "gateway-api", "sidecar"), "dev")["spec"]
    refs = spec["service"]["gatewayRefs"]
    assert [r.get("sectionName") for r in refs] == [*sections, None]
    assert {r["name"] for r in refs[:-1]} == {"ml-gateway"}


@pytest.mark.parametrize(("routing", "dataplane"), [m[:2] for m in MODES], ids=MODE_IDS)
def test_every_flagger_object_passes_flaggers_strict_schema_in_every_mode(
    progressive, routing, dataplane
):
    raw = _with_load_test(with_value(progressive, "models.sentiment.timeout", "1.5s"))
    for (kind, _), obj in _objects_in(raw, routing, dataplane).items():
        if kind in ("Canary", "MetricTemplate"):
            assert conformance.problems(obj) == [], kind


def test_no_object_of_the_plan_routes_a_flagger_model_in_gateway_api_mode(progressive):
    """Flagger creates and owns the HTTPRoute `<m>`: no component of ours may emit a route of
    that name, nor one parented by or sending to the model's Services."""
    plan = build_plan(parse_config(_in_mode(progressive, "gateway-api", "sidecar"), "prod"))
    services = {"sentiment", "sentiment-primary", "sentiment-canary", "sentiment-v3"}
    for obj in plan.objects():
        if obj["kind"] not in ("HTTPRoute", "GRPCRoute", "VirtualService"):
            continue
        assert obj["metadata"]["name"] != "sentiment", obj["kind"]
        spec = obj["spec"]
        parents = {p["name"] for p in spec.get("parentRefs", []) if p.get("kind") == "Service"}
        backends = {b["name"] for r in spec.get("rules", []) for b in r.get("backendRefs", [])}
        assert not (parents | backends) & services, obj["metadata"]["name"]


@pytest.mark.parametrize("attempts", [1, 0])
def test_retries_are_refused_where_flaggers_http_route_cannot_carry_them(progressive, attempts):
    raw = with_value(progressive, "models.sentiment.retries", {"attempts": attempts})
    run, error = try_program(_in_mode(raw, "gateway-api", "sidecar"), stack="prod")
    message = str(error)
    assert message.startswith(
        "ml-mesh: invalid config for stack 'prod': models.sentiment.retries: routing is "
        "gateway-api and Flagger owns this model's HTTPRoute"
    ), message
    assert "remove models.sentiment.retries" in message
    assert run.resources == []
    assert try_program(raw, stack="prod")[1] is None  # the Istio router copies them


@pytest.mark.parametrize(
    ("timeout", "written"),
    [("10s", "10s"), ("1.5s", "1s500ms"), ("90s", "1m30s"), ("0.5m", "30s"), ("2h0m1ms", "2h1ms")],
)
def test_the_timeout_flagger_copies_into_its_http_route_is_a_gateway_api_duration(
    progressive, timeout, written
):
    raw = with_value(progressive, "models.sentiment.timeout", timeout)
    service = _canary(_in_mode(raw, "gateway-api", "sidecar"))["spec"]["service"]
    assert service["timeout"] == written
    assert re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", written)  # HTTPRoute's own pattern
    assert _canary(raw)["spec"]["service"]["timeout"] == timeout  # Istio keeps Go's form


def _flagger_made(raw: dict) -> Objects:
    return Objects(expand(build_plan(parse_config(raw, "prod")).objects()))


def _http_route_problems(route: dict) -> list[str]:
    """The HTTPRoute against Gateway API v1.6.1's standard-channel strict schema and its CEL
    rules (what the API server answers Flagger's create)."""
    shared_path("gateway-api")  # skips with the reason when ../shared is absent
    return conformance.problems(route, gateway_api_channel="standard")


def test_the_trace_models_the_http_route_flaggers_gateway_api_router_creates(progressive):
    raw = with_value(progressive, "models.sentiment.timeout", "1.5s")
    made = expand(
        build_plan(parse_config(_in_mode(raw, "gateway-api", "sidecar"), "prod")).objects()
    )
    mine = {
        (o["kind"], o["metadata"]["name"]) for o in made if "sentiment" in o["metadata"]["name"]
    }
    assert {
        ("Deployment", "sentiment-primary"),
        ("Service", "sentiment"),
        ("Service", "sentiment-primary"),
        ("Service", "sentiment-canary"),
        ("HTTPRoute", "sentiment"),
    } <= mine
    assert not {kind for kind, _ in mine} & {"VirtualService", "DestinationRule"}
    (route,) = [o for o in made if (o["kind"], o["metadata"]["name"]) == ("HTTPRoute", "sentiment")]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    # as the Canary is stored: with its CRD's defaults, which Flagger copies
    gateway = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
    assert route["spec"]["parentRefs"] == [{**gateway, **GATEWAY_API_REFS[0]}, GATEWAY_API_REFS[1]]
    assert route["spec"]["hostnames"] == ["sentiment.models.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["timeouts"] == {"request": "1s500ms"}
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("sentiment-primary", 8501, 95),  # the first analysis step: stepWeight 5
        ("sentiment-canary", 8501, 5),
    ]
    assert _http_route_problems(route) == []


def test_the_http_route_model_is_checked_against_the_gateway_api_rules(progressive):
    """The validation above can fail: a Service backend without a port is a CEL error."""
    made = expand(
        build_plan(parse_config(_in_mode(progressive, "gateway-api", "sidecar"), "prod")).objects()
    )
    (route,) = [o for o in made if (o["kind"], o["metadata"]["name"]) == ("HTTPRoute", "sentiment")]
    del route["spec"]["rules"][0]["backendRefs"][0]["port"]
    assert any("Must have port for Service reference" in p for p in _http_route_problems(route))


@pytest.mark.parametrize("dataplane", ["sidecar", "ambient"])
def test_the_templates_count_the_pods_behind_the_canary_backend_of_flaggers_route(
    progressive, dataplane
):
    """The queries scope by workload: the pods `<m>-canary` (the HTTPRoute's canary backend)
    selects are the target's, named by `{{ target }}`; `<m>-primary`'s are not."""
    raw = _in_mode(progressive, "gateway-api", dataplane)
    objects = _flagger_made(raw)
    template, canary = _success_rate(raw)
    served = _parsed_selectors(_render(template["spec"]["query"], canary, "1m"))[0]
    workload = re2.compile(f"^(?:{served['destination_workload'][1]})$")
    for service, counted in (("sentiment-canary", True), ("sentiment-primary", False)):
        (svc,) = [s for s in objects.by_kind["Service"] if s["metadata"]["name"] == service]
        pods = objects.endpoints(svc)
        assert pods, service
        assert all(bool(workload.match(p.workload.rpartition("/")[2])) == counted for p in pods)
        labels = svc["metadata"]["labels"]
        assert (labels.get("istio.io/ingress-use-waypoint") == "true") == (dataplane == "ambient")
