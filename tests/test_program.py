"""The Pulumi program under mocks: what `pulumi up` would register, and how edits change it."""

from __future__ import annotations

import pytest

from mesh.plan import EGRESS, INGRESS, MODEL, SECURITY, TELEMETRY, build_plan
from mesh.render import render_objects
from mesh.stackfile import load_stack
from tests.conftest import PROJECT_DIR, STACKS, stack_raw, with_value
from tests.harness import CHART_TYPE, run_program

SERVING_KINDS = {
    "ServiceAccount",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "DestinationRule",
    "VirtualService",
}
# Only in protected stacks by default (prod): mesh security, and autoscaling where configured.
PROTECTED_MODEL_KINDS = {"AuthorizationPolicy", "NetworkPolicy", "HorizontalPodAutoscaler"}
SECURITY_KINDS = {"PeerAuthentication", "Sidecar"}
MODEL_KINDS = SERVING_KINDS | PROTECTED_MODEL_KINDS | {"ConfigMap"}  # + the model's dashboard
TELEMETRY_KINDS = {"Telemetry", "PrometheusRule"}
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def _key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@pytest.fixture(scope="module", params=STACKS)
def stack_run(request):
    return request.param, run_program(stack_raw(request.param), stack=request.param)


def test_stack_registers_every_expected_kind(stack_run):
    stack, run = stack_run
    kinds = {o["kind"] for o in run.objects()}
    config = load_stack(stack).config
    expected = SERVING_KINDS | {"Namespace", "Gateway", "ServiceEntry", "Telemetry", "ConfigMap"}
    if config.telemetry.alerts.enabled:
        expected.add("PrometheusRule")
    if stack == "prod":
        expected |= PROTECTED_MODEL_KINDS | SECURITY_KINDS
    assert kinds == expected
    deployments = {o["metadata"]["name"] for o in run.of_kind("Deployment")}
    assert deployments == {f"{m}-{v}" for m, model in config.models.items() for v in model.versions}
    dashboards = {o["metadata"]["labels"]["app"] for o in run.of_kind("ConfigMap")}
    assert dashboards == set(config.models)


def test_each_model_is_one_component_holding_its_resources(stack_run):
    stack, run = stack_run
    config = load_stack(stack).config
    models = [r for r in run.resources if r.type == MODEL]
    assert sorted(r.name for r in models) == sorted(config.models)
    for registered in run.kubernetes:
        kind = registered.inputs["kind"]
        if kind in MODEL_KINDS:
            assert registered.parent_type == MODEL
        elif kind in SECURITY_KINDS:
            assert registered.parent_type == SECURITY
        elif kind == "Gateway":
            assert registered.parent_type == INGRESS
        elif kind == "ServiceEntry":
            assert registered.parent_type == EGRESS
        elif kind in TELEMETRY_KINDS:
            assert registered.parent_type == TELEMETRY
        else:
            assert (kind, registered.parent_type) == ("Namespace", None)


def test_virtual_service_routes_only_to_subsets_the_destination_rule_defines(stack_run):
    _, run = stack_run
    rules = {o["spec"]["host"]: o for o in run.of_kind("DestinationRule")}
    services = {
        f"{o['metadata']['name']}.{o['metadata']['namespace']}.svc.cluster.local": o
        for o in run.of_kind("Service")
    }
    for vs in run.of_kind("VirtualService"):
        for route in vs["spec"]["http"]:
            for destination in (d["destination"] for d in route["route"]):
                host = destination["host"]
                assert host in services, f"{host} is not a Service FQDN"
                subsets = {s["name"] for s in rules[host]["spec"]["subsets"]}
                assert destination["subset"] in subsets
                ports = {p["port"] for p in services[host]["spec"]["ports"]}
                assert destination["port"]["number"] in ports


