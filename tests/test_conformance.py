"""Every object ml-mesh renders is one the API server, Istio's CRDs and their CEL rules accept.

The validator itself (tests/conformance.py) is tested here too: each layer must catch a known-bad
object, and every CEL rule of the Istio CRDs must be one it can actually evaluate.
"""

from __future__ import annotations

import copy
import importlib.util
from collections import Counter
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

from mesh.config import ConfigError, StackConfig, parse_config
from mesh.plan import build_plan
from mesh.render import render_objects
from mesh.stackfile import load_stack, unwrap_secure
from tests import conformance
from tests.conftest import (
    PROJECT_DIR,
    STACK_SOURCES,
    plan_objects,
    shared_path,
    source_id,
    with_value,
    without,
)

ISTIO_API_VERSIONS = ("v1", "v1beta1", "v1alpha3")


def rendered(source: str, api_version: str | None = None) -> list[dict[str, Any]]:
    """What `python -m mesh render <source>` prints, optionally for another Istio API version."""
    stack = load_stack(source)
    config = stack.config
    if api_version is not None:
        istio = config.istio.model_copy(update={"api_version": api_version})
        config = config.model_copy(update={"istio": istio})
    return render_objects(config, stack.secrets)


@pytest.mark.parametrize("api_version", ISTIO_API_VERSIONS)
@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_every_rendered_object_is_accepted_by_the_real_schemas(source, api_version):
    objects = rendered(source, api_version)
    assert {o["apiVersion"] for o in objects} >= {f"networking.istio.io/{api_version}", "apps/v1"}
    found = [problem for obj in objects for problem in conformance.problems(obj)]
    assert found == []


# --- every mode combination ----------------------------------------------------------------

DATAPLANES = ("sidecar", "ambient")
ROUTINGS = ("istio", "gateway-api")
MODES = [(d, r) for d in DATAPLANES for r in ROUTINGS]
AMBIENT_MIN_ISTIO = "1.24"
# The one mode with Inference Extension pools (mesh/config/inference.py): an InferencePool is a
# Gateway API backend, and the picker scrapes through the sidecar's pilot-agent.
POOL_MODE = ("sidecar", "gateway-api")


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])


def mode_config(source: str, dataplane: str, routing: str) -> tuple[StackConfig, set[str]]:
    """The stack of `source` switched to `dataplane` and `routing`, as its owner would write it:
    ambient raises platform.istioVersion to 1.24 (ambient's GA) if older and drops
    istio.nativeSidecars (no sidecars to make native); gateway-api drops gateway.selector and
    gateway.serviceAccount (Istio deploys the Gateway's pods itself; both are refused there) and
    every model's `fault` (HTTPRoute has no fault injection; refused there), and with retries
    says the cluster has the experimental channel (HTTPRoute `retry` is only there); every mode
    but POOL_MODE drops `models.<m>.inferencePool` (refused there,
    `test_pools_are_refused_in_every_other_mode` pins it)."""
    stack = load_stack(source)
    raw, _ = unwrap_secure(copy.deepcopy(stack.raw))
    raw.update(dataplane=dataplane, routing=routing)
    if dataplane == "ambient":
        platform = raw.setdefault("platform", {})
        if _minor(str(platform.get("istioVersion", "0.0"))) < _minor(AMBIENT_MIN_ISTIO):
            platform["istioVersion"] = AMBIENT_MIN_ISTIO
        (raw.get("istio") or {}).pop("nativeSidecars", None)
    if routing == "gateway-api":
        for key in ("selector", "serviceAccount"):
            (raw.get("gateway") or {}).pop(key, None)
        models = (raw.get("models") or {}).values()
        for model in models:
            model.pop("fault", None)  # HTTPRoute has no fault filter: refused there
        if any("retries" in model for model in models):
            # HTTPRoute `retry` is experimental-only: the owner says the cluster has that channel
            raw.setdefault("platform", {})["gatewayApiChannel"] = "experimental"
    if (dataplane, routing) != POOL_MODE:
        for model in (raw.get("models") or {}).values():
            model.pop("inferencePool", None)
    if (dataplane, routing) != (stack.config.dataplane, stack.config.routing):
        # Secrets masked as the default mode masks them (the values are the file's).
        return parse_config(raw, stack.name), stack.secrets
    return stack.config, stack.secrets


