"""Inference Extension pools (`models.<m>.inferencePool`): what the config refuses, the pools
and pickers the plan asks for, and that each piece points at what exists (the pods a pool
selects, the port it targets, the picker Service its endpointPickerRef names, the port the
picker scrapes), all from examples/Pulumi.llm-pools.yaml with one setting changed per row.
What the chart creates is modelled on llm-d-router v0.10.0 (mesh/gatewayapi/pools.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from mesh.config import ConfigError, parse_config
from mesh.gatewayapi.common import picker_name
from mesh.gatewayapi.pools import (
    AGENT_METRICS_PATH,
    AGENT_METRICS_PORT,
    PLUGINS_FILE,
    harden_picker,
)
from mesh.plan import build_plan
from mesh.render import chart_comment
from mesh.stackfile import raw_project_config
from mesh.trace.pools import shadow_name
from policy import rules
from tests.conftest import PROJECT_DIR, assert_refused, with_value, without

EXAMPLE = PROJECT_DIR / "examples" / "Pulumi.llm-pools.yaml"


def example_raw() -> dict[str, Any]:
    return raw_project_config(yaml.safe_load(EXAMPLE.read_text()))


def config_of(edits: dict[str, Any]):
    raw = example_raw()
    for path, value in edits.items():
        raw = without(raw, path) if value is None else with_value(raw, path, value)
    return parse_config(raw, "llm-pools")


def plan_of(edits: dict[str, Any] | None = None):
    return build_plan(config_of(edits or {}))


def named(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def charts_by_name(plan) -> dict:
    return {chart.name: chart for chart in plan.charts()}


# --- what the config refuses ----------------------------------------------------------------

REFUSED = [
    # (edits, path, words of the message)
    (
        {"models.chat.server": "triton", "models.chat.llm": None},
        "models.chat.inferencePool",
        ["only allowed with server vllm or sglang", "'triton'"],
    ),
    (
        {"routing": "istio"},
        "models.chat.inferencePool",
        ["Gateway API backend", "routing: gateway-api"],
    ),
    (
        {"dataplane": "ambient"},
        "models.chat.inferencePool",
        ["dataplane is ambient", ":15020", "dataplane: sidecar"],
    ),
    (
        {"models.chat.canary": None, "models.chat.progressive": {"maxWeight": 50}},
        "models.chat.inferencePool",
        ["Flagger owns this model's HTTPRoute"],
    ),
    (
        {"platform.istioVersion": "1.27"},
        "models.chat.inferencePool",
        ["Istio 1.28+", "'1.27'"],
    ),
    (
        {"platform.inferenceExtension": None},
        "models.chat.inferencePool",
        [
            "ENABLE_GATEWAY_API_INFERENCE_EXTENSION=true",
            "values.pilot.env.ENABLE_GATEWAY_API_INFERENCE_EXTENSION=true",
            "platform.inferenceExtension: true",
        ],
    ),
    (
        {"models.coder.inferencePool.failureMode": "FailSilently"},
        "models.coder.inferencePool.failureMode",
        ["FailOpen", "FailClose"],
    ),
    (
        {"models.chat.inferencePool.pickerResources": {"requests": {"cpu": "1Ki"}}},
        "models.chat.inferencePool.pickerResources.requests.cpu",
        ["cores or millicores", "500m"],
    ),
    (
        {"models.chat.inferencePool.pickerReplicas": 0},
        "models.chat.inferencePool.pickerReplicas",
        ["greater than or equal to 1"],
    ),
]


@pytest.mark.parametrize(("edits", "path", "words"), REFUSED)
def test_the_config_refuses_a_pool_the_platform_or_model_cannot_serve(edits, path, words):
    assert_refused(config_of, edits, path, words)


def test_a_pool_name_the_picker_chart_would_cut_is_refused():
    """The chart cuts the release at 40 characters: two long versions would share a picker."""
    long_version = "v2-" + "x" * 33  # chat- + 36 = 41 characters
    raw_edits = {
        f"models.chat.versions.{long_version}": {
            "image": "vllm/vllm-openai:v0.34.0",
            "modelPath": "chat-8b/2026-10",
        }
    }
    path = f"models.chat.versions.{long_version}"
    assert_refused(config_of, raw_edits, path, ["cuts its names at 40"])


# --- the pools and their pickers ------------------------------------------------------------


def test_every_version_gets_a_picker_release_and_nothing_else_does():
    plan = plan_of()
    assert sorted(charts_by_name(plan)) == ["chat-v1", "chat-v2", "coder-v3"]
    without_pools = plan_of({"models.coder.inferencePool": None})
    assert sorted(charts_by_name(without_pools)) == ["chat-v1", "chat-v2"]


def test_each_pool_selects_exactly_the_pods_of_its_version_on_the_server_port():
    """Runtime truth: the pool's selector against the Deployments' pod labels, its target
    port against the server container's port."""
    plan = plan_of()
    objects = plan.objects()
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    for chart in plan.charts():
        pool = named(list(chart.modelled), "InferencePool", chart.name)
        selector = pool["spec"]["selector"]["matchLabels"]
        selected = [
            d["metadata"]["name"]
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [chart.name]
        (deployment,) = [d for d in deployments if d["metadata"]["name"] == chart.name]
        (server,) = [
            c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "server"
        ]
        ports = {p["containerPort"] for p in server["ports"]}
        assert [p["number"] for p in pool["spec"]["targetPorts"]] == [next(iter(sorted(ports)))]


def test_the_pool_names_the_picker_service_the_chart_creates():
    for chart in plan_of().charts():
        pool = named(list(chart.modelled), "InferencePool", chart.name)
        ref = pool["spec"]["endpointPickerRef"]
        service = named(list(chart.modelled), "Service", ref["name"])
        assert ref["port"]["number"] in [p["port"] for p in service["spec"]["ports"]]
        # The chart's Service selects its picker pods by the label mesh/security.py admits.
        assert service["spec"]["selector"] == {"llm-d-router-gateway": picker_name(chart.name)}


@pytest.mark.parametrize(("model", "mode"), [("chat", "FailOpen"), ("coder", "FailClose")])
def test_failure_mode_reaches_both_the_chart_and_the_pool(model, mode):
    edits = {f"models.{model}.inferencePool.failureMode": mode}
    for chart in plan_of(edits).charts():
        if not chart.name.startswith(f"{model}-"):
            continue
        assert chart.values["router"]["inferencePool"]["failureMode"] == mode
        pool = named(list(chart.modelled), "InferencePool", chart.name)
        assert pool["spec"]["endpointPickerRef"]["failureMode"] == mode


def test_the_picker_stays_out_of_the_mesh_and_scrapes_the_agent_port():
    """The gateway reaches the picker with plain TLS (the chart's DestinationRule), which a
    sidecar under STRICT would refuse; the picker reads the servers through :15020."""
    for chart in plan_of().charts():
        epp = chart.values["router"]["epp"]
        assert epp["podAnnotations"]["sidecar.istio.io/inject"] == "false"
        assert epp["pluginsConfigFile"] == PLUGINS_FILE
        config = yaml.safe_load(epp["pluginsCustomConfig"][PLUGINS_FILE])
        assert config["kind"] == "EndpointPickerConfig"
        (source,) = [p for p in config["plugins"] if p["type"] == "metrics-data-source"]
        assert source["parameters"] == {
            "scheme": "http",
            "path": AGENT_METRICS_PATH,
            "port": AGENT_METRICS_PORT,
        }
        refs = {p["pluginRef"] for p in config["schedulingProfiles"][0]["plugins"]}
        assert refs <= {p.get("name", p["type"]) for p in config["plugins"]}
        rule = named(list(chart.modelled), "DestinationRule", picker_name(chart.name))
        assert rule["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"


@pytest.mark.parametrize(
    ("release", "server", "engine"), [("chat-v1", "vllm", None), ("coder-v3", "sglang", "sglang")]
)
def test_the_picker_reads_the_metric_names_of_its_server(release, server, engine):
    """core-metrics-extractor defaults to vLLM's names; SGLang's need defaultEngine
    (llm-d-router v0.10.0 extractor/metrics/factories.go)."""
    chart = charts_by_name(plan_of())[release]
    config = yaml.safe_load(chart.values["router"]["epp"]["pluginsCustomConfig"][PLUGINS_FILE])
    (extractor,) = [p for p in config["plugins"] if p["type"] == "core-metrics-extractor"]
    assert extractor.get("parameters", {}).get("defaultEngine") == engine
    assert chart.values["router"]["modelServers"]["type"] == server


def test_the_agent_merges_the_server_metrics_the_picker_reads():
    """pilot-agent serves on :15020 what the pod's prometheus.io annotations name (the
    injector moves them to the agent): the server's own /metrics on its port."""
    objects = plan_of().objects()
    for name, port in (("chat-v1", 8000), ("chat-v2", 8000), ("coder-v3", 30000)):
        annotations = named(objects, "Deployment", name)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_the_model_network_policy_admits_its_pickers_on_the_agent_port_only():
    objects = plan_of().objects()
    policy = named(objects, "NetworkPolicy", "chat")
    rules = [
        r
        for r in policy["spec"]["ingress"]
        if any("llm-d-router-gateway" in str(p.get("podSelector")) for p in r["from"])
    ]
    assert len(rules) == 1
    (rule,) = rules
    assert rule["ports"] == [{"protocol": "TCP", "port": 15020}]
    assert [p["podSelector"]["matchLabels"] for p in rule["from"]] == [
        {"llm-d-router-gateway": "chat-v1-epp"},
        {"llm-d-router-gateway": "chat-v2-epp"},
    ]
    # No namespaceSelector: the pickers run in the serving namespace only.
    assert all("namespaceSelector" not in p for p in rule["from"])


# --- the routes ----------------------------------------------------------------------------


def _backends(route: dict) -> list[tuple[str, str, int | None]]:
    (weighted,) = [r for r in route["spec"]["rules"] if "headers" not in r["matches"][0]]
    return [(b["kind"], b["name"], b.get("weight")) for b in weighted["backendRefs"]]


ROUTES = [
    # (edits, model, the pool route's backends (the stable pool last: its picker serves the
    # rule, `stable_pool_last`), the mesh route's backends)
    (
        {},
        "chat",
        [("InferencePool", "chat-v2", 10), ("InferencePool", "chat-v1", 90)],
        [("Service", "chat-v1", 90), ("Service", "chat-v2", 10)],
    ),
    (
        {"models.chat.canary.weight": 25},
        "chat",
        [("InferencePool", "chat-v2", 25), ("InferencePool", "chat-v1", 75)],
        [("Service", "chat-v1", 75), ("Service", "chat-v2", 25)],
    ),
    ({}, "coder", [("InferencePool", "coder-v3", 100)], [("Service", "coder-v3", 100)]),
]


@pytest.mark.parametrize(("edits", "model", "pools", "services"), ROUTES)
def test_one_canary_weight_splits_the_pools_and_the_version_services_alike(
    edits, model, pools, services
):
    objects = plan_of(edits).objects()
    pool_route = named(objects, "HTTPRoute", f"{model}-pools")
    mesh_route = named(objects, "HTTPRoute", model)
    assert _backends(pool_route) == pools
    assert _backends(mesh_route) == services


def test_the_gateway_binds_the_pool_route_and_mesh_callers_the_service_route():
    """Istio builds the picker into Gateway listeners only: a sidecar would get the pool's
    headless shadow Service without a picker."""
    objects = plan_of().objects()
    pool_parents = named(objects, "HTTPRoute", "chat-pools")["spec"]["parentRefs"]
    mesh_parents = named(objects, "HTTPRoute", "chat")["spec"]["parentRefs"]
    assert {p["kind"] for p in pool_parents} == {"Gateway"}
    assert mesh_parents == [{"group": "", "kind": "Service", "name": "chat"}]
    # Without pools, one route binds both, as before.
    plain = plan_of({"models.chat.inferencePool": None}).objects()
    kinds = {p["kind"] for p in named(plain, "HTTPRoute", "chat")["spec"]["parentRefs"]}
    assert kinds == {"Gateway", "Service"}
    assert not [o for o in plain if o["metadata"]["name"] == "chat-pools"]


def test_pool_backends_carry_no_port_and_name_the_pool_not_a_host():
    """Istio refuses a pool named by hostname (conversion.go `buildDestination`); the port is
    the pool's targetPorts."""
    objects = plan_of().objects()
    for rule in named(objects, "HTTPRoute", "chat-pools")["spec"]["rules"]:
        for ref in rule["backendRefs"]:
            assert ref["group"] == "inference.networking.k8s.io"
            assert "port" not in ref
            assert "." not in ref["name"]


def test_a_match_rule_sends_its_requests_to_the_pool_of_its_version():
    objects = plan_of(
        {"models.chat.matches": {"beta": {"version": "v2", "headers": {"x-beta": {"exact": "1"}}}}}
    ).objects()
    rules = named(objects, "HTTPRoute", "chat-pools")["spec"]["rules"]
    (beta,) = [r for r in rules if r["name"].startswith("beta")]
    assert [(b["kind"], b["name"]) for b in beta["backendRefs"]] == [("InferencePool", "chat-v2")]


def test_the_mirror_of_a_pool_model_goes_to_the_version_service():
    objects = plan_of(
        {"models.chat.canary.weight": 0, "models.chat.mirror": {"version": "v2", "percent": 5}}
    ).objects()
    rules = named(objects, "HTTPRoute", "chat-pools")["spec"]["rules"]
    (mirror,) = [f["requestMirror"] for r in rules for f in r.get("filters", [])]
    assert mirror["backendRef"] == {"group": "", "kind": "Service", "name": "chat-v2", "port": 8000}


def test_the_model_traffic_policy_reaches_the_pool_shadow_hosts():
    """The gateway's cluster for a pool is Istio's shadow Service: a DestinationRule for that
    host carries the model's connection pool (protected stack) as the version Services get."""
    objects = plan_of().objects()
    for version in ("v1", "v2"):
        pool = f"chat-{version}"
        rule = named(objects, "DestinationRule", f"{pool}-pool")
        assert rule["spec"]["host"] == f"{shadow_name(pool)}.llm-prod.svc.cluster.local"
        service_rule = named(objects, "DestinationRule", pool)
        assert rule["spec"]["trafficPolicy"] == service_rule["spec"]["trafficPolicy"]


SHADOW_NAMES = [
    # (pool, name): Istio 1.30.3's own expectations (pilot/pkg/config/kube/gateway/
    # testdata/http.yaml.golden and inferencepool_test.go)
    ("infpool-gen", "infpool-gen-ip-6580eb2c"),
    ("infpool-model2", "infpool-model2-ip-f857bff9"),
    (
        "very-long-inference-pool-name-that-should-be-truncated-properly",
        "very-long-inference-pool-name-that-should-be-trunca-ip-6d24df6a",
    ),
]


@pytest.mark.parametrize(("pool", "expected"), SHADOW_NAMES)
def test_the_shadow_name_is_istios(pool, expected):
    assert shadow_name(pool) == expected


def test_render_shows_each_release_as_comments_and_applies_as_before():
    plan = plan_of()
    text = chart_comment(charts_by_name(plan)["chat-v2"])
    lines = text.splitlines()
    assert all(line.startswith("#") for line in lines)
    assert "oci://ghcr.io/llm-d/charts/llm-d-router-gateway v0.10.0" in lines[0]
    assert "InferencePool chat-v2" in text
    shown = lines[lines.index("# values:") + 1 :]
    values = yaml.safe_load("".join(f"{line[4:]}\n" for line in shown))
    assert values == charts_by_name(plan)["chat-v2"].values


def test_picker_resources_override_only_what_is_given_and_always_limit_cpu():
    """Helm merges the values into the chart's defaults key by key, so only what the config
    says is passed, plus the CPU limit the policy pack needs (twice the CPU request: given,
    else the chart's 8; a given limit wins)."""
    edits = {"models.chat.inferencePool.pickerResources": {"requests": {"cpu": "2"}}}
    chart = charts_by_name(plan_of(edits))["chat-v1"]
    assert chart.values["router"]["epp"]["resources"] == {
        "limits": {"cpu": "4"},
        "requests": {"cpu": "2"},
    }
    coder = charts_by_name(plan_of())["coder-v3"]
    assert coder.values["router"]["epp"]["resources"] == {"limits": {"cpu": "16"}}
    deployment = named(list(coder.modelled), "Deployment", "coder-v3-epp")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "8", "memory": "8Gi"},
        "limits": {"memory": "16Gi", "cpu": "16"},
    }