def test_every_subset_selects_the_pods_of_a_deployment(stack_run):
    _, run = stack_run
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in run.of_kind("Deployment")]
    for rule in run.of_kind("DestinationRule"):
        app = rule["metadata"]["name"]
        for subset in rule["spec"]["subsets"]:
            wanted = {"app": app, **subset["labels"]}
            assert any(wanted.items() <= labels.items() for labels in pod_labels), subset


def test_virtual_services_bind_the_gateway_that_serves_their_hosts(stack_run):
    _, run = stack_run
    (gateway,) = run.of_kind("Gateway")
    ref = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    served = {h.split("/", 1)[1] for s in gateway["spec"]["servers"] for h in s["hosts"]}
    for vs in run.of_kind("VirtualService"):
        assert vs["spec"]["gateways"] == [ref, "mesh"]
        external = [h for h in vs["spec"]["hosts"] if not h.endswith(".svc.cluster.local")]
        assert external and set(external) <= served


def test_no_two_virtual_services_claim_the_same_host(stack_run):
    _, run = stack_run
    hosts = [h for vs in run.of_kind("VirtualService") for h in vs["spec"]["hosts"]]
    assert len(hosts) == len(set(hosts))


def test_service_ports_are_named_for_istio_protocol_selection(stack_run):
    _, run = stack_run
    for service in run.of_kind("Service"):
        assert service["spec"]["selector"] == {"app": service["metadata"]["name"]}
        for port in service["spec"]["ports"]:
            protocol = port["appProtocol"]
            assert protocol in ("http", "grpc")
            assert port["name"] == protocol or port["name"].startswith(f"{protocol}-")


def test_namespace_has_sidecar_injection_on(stack_run):
    _, run = stack_run
    (namespace,) = run.of_kind("Namespace")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"


@pytest.mark.parametrize("stack", STACKS)
def test_render_prints_exactly_what_the_program_registers(stack):
    run = run_program(stack_raw(stack), stack=stack)
    loaded = load_stack(stack)
    rendered = render_objects(loaded.config, loaded.secrets)
    assert sorted(run.objects(), key=_key) == sorted(rendered, key=_key)
    assert run.charts == build_plan(loaded.config).charts() == []


def test_stack_outputs_give_hosts_urls_and_the_effective_split(dev):
    run = run_program(dev)
    assert run.outputs["namespace"] == "ml-serving"
    assert run.outputs["gatewayHosts"] == ["sentiment.models.dev.example.com"]
    sentiment = run.outputs["models"]["sentiment"]
    assert sentiment["traffic"] == {"v1": 90, "v2": 10}
    assert sentiment["urls"] == ["http://sentiment.models.dev.example.com"]


def _weights(run, name: str) -> dict[str, int]:
    vs = run.one("VirtualService", name)
    routes = [
        {d["destination"]["subset"]: d["weight"] for d in r["route"]} for r in vs["spec"]["http"]
    ]
    assert all(r == routes[0] for r in routes), "every port must carry the same split"
    return routes[0]


@pytest.mark.parametrize(
    ("canary", "expected"),
    [
        ({"version": "v2", "weight": 10}, {"v1": 90, "v2": 10}),
        ({"version": "v2", "weight": 50}, {"v1": 50, "v2": 50}),
        # warm but not routed: the canary stays in the route at 0 (istiod skips it), so a
        # shift to and from 0 rewrites only weights
        ({"version": "v2", "weight": 0}, {"v1": 100, "v2": 0}),
        ({"version": "v2", "weight": 100}, {"v1": 0, "v2": 100}),  # promoted, v1 still deployed
        (None, {"v1": 100}),
    ],
)
def test_canary_weight_splits_traffic_between_stable_and_canary(dev, canary, expected):
    config = with_value(dev, "models.sentiment.canary", canary)
    if canary is None:
        del config["models"]["sentiment"]["canary"]
    run = run_program(config)
    assert _weights(run, "sentiment") == expected
    assert {d["metadata"]["name"] for d in run.of_kind("Deployment")} == {
        "sentiment-v1",
        "sentiment-v2",
    }


