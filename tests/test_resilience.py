"""Resilience: circuit breaking and load balancing on the DestinationRule, fault injection on the
VirtualService, and autoscaling, disruption budgets, spreading and GPU placement of the pods."""

from __future__ import annotations

import pytest

from mesh.config import ConfigError, parse_config
from mesh.resilience import PROTECTED_CONNECTION_POOL, PROTECTED_OUTLIER_DETECTION
from tests.conftest import of_kind, one, plan_objects, with_value
from tests.harness import run_program


def _refusal(raw: dict, stack: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, stack)
    return str(caught.value)


def _policy(raw: dict, stack: str, name: str = "sentiment") -> dict | None:
    rule = one(plan_objects(raw, stack), "DestinationRule", name)
    return rule["spec"].get("trafficPolicy")


# --- circuit breaking ---------------------------------------------------------------------------


def test_prod_models_get_circuit_breaking_by_default(prod):
    for name in ("sentiment", "fraud"):
        policy = _policy(prod, "prod", name)
        assert policy["connectionPool"] == PROTECTED_CONNECTION_POOL
        assert policy["outlierDetection"] == PROTECTED_OUTLIER_DETECTION
        assert policy["outlierDetection"]["maxEjectionPercent"] <= 50
        assert "loadBalancer" not in policy  # Istio's default (LEAST_REQUEST) stays


def test_a_models_traffic_policy_replaces_the_defaults_section_by_section(prod):
    raw = with_value(
        prod,
        "models.sentiment.trafficPolicy",
        {
            "connectionPool": {
                "tcp": {"maxConnections": 100, "connectTimeout": "2s"},
                "http": {"http2MaxRequests": 200, "idleTimeout": "1m30s"},
            },
            "loadBalancer": {"simple": "ROUND_ROBIN"},
        },
    )
    policy = _policy(raw, "prod")
    assert policy["connectionPool"] == {
        "tcp": {"maxConnections": 100, "connectTimeout": "2s"},
        "http": {"http2MaxRequests": 200, "idleTimeout": "1m30s"},
    }
    assert policy["outlierDetection"] == PROTECTED_OUTLIER_DETECTION
    assert policy["loadBalancer"] == {"simple": "ROUND_ROBIN"}
    assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}
    assert _policy(raw, "prod", "fraud")["connectionPool"] == PROTECTED_CONNECTION_POOL


def test_circuit_breaking_is_one_setting_away_in_dev(dev):
    assert _policy(dev, "dev") is None
    raw = with_value(
        dev, "models.sentiment.trafficPolicy.outlierDetection", {"consecutive5xxErrors": 3}
    )
    assert _policy(raw, "dev") == {"outlierDetection": {"consecutive5xxErrors": 3}}


BAD_POLICIES = [
    ("empty policy (rule 31)", {}, "trafficPolicy must set at least one of"),
    ("empty pool (rule 32)", {"connectionPool": {}}, "connectionPool must set at least one"),
    (
        "percent above 100 (rule 33)",
        {"outlierDetection": {"maxEjectionPercent": 150}},
        "less than or equal to 100",
    ),
    ("zero duration (rule 5)", {"outlierDetection": {"interval": "0s"}}, "at least 1ms"),
    (
        "sub-millisecond (rule 5)",
        {"connectionPool": {"tcp": {"connectTimeout": "1500us"}}},
        "a whole number of milliseconds",
    ),
    (
        "fraction of a ms (rule 5)",
        {"outlierDetection": {"interval": "1.5ms"}},
        "a whole number of milliseconds",
    ),
    ("no unit", {"outlierDetection": {"baseEjectionTime": "30"}}, "not a duration"),
    (
        "zero limit",
        {"connectionPool": {"http": {"http2MaxRequests": 0}}},
        "greater than or equal to 1",
    ),
    ("unknown balancer", {"loadBalancer": {"simple": "FASTEST"}}, "'LEAST_REQUEST'"),
    ("typo", {"outlierDetection": {"consecutive5XXErrors": 3}}, "unknown setting"),
]