@pytest.mark.parametrize(
    "rule",
    [rules.image_problems, rules.limit_problems, rules.security_context_problems],
    ids=["image-pinned", "resources-limited", "hardened-security-context"],
)
def test_the_picker_deployment_passes_the_policy_pack(rule):
    """The pack validates the chart's objects at `pulumi preview` like any other: the picker
    Deployment as the chart renders it, after the program's transform (`harden_picker`)."""
    for chart in plan_of().charts():
        deployment = named(list(chart.modelled), "Deployment", picker_name(chart.name))
        assert rule("kubernetes:apps/v1:Deployment", deployment) == []


def test_without_the_transform_the_pack_would_refuse_the_chart_picker():
    """What the chart renders alone: no securityContext, refused (this is why the program
    hardens it)."""
    chart = plan_of().charts()[0]
    deployment = copy.deepcopy(named(list(chart.modelled), "Deployment", picker_name(chart.name)))
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        del container["securityContext"]
    assert rules.security_context_problems("kubernetes:apps/v1:Deployment", deployment)
    assert harden_picker(deployment) != deployment
    assert (
        rules.security_context_problems("kubernetes:apps/v1:Deployment", harden_picker(deployment))
        == []
    )


def test_the_transform_leaves_every_other_object_alone():
    for obj in plan_of().objects():
        assert harden_picker(obj) is obj


