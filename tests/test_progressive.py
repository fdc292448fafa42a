"""Progressive delivery: a model handed to Flagger gets a target Deployment and a Canary, and
none of the objects Flagger creates and owns itself."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mesh.config import parse_config
from mesh.plan import MODEL, build_plan
from mesh.render import traffic_table
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


def test_canary_analysis_checks_success_rate_and_latency(progressive):
    analysis = _canary(progressive)["spec"]["analysis"]
    assert analysis == {
        "interval": "1m",
        "threshold": 5,
        "maxWeight": 30,
        "stepWeight": 5,
        "metrics": [
            {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "interval": "1m", "thresholdRange": {"max": 500}},
        ],
    }


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
        "name": "request-success-rate",
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
    assert run.outputs["models"]["sentiment"]["routing"] == "flagger"
    assert run.outputs["models"]["sentiment"]["traffic"] == {}


def test_traffic_table_shows_flagger_owns_the_split(progressive):
    rows = [r.split() for r in traffic_table(parse_config(progressive, "prod")).splitlines()]
    assert ["sentiment", "tensorflow-serving", "v3", "-", "-"] in rows
    assert ["sentiment", "tensorflow-serving", "v4", "target", "flagger", "2"] in rows


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