def _inputs_by_resource(run) -> dict[tuple[str, str], dict]:
    return {(r.type, r.name): r.inputs for r in run.resources}


@pytest.mark.parametrize("weight", [30, 0])
def test_shifting_the_canary_changes_only_that_models_virtual_service(prod, weight):
    """sentiment 5% -> 30% and to 0 (the canary idle) in prod, as Pulumi sees the resources:
    its routes, and nothing else: no dashboard (it shows the observed split), no alert rule
    (rules follow roles, not weights), no Deployment. (Prod's policy refuses a canary above
    50%; stable idle at 100 is pinned on the builders, tests/test_weight_shift.py.)"""
    before = _inputs_by_resource(run_program(prod, stack="prod"))
    shifted = with_value(prod, "models.sentiment.canary.weight", weight)
    after = _inputs_by_resource(run_program(shifted, stack="prod"))
    assert before.keys() == after.keys()
    # the comparison covers both boards, the other model's VirtualService and the alert rules
    assert {name for kind, name in before if kind == CONFIG_MAP} == {
        "ml-mesh-dashboard.ml-serving.fraud",
        "ml-mesh-dashboard.ml-serving.sentiment",
    }
    assert ("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "ml-mesh-alerts") in before
    assert (VIRTUAL_SERVICE, "fraud") in before
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {(VIRTUAL_SERVICE, "sentiment")}


def test_adding_a_version_never_changes_existing_deployments(dev):
    before = _inputs_by_resource(run_program(dev))
    added = with_value(
        dev,
        "models.sentiment.versions.v3",
        {"image": "tensorflow/serving:2.17.0", "modelPath": "sentiment/3"},
    )
    after = _inputs_by_resource(run_program(added))
    for key, inputs in before.items():
        if key[0] == "kubernetes:apps/v1:Deployment":
            assert after[key] == inputs, key
    assert ("kubernetes:apps/v1:Deployment", "sentiment-v3") in after


def test_secret_role_arn_stays_secret_all_the_way_to_the_service_account(prod):
    run = run_program(prod, stack="prod", secret_keys=("models",))
    account = run.resource("ServiceAccount", "sentiment")
    assert account.secret_paths == ["metadata"]
    assert (
        account.object()["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == (prod["models"]["sentiment"]["roleArn"])
    )
    arn = prod["models"]["sentiment"]["roleArn"]
    for registered in run.kubernetes:
        if arn in str(registered.object()):
            assert registered.secret_paths, f"{registered.name} carries the role ARN in clear"


def test_secret_on_a_value_that_names_resources_is_refused(dev):
    from tests.harness import try_program

    run, error = try_program(dev, secret_keys=("namespace",))
    assert "namespace: cannot be a secret" in str(error)
    assert run.resources == []


def test_text_config_that_looks_like_json_stays_text(dev):
    run = run_program({**dev, "namespace": "123"})
    assert run.outputs["namespace"] == "123"
    (namespace,) = run.of_kind("Namespace")
    assert namespace["metadata"]["name"] == "123"


def test_traffic_shifts_only_after_subsets_exist_and_versions_rolled_out(prod):
    run = run_program(prod, stack="prod")
    deps = {(kind, name) for kind, name in run.resource("VirtualService", "sentiment").depends_on}
    assert deps >= {
        ("kubernetes:networking.istio.io/v1:DestinationRule", "sentiment"),
        ("kubernetes:apps/v1:Deployment", "sentiment-v3"),
        ("kubernetes:apps/v1:Deployment", "sentiment-v4"),
        ("kubernetes:networking.istio.io/v1:Gateway", "ml-gateway"),
    }
    assert ("kubernetes:apps/v1:Deployment", "fraud-v7") not in deps
    deployment = run.resource("Deployment", "fraud-v7").depends_on
    assert ("kubernetes:core/v1:ServiceAccount", "fraud") in deployment
    assert ("kubernetes:core/v1:Namespace", "ml-serving") in deployment


def test_a_model_named_like_a_platform_component_is_still_a_model(dev):
    raw = with_value(dev, "models.egress", dev["models"]["sentiment"])
    run = run_program(raw)
    egress = [r for r in run.resources if r.name == "egress" and not r.custom]
    assert sorted(r.type for r in egress) == [EGRESS, MODEL]
    assert run.outputs["models"]["egress"]["traffic"] == {"v1": 90, "v2": 10}


def _waits_for(run, kind: str, name: str) -> set[tuple[str, str]]:
    """(kind, name) of every resource the given one depends on."""
    return {(t.rpartition(":")[2], n) for t, n in run.resource(kind, name).depends_on}


def test_dependencies_stay_within_a_model_so_they_grow_linearly(prod):
    """A Deployment waits for its own ServiceAccount, a VirtualService for its own
    DestinationRule and Deployments and the Gateway: never for other models' objects."""
    run = run_program(prod, stack="prod")
    assert _waits_for(run, "Deployment", "sentiment-v3") == {
        ("Namespace", "ml-serving"),
        ("ServiceAccount", "sentiment"),
    }
    assert _waits_for(run, "VirtualService", "sentiment") == {
        ("Namespace", "ml-serving"),
        ("Gateway", "ml-gateway"),
        ("DestinationRule", "sentiment"),
        ("Deployment", "sentiment-v3"),
        ("Deployment", "sentiment-v4"),
    }


# --- Helm releases (examples/Pulumi.llm-pools.yaml: a picker chart per pool version) --------

POOLS = str(PROJECT_DIR / "examples" / "Pulumi.llm-pools.yaml")


@pytest.fixture(scope="module")
def pools_run():
    loaded = load_stack(POOLS)
    return loaded, run_program(loaded.raw, stack=loaded.name)


def test_each_pool_version_is_one_helm_chart_of_the_plan_under_its_model(pools_run):
    """One `kubernetes:helm.sh/v4:Chart` per version, registered as the remote component it
    is (no ID, no children under mocks: the provider renders them), with the plan's chart,
    version, namespace and values, under the model's component."""
    loaded, run = pools_run
    plan = build_plan(loaded.config)
    registered = {r.name: r for r in run.charts}
    assert sorted(registered) == ["chat-v1", "chat-v2", "coder-v3"]
    for chart in plan.charts():
        found = registered[chart.name]
        assert (found.type, found.custom, found.remote, found.parent_type) == (
            CHART_TYPE,
            False,
            True,
            MODEL,
        )
        assert found.object() == {
            "chart": chart.chart,
            "version": chart.version,
            "namespace": chart.namespace,
            "values": chart.values,
        }
    assert not any(r.parent_type == CHART_TYPE for r in run.resources), "no child under mocks"


def test_every_route_of_a_pool_model_waits_for_its_own_charts(pools_run):
    loaded, run = pools_run
    for registered in run.kubernetes:
        if registered.inputs["kind"] != "HTTPRoute":
            continue
        charts = {name for kind, name in registered.depends_on if kind == CHART_TYPE}
        model = registered.inputs["metadata"].get("labels", {}).get("app")
        if model is None:  # the gateway's https redirect
            assert charts == set(), registered.name
            continue
        versions = loaded.config.models[model].versions
        assert charts == {f"{model}-{v}" for v in versions}, registered.name


def test_render_of_a_stack_with_charts_prints_what_the_program_registers(pools_run):
    """Render's objects are the registered non-chart resources; the charts are the plan's."""
    loaded, run = pools_run
    rendered = render_objects(loaded.config, loaded.secrets)
    assert sorted(run.objects(), key=_key) == sorted(rendered, key=_key)
    plan = build_plan(loaded.config)
    assert {r.name: r.object() for r in run.charts} == {
        c.name: {
            "chart": c.chart,
            "version": c.version,
            "namespace": c.namespace,
            "values": c.values,
        }
        for c in plan.charts()
    }