IMAGES = [
    # (images.endpointPicker, the chart's epp.image registry, repository, tag)
    (
        "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0",
        "ghcr.io",
        "llm-d/llm-d-router-endpoint-picker",
        "v0.10.0",
    ),
    (
        "registry.acme.com:5000/mirror/epp:v0.10.0@sha256:" + "a" * 64,
        "registry.acme.com:5000",
        "mirror/epp",
        "v0.10.0@sha256:" + "a" * 64,
    ),
]


@pytest.mark.parametrize(("image", "registry", "repository", "tag"), IMAGES)
def test_the_picker_image_is_written_as_the_chart_joins_it(image, registry, repository, tag):
    """The chart writes `<registry>/<repository>:<tag>`: the parts must join back to the
    configured reference, digest included."""
    chart = charts_by_name(plan_of({"images.endpointPicker": image}))["chat-v1"]
    values = chart.values["router"]["epp"]["image"]
    assert (values["registry"], values["repository"], values["tag"]) == (registry, repository, tag)
    assert f"{values['registry']}/{values['repository']}:{values['tag']}" == image


def test_a_picker_image_without_a_tag_is_refused():
    with pytest.raises(ConfigError) as caught:
        config_of({"images.endpointPicker": "ghcr.io/llm-d/epp@sha256:" + "b" * 64})
    (problem,) = caught.value.problems
    assert problem.path == "images.endpointPicker"
    assert "repo:tag@sha256" in problem.message


