"""`routing: gateway-api`: the objects mesh/gatewayapi/ builds for the committed stacks, where
each kind of request lands (a small matcher that follows Istio's reading of an HTTPRoute), what
the config refuses, and that `mesh diff` gates a canary step in this mode too.

The matcher is Istio 1.30.3's: each rule split into one route per match, routes sorted stably
by the number of header matches (every rule matches PathPrefix `/`; conversion.go
`sortHTTPRoutes`), the first whose headers all hold wins (Exact: equal; RegularExpression: RE2
full match, as Envoy's safe_regex), 0-weight backends dropped. A mesh parent ignores the
route's hostnames and applies on every port of the Service (route_collections.go
`HTTPRouteCollection`): the dialled port does not choose the rule.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import re2

from mesh.config import ConfigError, parse_config
from mesh.gatewayapi.common import gateway_duration
from mesh.gatewayapi.routes import mirror_share
from mesh.plan import build_plan, stack_outputs
from mesh.render import render_objects, to_yaml
from mesh.routing import routing_from_objects
from tests.conformance import problems
from tests.conftest import PROJECT_DIR, shared_path, stack_raw, with_value
from tests.test_diff import IGNORED, Repo

GATEWAY_API = "gateway.networking.k8s.io/v1"
GRPC = {"content-type": "application/grpc"}


def gateway_api(stack: str, **paths) -> dict:
    raw = with_value(stack_raw(stack), "routing", "gateway-api")
    for path, value in paths.items():
        raw = with_value(raw, path.replace("__", "."), value)
    return raw


def objects_of(raw: dict, stack: str = "dev") -> list[dict]:
    return build_plan(parse_config(raw, stack)).objects()


def find(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def kinds(objects: list[dict]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for obj in objects:
        counted[obj["kind"]] = counted.get(obj["kind"], 0) + 1
    return counted


# --- the objects ----------------------------------------------------------------------------

# stack -> (Gateway namespace, HTTPRoutes, Services, DestinationRules): prod has TLS (the
# redirect route) and circuit breaking (a DestinationRule per version); dev neither.
STACKS = [
    ("prod", "istio-system", ["fraud", "ml-gateway-https-redirect", "sentiment"], 5, 3),
    ("dev", "istio-system", ["sentiment"], 3, 0),
]


@pytest.mark.parametrize(("stack", "gateway_ns", "routes", "services", "rules"), STACKS)
def test_the_gateway_api_objects_replace_the_istio_routing(
    stack, gateway_ns, routes, services, rules
):
    objects = objects_of(gateway_api(stack), stack)
    counted = kinds(objects)
    assert "VirtualService" not in counted
    assert counted.get("DestinationRule", 0) == rules
    assert counted["Service"] == services
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "HTTPRoute") == routes
    (gateway,) = [o for o in objects if o["kind"] == "Gateway"]
    assert (gateway["apiVersion"], gateway["metadata"]["namespace"]) == (GATEWAY_API, gateway_ns)
    assert gateway["spec"]["gatewayClassName"] == "istio"
    for rule in (o for o in objects if o["kind"] == "DestinationRule"):
        assert "subsets" not in rule["spec"]
        assert rule["spec"]["host"] == f"{rule['metadata']['name']}.ml-serving.svc.cluster.local"


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_every_gateway_api_object_passes_the_standard_schemas_and_cel_rules(stack):
    shared_path("gateway-api")  # skips with the reason when ../shared is absent
    found, checked = [], 0
    for obj in objects_of(gateway_api(stack), stack):
        if obj["apiVersion"] == GATEWAY_API:
            found += problems(obj, gateway_api_channel="standard")
            checked += 1
    assert checked >= 2  # the Gateway and a route per model
    assert found == []


def test_a_version_service_has_the_model_service_ports_and_selects_its_version():
    objects = objects_of(gateway_api("prod"), "prod")
    model, version = find(objects, "Service", "sentiment"), find(objects, "Service", "sentiment-v4")
    assert version["spec"]["ports"] == model["spec"]["ports"]
    assert version["spec"]["selector"] == {"app": "sentiment", "version": "v4"}


def test_the_listeners_admit_routes_of_the_serving_namespace_only_and_mutual_tls_verifies_clients():
    raw = gateway_api("prod", gateway__tls__mode="MUTUAL")
    gateway = find(objects_of(raw, "prod"), "Gateway", "ml-gateway")
    assert [
        (lis["name"], lis["port"], lis["protocol"]) for lis in gateway["spec"]["listeners"]
    ] == [
        ("http", 80, "HTTP"),
        ("https", 443, "HTTPS"),
    ]
    for listener in gateway["spec"]["listeners"]:
        assert listener["allowedRoutes"]["namespaces"] == {
            "from": "Selector",
            "selector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-serving"}},
        }
    validation = gateway["spec"]["tls"]["frontend"]["default"]["validation"]
    assert validation["caCertificateRefs"] == [
        {"group": "", "kind": "Secret", "name": "models-example-com-tls"}
    ]


# --- where requests land ------------------------------------------------------------------


def _holds(header: dict, request: dict[str, str]) -> bool:
    value = {k.lower(): v for k, v in request.items()}.get(header["name"].lower())
    if value is None:
        return False
    if header.get("type", "Exact") == "Exact":
        return value == header["value"]
    return re2.fullmatch(header["value"], value) is not None


def route_to(route: dict, parent: str, host: str, request: dict[str, str]) -> dict[tuple, float]:
    """(Service, port) -> percent for a request reaching `route` through `parent` ("gateway"
    with `host`, or "mesh"), as Istio orders and matches the route's rules."""
    spec = route["spec"]
    if parent == "gateway":
        assert host in spec["hostnames"]
    else:
        assert any(p["kind"] == "Service" for p in spec["parentRefs"])
    split = [(m, rule) for rule in spec["rules"] for m in rule.get("matches") or [{}]]
    split.sort(key=lambda item: -len(item[0].get("headers") or []))
    for match, rule in split:
        if all(_holds(h, request) for h in match.get("headers") or []):
            refs = [r for r in rule["backendRefs"] if r.get("weight", 1) > 0]
            total = sum(r.get("weight", 1) for r in refs)
            return {(r["name"], r["port"]): r.get("weight", 1) * 100 / total for r in refs}
    raise AssertionError("no rule takes the request: Istio answers 404")