@pytest.mark.parametrize(
    ("policy", "hint"), [b[1:] for b in BAD_POLICIES], ids=[b[0] for b in BAD_POLICIES]
)
def test_invalid_traffic_policies_are_refused_naming_the_path(dev, policy, hint):
    message = _refusal(with_value(dev, "models.sentiment.trafficPolicy", policy), "dev")
    assert "'dev': models.sentiment.trafficPolicy" in message
    assert hint in message


@pytest.mark.parametrize("duration", ["250ms", "10s", "1m30s", "2h", "1.5s"])
def test_go_durations_istio_accepts_are_accepted(dev, duration):
    raw = with_value(dev, "models.sentiment.trafficPolicy.outlierDetection", {"interval": duration})
    assert _policy(raw, "dev")["outlierDetection"]["interval"] == duration


# --- fault injection ----------------------------------------------------------------------------

FAULT = {
    "delay": {"fixedDelay": "2s", "percent": 10},
    "abort": {"httpStatus": 503, "percent": 0.5},
}


def test_fault_goes_on_every_route_of_the_model_in_dev(dev):
    vs = one(
        plan_objects(with_value(dev, "models.sentiment.fault", FAULT), "dev"),
        "VirtualService",
        "sentiment",
    )
    assert len(vs["spec"]["http"]) == 2  # the gRPC port route and the REST route
    for route in vs["spec"]["http"]:
        assert route["fault"] == {
            "delay": {"fixedDelay": "2s", "percentage": {"value": 10.0}},
            "abort": {"httpStatus": 503, "percentage": {"value": 0.5}},
        }
        assert "route" in route  # rule 17: a fault only on a `route`, never a redirect


def test_without_fault_routes_carry_none(dev):
    vs = one(plan_objects(dev, "dev"), "VirtualService", "sentiment")
    assert all("fault" not in route for route in vs["spec"]["http"])


BAD_FAULTS = [
    ("neither delay nor abort (rule 22)", {}, "fault must set at least one of"),
    ("percent 0", {"abort": {"httpStatus": 503, "percent": 0}}, "greater than or equal to 0.0001"),
    ("percent above 100", {"delay": {"fixedDelay": "1s", "percent": 101}}, "less than or equal"),
    (
        "status out of range",
        {"abort": {"httpStatus": 700, "percent": 1}},
        "less than or equal to 599",
    ),
    ("delay without duration", {"delay": {"percent": 5}}, "fixedDelay: is required"),
]


@pytest.mark.parametrize(
    ("fault", "hint"), [b[1:] for b in BAD_FAULTS], ids=[b[0] for b in BAD_FAULTS]
)
def test_invalid_faults_are_refused(dev, fault, hint):
    message = _refusal(with_value(dev, "models.sentiment.fault", fault), "dev")
    assert "'dev': models.sentiment.fault" in message
    assert hint in message


# --- autoscaling --------------------------------------------------------------------------------


def test_prod_sentiment_versions_scale_with_an_hpa_each(prod):
    objects = plan_objects(prod, "prod")
    for version, minimum in (("v3", 4), ("v4", 2)):
        hpa = one(objects, "HorizontalPodAutoscaler", f"sentiment-{version}")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"] == {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"sentiment-{version}",
            },
            "minReplicas": minimum,
            "maxReplicas": 12,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        }


def test_a_deployment_an_hpa_owns_has_no_replicas(prod):
    objects = plan_objects(prod, "prod")
    for version in ("v3", "v4"):
        assert "replicas" not in one(objects, "Deployment", f"sentiment-{version}")["spec"]
    # fraud has no autoscaling: a fixed count, no HPA
    assert one(objects, "Deployment", "fraud-v7")["spec"]["replicas"] == 3
    assert [h["metadata"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")] == [
        "sentiment-v3",
        "sentiment-v4",
    ]


def test_changing_the_minimum_touches_only_the_hpa_never_the_deployment(prod):
    """No `replicas` drift: `pulumi up` after a scale-out must not reset the Deployment."""
    before = {(r.type, r.name): r.inputs for r in run_program(prod, stack="prod").resources}
    raised = with_value(prod, "models.sentiment.versions.v3.replicas", 6)
    after = {(r.type, r.name): r.inputs for r in run_program(raised, stack="prod").resources}
    changed = [key for key in before if before[key] != after[key]]
    assert changed == [("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "sentiment-v3")]


def test_autoscaling_is_one_setting_away_in_dev_and_can_use_a_custom_metric(dev):
    raw = with_value(dev, "models.sentiment.autoscaling", {"maxReplicas": 4})
    hpa = one(plan_objects(raw, "dev"), "HorizontalPodAutoscaler", "sentiment-v1")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    raw = with_value(
        raw,
        "models.sentiment.autoscaling.metric",
        {"name": "tensorflow_serving_request_count_per_second", "averageValue": "20"},
    )
    hpa = one(plan_objects(raw, "dev"), "HorizontalPodAutoscaler", "sentiment-v1")
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "tensorflow_serving_request_count_per_second"},
                "target": {"type": "AverageValue", "averageValue": "20"},
            },
        }
    ]


