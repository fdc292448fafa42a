"""Istio Telemetry of the serving namespace, the opt-in PrometheusRule, metrics merging for
model servers, and the telemetry config they come from."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from mesh.alerts import CANARY_ERRORS, NO_READY_PODS, alert_objects
from mesh.config import ConfigError, dotted_path, parse_config
from mesh.plan import build_plan
from mesh.promql import promql_report
from mesh.trace import Objects, proxy_cluster
from tests.conftest import (
    STACKS,
    of_kind,
    plan_objects,
    shared_path,
    stack_raw,
    with_value,
    without,
)

# PrometheusRule fields as the Prometheus Operator CRD (monitoring.coreos.com/v1) defines them.
RULE_GROUP_KEYS = {"name", "rules", "interval", "labels", "limit", "query_offset"}
ALERT_RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
CRD_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


def _kind(raw: dict, kind: str, stack: str = "dev") -> list[dict]:
    return of_kind(plan_objects(raw, stack), kind)


def _telemetry(raw: dict, stack: str = "dev") -> dict:
    (found,) = _kind(raw, "Telemetry", stack)
    return found


def _rules(raw: dict, stack: str = "prod") -> dict[tuple[str, str], dict]:
    """(alert, version) -> rule, over every group of the one PrometheusRule ("" for rules of
    a whole model)."""
    (rule,) = _kind(raw, "PrometheusRule", stack)
    return {
        (r["alert"], r["labels"].get("version", "")): r
        for group in rule["spec"]["groups"]
        for r in group["rules"]
    }


@pytest.mark.parametrize("stack", STACKS)
def test_telemetry_matches_the_istio_schema(stack):
    telemetry = _telemetry(stack_raw(stack), stack)
    group, version = telemetry["apiVersion"].split("/")
    schema = json.loads(
        shared_path("istio", "schemas-strict", group, version, "Telemetry.json").read_text()
    )
    jsonschema.Draft7Validator(schema).validate(telemetry)


def test_older_meshes_get_a_telemetry_version_they_serve(dev):
    telemetry = _telemetry(with_value(dev, "istio.apiVersion", "v1alpha3"))
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1alpha1"
    schema = json.loads(
        shared_path(
            "istio", "schemas-strict", "telemetry.istio.io", "v1alpha1", "Telemetry.json"
        ).read_text()
    )
    jsonschema.Draft7Validator(schema).validate(telemetry)


def test_namespace_logs_every_request_and_samples_traces_per_stack(dev, prod):
    for raw, stack, sampling in ((dev, "dev", 100), (prod, "prod", 1)):
        telemetry = _telemetry(raw, stack)
        assert telemetry["metadata"]["namespace"] == "ml-serving"
        assert "selector" not in telemetry["spec"]  # the whole namespace
        assert telemetry["spec"]["accessLogging"] == [{"providers": [{"name": "envoy"}]}]
        assert telemetry["spec"]["tracing"] == [{"randomSamplingPercentage": sampling}]


def test_providers_are_configurable(dev):
    raw = with_value(dev, "telemetry.accessLogging", {"provider": "otel-als"})
    raw = with_value(raw, "telemetry.tracing", {"samplingPercentage": 5.5, "provider": "zipkin"})
    spec = _telemetry(raw)["spec"]
    assert spec["accessLogging"] == [{"providers": [{"name": "otel-als"}]}]
    assert spec["tracing"] == [{"randomSamplingPercentage": 5.5, "providers": [{"name": "zipkin"}]}]


OTEL = {"host": "opentelemetry-collector.observability.svc.cluster.local", "port": 4318}
ALS = {"host": "otel-als.logging.svc.cluster.local", "port": 4317}


def _egress_hosts(raw: dict, stack: str = "prod") -> list[str]:
    (sidecar,) = _kind(raw, "Sidecar", stack)
    return sidecar["spec"]["egress"][0]["hosts"]


def test_the_sidecar_imports_the_configured_collectors(prod):
    raw = with_value(prod, "telemetry.tracing.provider", "otel-tracing")
    raw = with_value(raw, "telemetry.tracing.collector", OTEL)
    raw = with_value(raw, "telemetry.accessLogging.provider", "otel-als")
    raw = with_value(raw, "telemetry.accessLogging.collector", ALS)
    hosts = _egress_hosts(raw)
    assert "observability/opentelemetry-collector.observability.svc.cluster.local" in hosts
    assert "logging/otel-als.logging.svc.cluster.local" in hosts
    objects = Objects(plan_objects(raw, "prod"))
    pod = objects.pod("ml-serving/sentiment-v3")
    assert proxy_cluster(objects, pod, OTEL["host"], OTEL["port"]).outcome.verdict == "egress"
    assert proxy_cluster(objects, pod, ALS["host"], ALS["port"]).outcome.verdict == "egress"


def test_a_collector_of_the_mesh_default_tracer_is_imported_too(prod):
    """provider unset: the mesh default tracer, whose Service may still live outside
    istio-system."""
    hosts = _egress_hosts(with_value(prod, "telemetry.tracing.collector", OTEL))
    assert hosts.count("observability/opentelemetry-collector.observability.svc.cluster.local") == 1


def test_collectors_in_namespaces_imported_whole_add_no_host(prod):
    raw = with_value(
        prod,
        "telemetry.tracing.collector",
        {"host": "zipkin.istio-system.svc.cluster.local", "port": 9411},
    )
    assert _egress_hosts(raw) == _egress_hosts(prod)


@pytest.mark.parametrize(
    ("section", "provider", "what"),
    [("tracing", "otel-tracing", "span"), ("accessLogging", "otel-als", "log entry")],
)
def test_a_provider_without_its_collector_is_refused_under_restricted_egress(
    prod, section, provider, what
):
    raw = with_value(prod, f"telemetry.{section}.provider", provider)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "prod")
    message = str(caught.value)
    assert f"'prod': telemetry.{section}.collector: egress is restricted" in message
    assert f"drop every {what} (istio/istio#53701)" in message
    # What the refusal prevents: the proxy would have no cluster for the provider.
    objects = Objects(plan_objects(with_value(prod, "security.restrictEgress", True), "prod"))
    pod = objects.pod("ml-serving/sentiment-v3")
    assert proxy_cluster(objects, pod, OTEL["host"], OTEL["port"]).outcome.verdict == "no-cluster"


def test_providers_need_no_collector_without_restricted_egress(dev):
    raw = with_value(dev, "telemetry.tracing.provider", "otel-tracing")
    parse_config(with_value(raw, "telemetry.accessLogging.provider", "otel-als"), "dev")


def test_a_collector_must_be_a_kubernetes_service(dev):
    raw = with_value(dev, "telemetry.tracing.collector", {"host": "otel.example.com", "port": 4318})
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "dev")
    assert "telemetry.tracing.collector.host: " in str(caught.value)
    assert "<service>.<namespace>.svc.cluster.local" in str(caught.value)


def test_access_logging_can_be_turned_off_for_the_namespace(dev):
    raw = with_value(dev, "telemetry.accessLogging", {"enabled": False})
    (logging,) = _telemetry(raw)["spec"]["accessLogging"]
    assert logging == {"providers": [{"name": "envoy"}], "disabled": True}


def test_alerts_are_opt_in(dev):
    assert _kind(dev, "PrometheusRule") == []
    (rule,) = _kind(with_value(dev, "telemetry.alerts.enabled", True), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "ml-serving"


def test_prometheus_rule_has_only_fields_the_operator_crd_defines(prod):
    (rule,) = _kind(prod, "PrometheusRule", "prod")
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names))  # the CRD keys groups by name
    for group in rule["spec"]["groups"]:
        assert set(group) <= RULE_GROUP_KEYS and group["rules"]
        for alert in group["rules"]:
            assert set(alert) <= ALERT_RULE_KEYS
            assert CRD_DURATION.match(alert["for"])
            assert isinstance(alert["expr"], str)
            assert all(isinstance(v, str) for v in alert["labels"].values())
            assert all(isinstance(v, str) for v in alert["annotations"].values())


def test_rule_carries_the_labels_the_prometheus_rule_selector_wants(prod):
    (rule,) = _kind(prod, "PrometheusRule", "prod")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_canary_failing_more_than_stable_alerts_after_the_configured_time(prod):
    raw = with_value(prod, "telemetry.alerts.errorRatioMargin", 2.5)
    raw = with_value(raw, "telemetry.alerts.errorRatioFor", "15m")
    rule = _rules(raw)[(CANARY_ERRORS, "v4")]
    assert rule["expr"].endswith(")\n> 0.025")
    assert 'destination_version="v4"' in rule["expr"]
    assert 'destination_version="v3"' in rule["expr"]
    # canary first: the expression is canary minus stable
    assert rule["expr"].index('"v4"') < rule["expr"].index('"v3"')
    assert rule["for"] == "15m"
    assert rule["labels"] == {
        "severity": "warning",
        "namespace": "ml-serving",
        "model": "sentiment",
        "version": "v4",
        "stable": "v3",
    }


@pytest.mark.parametrize(
    ("canary", "compared", "without_ready_pods"),
    [
        ({"version": "v4", "weight": 5}, True, {"v3", "v4"}),
        # the canary idle at 0, or stable idle at 100: the same rules, which have no sample
        # for the version sent nothing (tests/test_promtool.py), so they do not fire
        ({"version": "v4", "weight": 0}, True, {"v3", "v4"}),
        ({"version": "v4", "weight": 100}, True, {"v3", "v4"}),
        (None, False, {"v3", "v4"}),  # v4 deployed without a role: its pods are still watched
    ],
)
def test_rules_follow_roles_and_versions_never_weights(prod, canary, compared, without_ready_pods):
    raw = with_value(prod, "models.sentiment.canary", canary)
    if canary is None:
        del raw["models"]["sentiment"]["canary"]
    rules = _rules(raw)
    sentiment = {k for k in rules if rules[k]["labels"]["model"] == "sentiment"}
    assert ((CANARY_ERRORS, "v4") in sentiment) is compared
    assert {v for alert, v in sentiment if alert == NO_READY_PODS} == without_ready_pods


@pytest.mark.parametrize("weight", [0, 1, 30, 99, 100])
def test_the_prometheus_rule_is_the_same_at_every_weight(prod, weight):
    (shifted,) = _kind(with_value(prod, "models.sentiment.canary.weight", weight), "PrometheusRule")
    (committed,) = _kind(prod, "PrometheusRule", "prod")
    assert shifted == committed


def test_version_without_ready_pods_is_read_from_kube_state_metrics(prod):
    """No available pod while it should have some (desired > 0: not scaled to 0 on purpose),
    and only while callers' requests to the model fail for want of a pod (UH): a version sent
    nothing does not alert, whatever its pods do."""
    rule = _rules(prod)[(NO_READY_PODS, "v7")]
    deployment = 'namespace="ml-serving",deployment="fraud-v7"'
    assert rule["expr"] == (
        "(\n"
        f"  kube_deployment_status_replicas_available{{{deployment}}} < 1\n"
        "  and on (namespace, deployment)\n"
        f"  kube_deployment_spec_replicas{{{deployment}}} > 0\n"
        ")\n"
        "and on ()\n"
        'sum(rate(istio_requests_total{reporter="source",'
        'destination_service="fraud.ml-serving.svc.cluster.local",destination_workload="unknown",'
        'response_code=~"5.."}[5m]) or rate(istio_requests_total{reporter="source",'
        'destination_service="fraud.ml-serving.svc.cluster.local",destination_workload="unknown",'
        'grpc_response_status!~"0|"}[5m])) > 0'
    )
    assert rule["labels"]["severity"] == "critical"
    deployments = {d["metadata"]["name"] for d in _kind(prod, "Deployment", "prod")}
    assert "fraud-v7" in deployments


def test_triton_metrics_are_merged_into_the_sidecars_scrape(prod):
    deployments = {d["metadata"]["name"]: d for d in _kind(prod, "Deployment", "prod")}
    triton = deployments["fraud-v7"]["spec"]["template"]
    annotations = triton["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8002"
    assert annotations["prometheus.io/path"] == "/metrics"
    (server,) = triton["spec"]["containers"]
    assert {"name": "http-metrics", "containerPort": 8002, "protocol": "TCP"} in server["ports"]
    assert "--metrics-port=8002" in server["args"]
    tf_serving = deployments["sentiment-v3"]["spec"]["template"]["metadata"]["annotations"]
    assert not any(key.startswith("prometheus.io/") for key in tf_serving)


# (what a user got wrong, the edit, the path the message must name, a phrase of the fix)
MISTAKES = [
    ("sampling above 100", "telemetry.tracing.samplingPercentage", 150, "less than or equal"),
    ("sampling as text", "telemetry.tracing.samplingPercentage", "all", "number"),
    ("provider with a space", "telemetry.accessLogging.provider", "my logs", "provider name"),
    ("duration in words", "telemetry.alerts.errorRatioFor", "10 minutes", "Prometheus duration"),
    ("empty duration", "telemetry.alerts.noReadyPodsFor", "", "Prometheus duration"),
    ("margin of zero", "telemetry.alerts.errorRatioMargin", 0, "greater than 0"),
    ("rule label key", "telemetry.alerts.labels", {"bad key": "x"}, "label key"),
    ("rule label value", "telemetry.alerts.labels", {"release": "a b"}, "label value"),
    ("dashboard namespace", "telemetry.dashboard.namespace", "Monitoring", "DNS-1123"),
    ("typo in a key", "telemetry.tracing.sampling", 10, "valid keys here: samplingPercentage"),
]


@pytest.mark.parametrize(
    ("path", "value", "hint"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_telemetry_mistake_names_its_path(dev, path, value, hint):
    with pytest.raises(ConfigError) as caught:
        parse_config(with_value(dev, path, value), "dev")
    message = str(caught.value)
    assert message.startswith("ml-mesh: invalid config for stack 'dev': telemetry.")
    assert hint in message
    key = next(iter(value)) if isinstance(value, dict) else None  # a bad key of a map
    where = dotted_path((*path.split("."), key)) if key is not None else path
    assert f"'dev': {where}: " in message


def test_models_rolled_out_by_flagger_get_no_alerts_promql_or_dashboard(prod):
    raw = with_value(without(prod, "models.sentiment.canary"), "models.sentiment.progressive", {})
    config = parse_config(raw, "prod")
    (rule,) = alert_objects(config)
    assert [g["name"] for g in rule["spec"]["groups"]] == ["ml-mesh.ml-serving.fraud"]
    report = promql_report("prod", config)
    assert "## sentiment: rolled out by Flagger" in report
    assert 'destination_app="sentiment"' not in report
    boards = [
        o["metadata"]["name"] for o in build_plan(config).objects() if o["kind"] == "ConfigMap"
    ]
    assert boards == ["ml-mesh-dashboard.ml-serving.fraud"]