def mode_objects(source: str, dataplane: str, routing: str) -> tuple[StackConfig, list[dict]]:
    """The rendered objects of the stack in a mode, then the objects its Helm releases create
    that ml-mesh models and the shadow Services istiod derives from the pools (mesh.charts,
    `Plan.cluster_objects()`: the picker's InferencePool, Deployment, Service and
    DestinationRule), which the cluster validates as it does the stack's."""
    config, secrets = mode_config(source, dataplane, routing)
    plan = build_plan(config)
    extra = plan.cluster_objects()[len(plan.objects()) :]
    return config, [*render_objects(config, secrets), *extra]


@pytest.mark.parametrize(("dataplane", "routing"), MODES, ids=["-".join(m) for m in MODES])
@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_every_object_of_every_mode_combination_is_accepted(source, dataplane, routing):
    """dev, prod and the examples in each (dataplane, routing): every object passes its schema
    and CEL rules, Gateway API kinds those of the channel the stack says the cluster has."""
    config, objects = mode_objects(source, dataplane, routing)
    assert (config.dataplane, config.routing) == (dataplane, routing)
    channel = config.platform.gateway_api_channel
    found = [p for obj in objects for p in conformance.problems(obj, gateway_api_channel=channel)]
    assert found == []


def conformance_census(source: str, dataplane: str, routing: str) -> dict[str, Counter]:
    """Per kind: objects validated and CEL rule evaluations (rule x place) that ran, for the
    report the lead quotes (`python -m tests.conformance_report`)."""
    config, objects = mode_objects(source, dataplane, routing)
    channel = config.platform.gateway_api_channel
    census = {"objects": Counter(), "cel": Counter(), "skipped": Counter()}
    for obj in objects:
        census["objects"][conformance.group_kind(obj)] += 1
        for verdict in conformance.cel_verdicts(obj, channel):
            census["skipped" if verdict.skipped else "cel"][conformance.group_kind(obj)] += 1
    return census


GATEWAY_API = "gateway.networking.k8s.io"
GWAPI_MERGED = importlib.util.find_spec("mesh.gatewayapi") is not None
AMBIENT_MERGED = importlib.util.find_spec("mesh.ambient") is not None


@pytest.mark.xfail(not GWAPI_MERGED, reason="gwapi builders not merged", strict=True)
@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_gateway_api_mode_validates_gateways_and_routes_with_their_cel_rules(dataplane):
    """Not vacuous: in gateway-api mode prod has a Gateway and an HTTPRoute per model, and their
    CEL rules ran (a Gateway's listener rules, an HTTPRoute's dozens)."""
    census = conformance_census("prod", dataplane, "gateway-api")
    gateway, route = f"{GATEWAY_API}/Gateway", f"{GATEWAY_API}/HTTPRoute"
    assert census["objects"][gateway] >= 1 and census["objects"][route] >= 2, census
    assert census["cel"][gateway] >= 5 and census["cel"][route] >= 40, census


@pytest.mark.xfail(not AMBIENT_MERGED, reason="ambient builders not merged", strict=True)
def test_ambient_mode_validates_the_waypoint_gateway():
    config, objects = mode_objects("prod", "ambient", "istio")
    waypoints = [
        o
        for o in objects
        if o["kind"] == "Gateway" and o["spec"].get("gatewayClassName") == "istio-waypoint"
    ]
    assert len(waypoints) == 1
    verdicts = conformance.cel_verdicts(waypoints[0], config.platform.gateway_api_channel)
    assert verdicts and all(v.verdict is True for v in verdicts)


NEWEST_KUBERNETES = kubernetes_validate.utils.latest_version()


@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_kubernetes_objects_also_fit_the_newest_kubernetes(source):
    """The pinned minimum (KUBERNETES_VERSION) catches fields too new for it; the newest
    release kubernetes-validate ships catches APIs and fields removed since."""
    built_in = [o for o in rendered(source) if _built_in(o["apiVersion"])]
    assert {"Deployment", "Service"} <= {o["kind"] for o in built_in}
    for obj in built_in:
        kubernetes_validate.validate(obj, NEWEST_KUBERNETES, strict=True)


def _built_in(api_version: str) -> bool:
    """Kubernetes' own API groups: none (core), dot-less (apps, policy) or *.k8s.io, but for
    the Gateway API (CRDs, not served by Kubernetes itself: tests/conformance.py checks them
    against their own schemas)."""
    group = api_version.rpartition("/")[0]
    if group == "gateway.networking.k8s.io":
        return False
    return "." not in group or group.endswith(".k8s.io")