def test_a_tag_only_picker_image_is_a_finding_on_images_endpoint_picker():
    """`mesh check` reads the chart's objects: with requireDigests the picker's tag-only image
    is an error that names the key to edit."""
    from mesh.checks import check

    config = config_of({"images.requireDigests": True})
    findings = check(config, build_plan(config).cluster_objects())
    picker = [f for f in findings if "chat-v1-epp" in str(f)]
    assert picker, findings
    assert all(f.severity == "error" and f.path == "images.endpointPicker" for f in picker)


def test_istiod_shadow_service_selects_the_pool_pods_on_the_target_port():
    plan = plan_of()
    objects = plan.cluster_objects()
    shadow = named(objects, "Service", shadow_name("chat-v2"))
    assert shadow["spec"]["clusterIP"] == "None"
    assert shadow["spec"]["selector"] == {"app": "chat", "version": "v2"}
    assert shadow["spec"]["ports"] == [
        {
            "name": "http-0",
            "protocol": "TCP",
            "port": 54321,
            "targetPort": 8000,
            "appProtocol": "http",
        }
    ]
    labels = shadow["metadata"]["labels"]
    assert labels["istio.io/inferencepool-extension-service"] == "chat-v2-epp"
    assert labels["istio.io/inferencepool-extension-port"] == "9002"
    # The pools' DestinationRules now name a host the cluster has.
    hosts = {
        f"{s['metadata']['name']}.llm-prod.svc.cluster.local"
        for s in objects
        if s["kind"] == "Service"
    }
    for rule in plan.objects():
        if rule["kind"] == "DestinationRule" and rule["metadata"]["name"].endswith("-pool"):
            assert rule["spec"]["host"] in hosts