AB_RULES = {
    "beta": {"version": "v2", "headers": {"x-beta": {"exact": "1"}, "x-team": {"prefix": "ml."}}},
    "cookie": {"version": "v2", "cookie": r"^(.*?;\s*)?(beta=1)(;.*)?$", "priority": 200},
    "pinned": {"version": "v1", "headers": {"x-version": {"exact": "v1"}}, "priority": 300},
}
HOST = "sentiment.models.dev.example.com"
WEIGHTED_REST = {("sentiment-v1", 8501): 90.0, ("sentiment-v2", 8501): 10.0}
WEIGHTED_GRPC = {("sentiment-v1", 8500): 90.0, ("sentiment-v2", 8500): 10.0}
REQUESTS = [
    ("REST at the ingress", "gateway", {}, WEIGHTED_REST),
    ("gRPC at the ingress", "gateway", GRPC, WEIGHTED_GRPC),
    (
        "gRPC+proto at the ingress",
        "gateway",
        {"content-type": "application/grpc+proto"},
        WEIGHTED_GRPC,
    ),
    ("mesh REST (port 8501)", "mesh", {}, WEIGHTED_REST),
    ("mesh gRPC (port 8500)", "mesh", GRPC, WEIGHTED_GRPC),
    (
        "header rule",
        "gateway",
        {"x-beta": "1", "x-team": "ml.search"},
        {("sentiment-v2", 8501): 100.0},
    ),
    ("header rule, one header short", "gateway", {"x-beta": "1"}, WEIGHTED_REST),
    (
        "header rule over gRPC",
        "mesh",
        {"x-beta": "1", "x-team": "ml.x", **GRPC},
        {("sentiment-v2", 8500): 100.0},
    ),
    (
        "prefix is a prefix, not a regex",
        "gateway",
        {"x-beta": "1", "x-team": "mlXsearch"},
        WEIGHTED_REST,
    ),
    ("cookie rule", "gateway", {"cookie": "a=b; beta=1"}, {("sentiment-v2", 8501): 100.0}),
    ("cookie rule, other cookie", "gateway", {"cookie": "beta=0"}, WEIGHTED_REST),
    ("pinned version", "mesh", {"x-version": "v1", **GRPC}, {("sentiment-v1", 8500): 100.0}),
    (
        "two rules match: the first by priority",
        "gateway",
        {"cookie": "beta=1", "x-version": "v1"},
        {("sentiment-v2", 8501): 100.0},
    ),
]