def test_the_all_features_example_exercises_every_kind_ml_mesh_can_emit_but_flaggers():
    kinds = {o["kind"] for o in rendered(str(PROJECT_DIR / "examples/Pulumi.all-features.yaml"))}
    assert kinds == {
        "Namespace", "Gateway", "ServiceEntry", "PeerAuthentication", "Sidecar", "Telemetry",
        "PrometheusRule", "ServiceAccount", "Service", "Deployment", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "DestinationRule", "VirtualService", "AuthorizationPolicy",
        "NetworkPolicy", "ConfigMap",
    }  # fmt: skip


# --- the validator catches what the cluster would reject ---------------------------------------


@pytest.fixture(scope="module")
def prod_objects() -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in rendered("prod")}


def _edit(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `obj` with `path` (`spec.http.0.timeout`) set; list indexes are numbers."""
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


BAD_EDITS = [
    # (what is wrong, kind, path, value, a phrase of the expected problem)
    (
        "unknown container field (Kubernetes strict)",
        "Deployment",
        "spec.template.spec.containers.0.imagePullPolcy",
        "Always",
        "'imagePullPolcy' was unexpected",
    ),
    ("wrong type (Kubernetes)", "Deployment", "spec.replicas", "two", "'two' is not of type"),
    ("unknown Service field", "Service", "spec.clusterIp", "None", "'clusterIp' was unexpected"),
    (
        "unknown VirtualService field (Istio strict)",
        "VirtualService",
        "spec.http.0.retry",
        {"attempts": 3},
        "'retry' was unexpected",
    ),
    ("Istio enum", "ServiceEntry", "spec.resolution", "DNS_ONLY", "is not one of"),
    ("zero timeout (CEL)", "VirtualService", "spec.http.0.timeout", "0s", "duration greater"),
    (
        "per-try timeout in days (CEL, Go syntax)",
        "VirtualService",
        "spec.http.0.retries",
        {"attempts": 2, "perTryTimeout": "1d"},
        "invalid duration",
    ),
    (
        "duplicate ServiceEntry port numbers (CEL exists_one)",
        "ServiceEntry",
        "spec.ports",
        [{"number": 443, "name": "tls", "protocol": "TLS"}, {"number": 443, "name": "https"}],
        "port number cannot be duplicated",
    ),
    (
        "wildcard ServiceEntry host (CEL)",
        "ServiceEntry",
        "spec.hosts.0",
        "*",
        "hostname cannot be wildcard",
    ),
    (
        "two certificate sources on a Gateway server (CEL)",
        "Gateway",
        "spec.servers.1.tls.credentialNames",
        ["other-tls"],
        "only one of credentialName or credentialNames can be set",
    ),
    ("label value too long", "Deployment", "metadata.labels.version", "v" * 64, "label value"),
    ("Service name not DNS-1035", "Service", "metadata.name", "1model", "DNS-1035"),
    ("namespace not a label", "Namespace", "metadata.name", "ml.serving", "DNS-1123 label"),
    (
        "annotation key with two slashes",
        "Deployment",
        "metadata.annotations",
        {"a/b/c": "x"},
        "prefix must be a DNS subdomain",
    ),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "phrase"), [b[1:] for b in BAD_EDITS], ids=[b[0] for b in BAD_EDITS]
)
def test_validator_rejects_what_the_cluster_rejects(prod_objects, kind, path, value, phrase):
    good = prod_objects[kind]
    assert conformance.problems(good) == []
    found = conformance.problems(_edit(good, path, value))
    assert any(phrase in problem for problem in found), found


def test_an_istio_version_or_kind_istio_does_not_serve_is_a_problem(prod_objects):
    shared_path("istio")
    gateway = {**prod_objects["Gateway"], "apiVersion": "networking.istio.io/v2"}
    assert any("Istio 1.30 serves no such kind" in p for p in conformance.problems(gateway))


def _cel_caught(kind_api: str, kind: str, spec: dict[str, Any], phrase: str) -> None:
    obj = {"apiVersion": kind_api, "kind": kind, "metadata": {"name": "x", "namespace": "ns"}}
    found = conformance.problems({**obj, "spec": spec})
    assert any(phrase in p for p in found), found


def test_cel_helpers_cel_python_lacks_are_evaluated_not_skipped():
    shared_path("istio")
    # substring(): a unix:// address must be absolute or abstract.
    _cel_caught(
        "networking.istio.io/v1",
        "WorkloadEntry",
        {"address": "unix://relative.sock"},
        "UDS must be an absolute path or abstract socket",
    )
    # url().getScheme() and isURL(): a Wasm module from ftp:// is refused.
    _cel_caught(
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        {"url": "ftp://example.com/filter.wasm"},
        "url must have schema one of",
    )
    # int() on map keys: port-level mTLS on port 0.
    _cel_caught(
        "security.istio.io/v1",
        "PeerAuthentication",
        {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"0": {"mode": "STRICT"}}},
        "port must be between 1-65535",
    )


def test_flagger_objects_are_validated_with_schema_defaults_applied_before_cel():
    shared_path("flagger")
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "sentiment", "namespace": "ml-serving"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sentiment"},
            "service": {"port": 8501},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        },
    }
    assert conformance.problems(canary) == []
    typo = _edit(canary, "spec.analysis.stepWieght", 10)
    assert any("'stepWieght' was unexpected" in p for p in conformance.problems(typo))
    # backendRef's group and kind default to "" and "Service": a Service reference needs a port.
    mirror = _edit(canary, "spec.service.mirror", [{"backendRef": {"name": "shadow"}}])
    assert any("Must have port for Service reference" in p for p in conformance.problems(mirror))
    with_port = _edit(canary, "spec.service.mirror", [{"backendRef": {"name": "s", "port": 80}}])
    assert conformance.problems(with_port) == []


@pytest.fixture
def flagger_objects(prod) -> dict[str, dict[str, Any]]:
    """prod with sentiment handed to Flagger, load test included: every Flagger kind it emits."""
    raw = without(prod, "models.sentiment.canary")
    load_test = {"url": "http://flagger-loadtester.test/", "cmd": "hey http://x/"}
    raw = with_value(raw, "models.sentiment.progressive", {"loadTest": load_test})
    return {o["kind"]: o for o in plan_objects(raw, "prod")}


def test_flagger_objects_pass_flaggers_strict_schemas(flagger_objects):
    shared_path("flagger")
    assert {"Canary", "MetricTemplate"} <= set(flagger_objects)
    for kind in ("Canary", "MetricTemplate", "AuthorizationPolicy", "Deployment"):
        assert conformance.problems(flagger_objects[kind]) == [], kind


@pytest.mark.parametrize(
    ("path", "value", "phrase"),
    [
        ("spec.provider.type", "prom", "is not one of"),
        ("spec.provider.url", "http://prometheus:9090", "'url' was unexpected"),
        ("spec.querry", "up", "'querry' was unexpected"),
    ],
)
def test_validator_rejects_a_metric_template_flagger_rejects(flagger_objects, path, value, phrase):
    found = conformance.problems(_edit(flagger_objects["MetricTemplate"], path, value))
    assert any(phrase in problem for problem in found), found


def test_a_kind_without_any_schema_is_reported_not_passed():
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    (problem,) = conformance.problems(widget)
    assert "not validated" in problem


def test_schemaless_kinds_are_accepted_only_by_name_with_a_reason():
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule"}
    assert conformance.problems({**rule, "metadata": {"name": "r", "namespace": "n"}}) == []
    for kind, reason in conformance.SCHEMALESS_KINDS.items():
        assert "/" in kind and len(reason) > 20, kind


# --- the CEL rules themselves ------------------------------------------------------------------


def test_every_istio_cel_rule_compiles_and_calls_only_implemented_functions():
    rules = conformance.istio_cel_rules()
    assert len(rules) >= 300
    known = conformance.known_cel_functions()
    missing = {
        (r["kind"], r["path"], name)
        for r in rules
        for name in conformance.functions_called(r["rule"]) - known
    }
    assert missing == set()


def test_every_cel_rule_path_exists_in_its_kinds_schema():
    """A rule whose path is not in the schema would never be evaluated: a silent skip."""
    for rule in conformance.istio_cel_rules():
        path = shared_path(
            "istio", "schemas-strict", rule["group"], rule["version"], f"{rule['kind']}.json"
        )
        node = conformance._load(path)
        for name, suffix in conformance.CelRule(rule["path"], "", "").steps():
            node = node["properties"][name]
            if suffix:
                node = node["items" if suffix == "[]" else "additionalProperties"]
        assert any(v["rule"] == rule["rule"] for v in node["x-kubernetes-validations"]), rule


@pytest.mark.parametrize(
    ("text", "at_least_1ms"),
    [
        ("1ms", True),
        ("250ms", True),
        ("1.5s", True),
        ("1m30s", True),
        ("2h", True),
        (".5s", True),
        ("0s", False),
        ("0", False),
        ("999us", False),
        ("999µs", False),
        ("-5s", False),
    ],
)
def test_durations_are_read_as_go_reads_them(text, at_least_1ms):
    assert conformance.evaluate("duration(self) >= duration('1ms')", text) is at_least_1ms


@pytest.mark.parametrize("text", ["1d", "5", "5 s", "s", "1h-1m", "", "1.2.3s"])
def test_durations_go_refuses_fail_the_rule(text):
    verdict = conformance.evaluate("duration(self) >= duration('1ms')", text)
    assert isinstance(verdict, str) and "invalid duration" in verdict


# --- the pinned Kubernetes version ----------------------------------------------------------


def test_kubernetes_version_is_shipped_by_kubernetes_validate():
    """(tests/test_docs.py checks that docs/checks.md names it.)"""
    version = conformance.KUBERNETES_VERSION
    assert version in {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert kubernetes_validate.validate(namespace, version, strict=True) == version


# --- Inference Extension pools (examples/Pulumi.llm-pools.yaml) -----------------------------

POOLS_SOURCE = str(PROJECT_DIR / "examples" / "Pulumi.llm-pools.yaml")


@pytest.mark.parametrize(
    ("dataplane", "routing", "phrase"),
    [
        ("sidecar", "istio", "an InferencePool is a Gateway API backend: set routing: gateway-api"),
        ("ambient", "istio", "an InferencePool is a Gateway API backend: set routing: gateway-api"),
        ("ambient", "gateway-api", "dataplane is ambient: the endpoint picker scrapes"),
    ],
)
def test_pools_are_refused_in_every_other_mode(dataplane, routing, phrase):
    """Only sidecar + gateway-api has pools: switched as is (pools kept), the config refuses
    every other mode, naming the key; `mode_config` drops the pools there."""
    stack = load_stack(POOLS_SOURCE)
    raw, _ = unwrap_secure(copy.deepcopy(stack.raw))
    raw.update(dataplane=dataplane, routing=routing)
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, stack.name)
    assert f"models.chat.inferencePool: {phrase}" in str(refused.value)
    config, _ = mode_config(POOLS_SOURCE, dataplane, routing)
    assert all(m.inference_pool is None for m in config.models.values())
    assert {m for m in MODES if m != POOL_MODE} == {
        ("sidecar", "istio"),
        ("ambient", "istio"),
        ("ambient", "gateway-api"),
    }


@pytest.mark.parametrize("channel", conformance.GATEWAY_API_CHANNELS)
def test_pool_objects_and_routes_pass_the_schemas_and_cel_rules(channel):
    """In POOL_MODE: the modelled InferencePools (schemas-strict of the inference extension and
    its 2 CEL rules, evaluated, not skipped), the picker Services and DestinationRules, and the
    `<m>-pools` HTTPRoutes to InferencePools (Gateway API schemas and CEL of both channels)."""
    shared_path("inference-extension")
    shared_path("gateway-api")
    config, objects = mode_objects(POOLS_SOURCE, *POOL_MODE)
    pools = [o for o in objects if o["kind"] == "InferencePool"]
    routes = [
        o
        for o in objects
        if o["kind"] == "HTTPRoute"
        and any(
            ref.get("kind") == "InferencePool"
            for rule in o["spec"]["rules"]
            for ref in rule.get("backendRefs", [])
        )
    ]
    assert [p["metadata"]["name"] for p in pools] == ["chat-v1", "chat-v2", "coder-v3"]
    assert [r["metadata"]["name"] for r in routes] == ["chat-pools", "coder-pools"]
    plan = build_plan(config)
    modelled = plan.cluster_objects()[len(plan.objects()) :]
    assert {conformance.group_kind(o) for o in modelled} == {
        "inference.networking.k8s.io/InferencePool",
        "apps/Deployment",
        "core/Service",
        "networking.istio.io/DestinationRule",
    }
    for obj in [*modelled, *routes]:
        assert conformance.problems(obj, gateway_api_channel=channel) == []
    for obj in [*pools, *routes]:
        verdicts = conformance.cel_verdicts(obj, channel)
        assert [v for v in verdicts if not v.skipped], obj["metadata"]["name"]
    pool_rules = {v.rule.rule for v in conformance.cel_verdicts(pools[0], channel)}
    assert len(pool_rules) == 2, pool_rules