@pytest.mark.parametrize(("weight", "refused"), [(50, False), (60, True)])
def test_the_pack_caps_the_canary_share_of_the_pool_route_too(weight, refused):
    """The pack's canary-weight rule finds the canary backend by the route's `app` label, so
    the pool route (`chat-pools`, backends `chat-<v>` pools) is capped like the mesh route."""
    objects = plan_of({"models.chat.canary.weight": weight}).objects()
    for name in ("chat", "chat-pools"):
        route = named(objects, "HTTPRoute", name)
        kind = rules.resource_type(route["apiVersion"], route["kind"])
        problems = rules.canary_weight_problems(kind, route, 50)
        assert bool(problems) == refused, (name, problems)


def test_the_stack_outputs_name_each_version_pool_and_picker():
    from mesh.plan import model_outputs

    outputs = model_outputs(config_of({}), "coder")
    assert outputs["inferencePools"] == {"v3": {"pool": "coder-v3", "picker": "coder-v3-epp"}}
    plain = model_outputs(config_of({"models.coder.inferencePool": None}), "coder")
    assert "inferencePools" not in plain


def test_a_changed_plugin_configuration_rolls_the_picker():
    """The chart's ConfigMap carries no checksum to the pod template: the digest annotation
    changes with the configuration (SGLang's extractor differs from vLLM's), and only then."""
    plan = charts_by_name(plan_of())
    digest = lambda c: c.values["router"]["epp"]["podAnnotations"]["ml-mesh.io/plugins-sha256"]  # noqa: E731
    assert digest(plan["chat-v1"]) == digest(plan["chat-v2"])
    assert digest(plan["chat-v1"]) != digest(plan["coder-v3"])
    resized = charts_by_name(plan_of({"models.chat.inferencePool.pickerReplicas": 2}))
    assert digest(resized["chat-v1"]) == digest(plan["chat-v1"])
    deployment = named(list(plan["chat-v1"].modelled), "Deployment", "chat-v1-epp")
    assert (
        deployment["spec"]["template"]["metadata"]["annotations"]
        == (plan["chat-v1"].values["router"]["epp"]["podAnnotations"])
    )