@pytest.mark.parametrize(
    ("parent", "request_headers", "lands"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
def test_each_request_lands_on_its_version_service_and_port(parent, request_headers, lands):
    raw = gateway_api("dev", models__sentiment__matches=AB_RULES)
    route = find(objects_of(raw), "HTTPRoute", "sentiment")
    assert route_to(route, parent, HOST, request_headers) == lands


def test_the_mirror_copies_its_share_of_the_weighted_rules_and_timeouts_are_gateway_durations():
    raw = gateway_api(
        "dev",
        models__sentiment__canary__weight=0,
        models__sentiment__mirror={"version": "v2", "percent": 12.5},
        models__sentiment__timeout="1.5s",
    )
    route = find(objects_of(raw), "HTTPRoute", "sentiment")
    for rule in route["spec"]["rules"]:
        assert rule["timeouts"] == {"request": "1s500ms"}
        mirror = rule["filters"][0]["requestMirror"]
        assert mirror["fraction"] == {"numerator": 1, "denominator": 8}
        assert mirror["backendRef"]["name"] == "sentiment-v2"
    routing = routing_from_objects(objects_of(raw))["sentiment"]
    assert routing.versions["v2"].mirror == 12.5


@pytest.mark.parametrize(
    ("duration", "written"),
    [("250ms", "250ms"), ("90s", "1m30s"), ("1.5s", "1s500ms"), ("2h", "2h")],
)
def test_durations_are_written_the_gateway_api_way(duration, written):
    assert gateway_duration(duration) == written


@pytest.mark.parametrize(
    ("percent", "share"),
    [(5, {"percent": 5}), (0.1, {"fraction": {"numerator": 1, "denominator": 1000}})],
)
def test_mirror_shares(percent, share):
    assert mirror_share(percent) == share


def test_retries_on_the_experimental_channel_become_retry_and_backend_request_timeouts():
    raw = gateway_api(
        "dev",
        platform__gatewayApiChannel="experimental",
        models__sentiment__timeout="10s",
        models__sentiment__retries={
            "attempts": 3,
            "perTryTimeout": "2s",
            "retryOn": "connect-failure,503",
        },
    )
    route = find(objects_of(raw), "HTTPRoute", "sentiment")
    for rule in route["spec"]["rules"]:
        assert rule["retry"] == {"attempts": 3, "codes": [503]}
        assert rule["timeouts"] == {"request": "10s", "backendRequest": "2s"}


def test_routing_reads_relative_weights_and_match_rules_back():
    raw = gateway_api("dev", models__sentiment__matches=AB_RULES)
    routing = routing_from_objects(objects_of(raw), parse_config(raw, "dev"))["sentiment"]
    assert routing.versions["v1"].weight == 90 and routing.versions["v2"].weight == 10
    assert routing.versions["v2"].matches == ("beta", "cookie")
    assert routing.versions["v1"].matches == ("pinned",)
    assert routing.roles == {"v1": "stable", "v2": "canary"}
    assert routing.hosts == (HOST,)


# --- what the config refuses --------------------------------------------------------------

REFUSED = [
    (
        {"models__sentiment__fault": {"abort": {"httpStatus": 503, "percent": 10}}},
        "models.sentiment.fault",
        "HTTPRoute has no fault injection",
    ),
    (
        {"models__sentiment__retries": {"attempts": 2}},
        "models.sentiment.retries",
        "HTTPRoute `retry` is in the experimental channel only",
    ),
    (
        {
            "platform__gatewayApiChannel": "experimental",
            "models__sentiment__retries": {"attempts": 0},
        },
        "models.sentiment.retries.attempts",
        "retry.attempts is at least 1",
    ),
    (
        {
            "platform__gatewayApiChannel": "experimental",
            "models__sentiment__retries": {"attempts": 2, "retryOn": "5xx"},
        },
        "models.sentiment.retries.retryOn",
        "cannot say 5xx",
    ),
    (
        {
            "models__sentiment__matches": {
                "a": {"version": "v2", "headers": {"x-a": {"exact": "1"}}, "priority": 1},
                "b": {
                    "version": "v2",
                    "headers": {"x-a": {"exact": "1"}, "x-b": {"exact": "2"}},
                    "priority": 2,
                },
            }
        },
        "models.sentiment.matches.b.priority",
        "'b' (2 conditions) would be tried before 'a' (1)",
    ),
    (
        {
            "models__sentiment__matches": {
                "g": {"version": "v2", "headers": {"content-type": {"exact": "x"}}}
            }
        },
        "models.sentiment.matches.g.headers.content-type",
        "cannot set its own content-type condition",
    ),
]


@pytest.mark.parametrize(("edits", "path", "message"), REFUSED, ids=[r[1] for r in REFUSED])
def test_what_gateway_api_cannot_express_is_refused_with_its_path(edits, path, message):
    with pytest.raises(ConfigError) as refused:
        parse_config(gateway_api("dev", **edits), "dev")
    assert path in str(refused.value) and message in str(refused.value)


def test_the_same_settings_are_fine_with_istio_routing():
    for edits, _, _ in REFUSED:
        raw = stack_raw("dev")
        for key, value in edits.items():
            raw = with_value(raw, key.replace("__", "."), value)
        parse_config(raw, "dev")


# --- the default mode ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_routing_istio_is_the_default_and_renders_no_gateway_api_object(stack):
    default = parse_config(stack_raw(stack), stack)
    explicit = parse_config(with_value(stack_raw(stack), "routing", "istio"), stack)
    assert to_yaml(render_objects(default, set())) == to_yaml(render_objects(explicit, set()))
    assert not [o for o in render_objects(default, set()) if o["apiVersion"] == GATEWAY_API]
    assert "routing" not in stack_outputs(default)


# --- mesh diff -----------------------------------------------------------------------------


@pytest.fixture
def gateway_api_repo(tmp_path) -> Repo:
    repo = Repo(tmp_path / "ml-mesh")
    shutil.copytree(PROJECT_DIR, repo.path, ignore=IGNORED, symlinks=True)
    repo.git("init", "-q", "-b", "main")
    repo.edit("prod", "routing", "gateway-api")
    repo.commit("prod routes with the Gateway API")
    repo.git("checkout", "-q", "-b", "change")
    return repo


def test_mesh_diff_refuses_a_too_large_canary_step_and_lists_only_the_http_route(gateway_api_repo):
    gateway_api_repo.edit("prod", "models.sentiment.canary.weight", 40)
    refused = gateway_api_repo.diff("prod")
    assert refused.returncode == 1
    assert (
        "ml-mesh: refused (weight-step): sentiment: v4 goes from 5% to 40% (+35 points), more "
        "than maxWeightStep 25 of this protected stack"
    ) in refused.stderr
    gateway_api_repo.edit("prod", "models.sentiment.canary.weight", 20)
    allowed = gateway_api_repo.diff("prod")
    assert allowed.returncode == 0, allowed.stderr
    objects = allowed.stdout.split("### Objects", 1)[1].split("\n### ", 1)[0]
    assert [line for line in objects.splitlines() if line.startswith("- ")] == [
        "- `HTTPRoute/sentiment`"
    ]
    assert "`spec.rules[http-rest].backendRefs[sentiment-v4].weight`: `5` → `20`" in allowed.stdout


def test_mesh_diff_gates_a_new_match_rule_in_gateway_api_mode(gateway_api_repo):
    gateway_api_repo.edit(
        "prod",
        "models.sentiment.matches",
        {"beta": {"version": "v4", "headers": {"x-beta": {"exact": "1"}}}},
    )
    result = gateway_api_repo.diff("prod")
    assert result.returncode == 1
    assert "ml-mesh: refused (match-change): sentiment: match rule 'beta' is added" in result.stderr


def test_a_config_that_refuses_gateway_api_is_not_rendered_half(tmp_path):
    raw = copy.deepcopy(
        gateway_api("dev", models__sentiment__fault={"delay": {"fixedDelay": "1s", "percent": 5}})
    )
    with pytest.raises(ConfigError):
        parse_config(raw, "dev")