def test_a_parked_version_has_no_pods_no_hpa_and_no_budget(dev):
    raw = with_value(dev, "models.sentiment.autoscaling", {"maxReplicas": 4})
    raw = with_value(raw, "models.sentiment.canary.weight", 0)
    raw = with_value(raw, "models.sentiment.versions.v2.replicas", 0)
    objects = plan_objects(raw, "dev")
    assert one(objects, "Deployment", "sentiment-v2")["spec"]["replicas"] == 0
    names = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")
    }
    assert names == {"sentiment-v1"}


def test_replicas_above_the_autoscaling_maximum_are_refused(prod):
    raw = with_value(prod, "models.sentiment.versions.v3.replicas", 20)
    message = _refusal(raw, "prod")
    assert (
        "models.sentiment.versions.v3.replicas: 20 is above autoscaling.maxReplicas (12)" in message
    )


# --- disruption budgets, spreading, GPUs ----------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_running_version_has_a_disruption_budget_of_one_pod(stack, dev, prod):
    objects = plan_objects(dev if stack == "dev" else prod, stack)
    deployments = of_kind(objects, "Deployment")
    budgets = {b["metadata"]["name"]: b for b in of_kind(objects, "PodDisruptionBudget")}
    assert sorted(budgets) == sorted(d["metadata"]["name"] for d in deployments)
    for deployment in deployments:
        budget = budgets[deployment["metadata"]["name"]]
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pods_spread_over_zones_then_nodes(prod):
    deployment = one(plan_objects(prod, "prod"), "Deployment", "sentiment-v3")
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    for constraint in constraints:
        assert constraint["labelSelector"] == deployment["spec"]["selector"]
        assert constraint["maxSkew"] == 1
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_gpu_pods_go_to_gpu_nodes_and_others_do_not(prod):
    """prod's GPU nodes run the device plugin only (platform.gpuNodes): no label to select,
    the nvidia.com/gpu request places the pod; the tolerations stay (tests/test_platform.py
    has the other gpuNodes)."""
    objects = plan_objects(prod, "prod")
    fraud = one(objects, "Deployment", "fraud-v7")["spec"]["template"]["spec"]
    assert "nodeSelector" not in fraud
    assert fraud["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert fraud["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    sentiment = one(objects, "Deployment", "sentiment-v3")["spec"]["template"]["spec"]
    assert "nodeSelector" not in sentiment and "tolerations" not in sentiment


def test_gpu_placement_is_configurable(prod):
    raw = with_value(
        with_value(prod, "platform.gpuNodes", "custom"),
        "scheduling.gpu",
        {
            "nodeSelector": {"karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
            ],
        },
    )
    fraud = one(plan_objects(raw, "prod"), "Deployment", "fraud-v7")["spec"]["template"]["spec"]
    assert fraud["nodeSelector"] == {"karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia"}
    assert fraud["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ]
    raw = with_value(prod, "scheduling.gpu", {"tolerations": []})
    fraud = one(plan_objects(raw, "prod"), "Deployment", "fraud-v7")["spec"]["template"]["spec"]
    assert "nodeSelector" not in fraud and "tolerations" not in fraud


def test_toleration_values_must_match_the_operator(prod):
    raw = with_value(prod, "scheduling.gpu.tolerations", [{"key": "gpu", "operator": "Equal"}])
    assert "scheduling.gpu.tolerations[0].value: is required with operator Equal" in _refusal(
        raw, "prod"
    )