@pytest.mark.parametrize(
    ("requests", "limits", "expected"),
    [("500m", None, "1"), ("1.5", None, "3"), ("250m", None, "500m"), ("2", "3", "3")],
)
def test_the_picker_cpu_limit_is_twice_the_request_unless_given(requests, limits, expected):
    resources: dict = {"requests": {"cpu": requests}}
    if limits:
        resources["limits"] = {"cpu": limits}
    chart = charts_by_name(plan_of({"models.chat.inferencePool.pickerResources": resources}))
    assert chart["chat-v1"].values["router"]["epp"]["resources"]["limits"]["cpu"] == expected


def test_each_picker_gets_a_default_deny_policy_admitting_the_gateway_on_ext_proc():
    objects = plan_of().objects()
    policy = named(objects, "NetworkPolicy", "chat-v2-epp")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"llm-d-router-gateway": "chat-v2-epp"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (gateway, metrics) = policy["spec"]["ingress"]
    assert gateway["ports"] == [{"protocol": "TCP", "port": 9002}]
    assert gateway["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
            "podSelector": {
                "matchLabels": {"gateway.networking.k8s.io/gateway-name": "llm-public"}
            },
        }
    ]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9090}]
    unprotected = plan_of({"protected": False, "security.networkPolicy": False}).objects()
    assert not [o for o in unprotected if o["kind"] == "NetworkPolicy"]


def _fail_close_findings(config, objects) -> list:
    from mesh.checks import check

    return [f for f in check(config, objects) if f.code == "MESH0027"]


def test_fail_close_with_the_charts_recreate_rollout_is_a_warning():
    """MESH0027, read from the objects: the pool's failure mode, the picker Service its
    endpointPickerRef names, that Service's Deployment and its strategy."""
    config = config_of({"models.coder.inferencePool.failureMode": "FailClose"})
    objects = build_plan(config).cluster_objects()
    (finding,) = _fail_close_findings(config, objects)
    assert (finding.severity, finding.path, finding.resource) == (
        "warning",
        "models.coder.inferencePool.failureMode",
        "InferencePool llm-prod/coder-v3",
    )
    assert "Recreate" in finding.message and "FailOpen" in finding.message
    # A picker that rolls out otherwise, or a FailOpen pool, is not reported.
    rolling = copy.deepcopy(objects)
    named(rolling, "Deployment", "coder-v3-epp")["spec"]["strategy"] = {"type": "RollingUpdate"}
    assert _fail_close_findings(config, rolling) == []
    default = config_of({})
    assert _fail_close_findings(default, build_plan(default).cluster_objects()) == []
