"""A/B match rules, shadow traffic, timeouts and retries: config in, VirtualService routes out."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mesh.config import parse_config
from mesh.plan import build_plan, model_outputs
from mesh.render import traffic_table
from tests.conftest import shared_path, with_value
from tests.harness import run_program, try_program

BETA_HEADER = {"version": "v2", "headers": {"x-beta-user": {"exact": "1"}}}
BETA_COOKIE = {"version": "v2", "cookie": "^(.*?;)?(beta=1)(;.*)?$"}


def _with_v3(raw: dict) -> dict:
    return with_value(
        raw,
        "models.sentiment.versions.v3",
        {"image": "tensorflow/serving:2.16.1", "modelPath": "sentiment/3"},
    )


@pytest.fixture
def ab(dev) -> dict:
    """dev with a header rule, a cookie rule, 5% shadow traffic to v3, timeout and retries."""
    raw = _with_v3(dev)
    raw = with_value(raw, "models.sentiment.matches", {"beta": BETA_HEADER, "cookie": BETA_COOKIE})
    raw = with_value(raw, "models.sentiment.mirror", {"version": "v3", "percent": 5})
    raw = with_value(raw, "models.sentiment.timeout", "10s")
    return with_value(
        raw,
        "models.sentiment.retries",
        {"attempts": 2, "perTryTimeout": "3s", "retryOn": "connect-failure,refused-stream,503"},
    )


def _vs(raw: dict, stack: str = "dev", name: str = "sentiment") -> dict:
    objects = build_plan(parse_config(raw, stack)).objects()
    (vs,) = [o for o in objects if o["kind"] == "VirtualService" and o["metadata"]["name"] == name]
    return vs


def _subsets(route: dict) -> list[str]:
    return [d["destination"]["subset"] for d in route["route"]]


def test_match_rules_come_before_the_weighted_route_on_every_port(ab):
    routes = _vs(ab)["spec"]["http"]
    assert [r["name"] for r in routes] == [
        "beta-grpc",
        "cookie-grpc",
        "grpc",
        "beta-http-rest",
        "cookie-http-rest",
        "http-rest",
    ]
    assert [_subsets(r) for r in routes] == [["v2"], ["v2"], ["v1", "v2"]] * 2
    assert all("match" in r for r in routes[:-1]), "only the last route may lack a match"
    assert "match" not in routes[-1]


def test_a_grpc_rule_matches_by_port_in_the_mesh_and_by_content_type_at_the_gateway(ab):
    """At the gateway istiod drops a `port: 8500` match (the server port is 80/443), so the
    gateway block selects gRPC by content type, scoped to our Gateway."""
    beta_grpc, cookie_grpc = _vs(ab)["spec"]["http"][:2]
    beta = {"x-beta-user": {"exact": "1"}}
    grpc = {"content-type": {"prefix": "application/grpc"}}
    assert beta_grpc["match"] == [
        {"name": "beta", "headers": beta, "gateways": ["mesh"], "port": 8500},
        {"name": "beta", "gateways": ["ml-serving/ml-gateway"], "headers": {**beta, **grpc}},
    ]
    cookie = {"cookie": {"regex": "^(.*?;)?(beta=1)(;.*)?$"}}
    assert [m["headers"] for m in cookie_grpc["match"]] == [cookie, {**cookie, **grpc}]
    assert beta_grpc["route"][0]["destination"]["port"] == {"number": 8500}


def test_match_on_the_rest_port_has_no_port_condition_so_gateway_requests_match(ab):
    beta_rest = _vs(ab)["spec"]["http"][3]
    assert beta_rest["match"] == [{"name": "beta", "headers": {"x-beta-user": {"exact": "1"}}}]
    assert beta_rest["route"][0]["destination"]["port"] == {"number": 8501}


def test_rules_are_ordered_by_priority_then_by_name(ab):
    raw = with_value(ab, "models.sentiment.matches.cookie.priority", 10)
    rest_rules = [r["name"] for r in _vs(raw)["spec"]["http"][3:5]]
    assert rest_rules == ["cookie-http-rest", "beta-http-rest"]


def test_one_rule_combines_headers_and_cookie_in_one_condition(dev):
    rule = {**BETA_HEADER, "cookie": "^(.*?;)?(beta=1)(;.*)?$", "headers": {"x-b": {"prefix": "a"}}}
    raw = with_value(dev, "models.sentiment.matches.both", rule)
    (condition,) = _vs(raw)["spec"]["http"][2]["match"]
    assert condition["headers"] == {
        "x-b": {"prefix": "a"},
        "cookie": {"regex": "^(.*?;)?(beta=1)(;.*)?$"},
    }


def test_mirror_copies_the_weighted_route_of_every_port_to_its_own_port(ab):
    routes = {r["name"]: r for r in _vs(ab)["spec"]["http"]}
    for name, port in (("grpc", 8500), ("http-rest", 8501)):
        assert routes[name]["mirror"] == {
            "host": "sentiment.ml-serving.svc.cluster.local",
            "subset": "v3",
            "port": {"number": port},
        }
        assert routes[name]["mirrorPercentage"] == {"value": 5}
    assert "mirror" not in routes["beta-http-rest"], "matched requests are not mirrored"


def test_mirror_percentage_keeps_decimals(ab):
    raw = with_value(ab, "models.sentiment.mirror.percent", 0.5)
    assert _vs(raw)["spec"]["http"][-1]["mirrorPercentage"] == {"value": 0.5}


def test_timeout_and_retries_apply_to_every_route(ab):
    for route in _vs(ab)["spec"]["http"]:
        assert route["timeout"] == "10s"
        assert route["retries"] == {
            "attempts": 2,
            "perTryTimeout": "3s",
            "retryOn": "connect-failure,refused-stream,503",
        }


def test_retries_can_be_turned_off(dev):
    raw = with_value(dev, "models.sentiment.retries", {"attempts": 0})
    assert _vs(raw)["spec"]["http"][-1]["retries"] == {"attempts": 0}


def test_no_routing_extras_keep_the_routes_as_before(dev):
    routes = _vs(dev)["spec"]["http"]
    assert [r["name"] for r in routes] == ["grpc", "http-rest"]
    assert all(set(r) <= {"name", "match", "route"} for r in routes)


def test_virtual_service_with_every_extra_passes_istios_strict_schema(ab):
    schema = json.loads(
        shared_path(
            "istio", "schemas-strict", "networking.istio.io", "v1", "VirtualService.json"
        ).read_text()
    )
    jsonschema.validate(_vs(ab), schema)


def test_a_version_reached_only_by_a_match_or_a_mirror_needs_replicas(ab):
    no_canary = with_value(ab, "models.sentiment.canary.weight", 0)
    config = parse_config(no_canary, "dev").models["sentiment"]
    assert config.traffic() == {"v1": 100}
    assert set(config.routed_versions()) == {"v1", "v2", "v3"}
    for version, reason in (("v2", "match rule 'beta'"), ("v3", "5% mirrored traffic")):
        raw = with_value(no_canary, f"models.sentiment.versions.{version}.replicas", 0)
        _, error = try_program(raw)
        assert f"models.sentiment.versions.{version}.replicas: version '{version}'" in str(error)
        assert reason in str(error)


def test_a_mirror_at_zero_percent_needs_no_replicas(ab):
    raw = with_value(ab, "models.sentiment.mirror.percent", 0)
    raw = with_value(raw, "models.sentiment.versions.v3.replicas", 0)
    assert "v3" not in parse_config(raw, "dev").models["sentiment"].routed_versions()


def test_stack_outputs_and_the_traffic_table_show_matches_and_mirror(ab):
    run = run_program(ab)
    sentiment = run.outputs["models"]["sentiment"]
    assert sentiment["matches"] == {"beta": "v2", "cookie": "v2"}
    assert sentiment["mirror"] == {"version": "v3", "percent": 5}
    assert sentiment["routing"] == "ml-mesh"
    table = traffic_table(parse_config(ab, "dev")).splitlines()
    assert table[0].split() == [
        "MODEL",
        "SERVER",
        "VERSION",
        "ROLE",
        "TRAFFIC",
        "MATCH",
        "MIRROR",
        "REPLICAS",
    ]
    v2_row = ["sentiment", "tensorflow-serving", "v2", "canary", "10%", "beta,cookie", "1"]
    assert table[2].split() == v2_row
    assert table[3].split() == ["sentiment", "tensorflow-serving", "v3", "0%", "5%", "1"]


def test_outputs_without_extras_say_so(dev):
    outputs = model_outputs(parse_config(dev, "dev"), "sentiment")
    assert (outputs["matches"], outputs["mirror"]) == ({}, None)


# (what a user got wrong, the edit, the path the message must name, a phrase of the fix)
MISTAKES = [
    (
        "uppercase header name",
        "models.sentiment.matches.beta",
        {"version": "v2", "headers": {"X-Beta": {"exact": "1"}}},
        "models.sentiment.matches.beta.headers.X-Beta",
        "lowercase",
    ),
    (
        "cookie given as a header",
        "models.sentiment.matches.beta",
        {"version": "v2", "headers": {"cookie": {"exact": "a=1"}}},
        "models.sentiment.matches.beta.headers.cookie",
        "`cookie` regex",
    ),
    (
        "regex with a lookahead",
        "models.sentiment.matches.beta",
        {"version": "v2", "cookie": "(?=beta)"},
        "models.sentiment.matches.beta.cookie",
        "RE2",
    ),
    (
        "empty prefix",
        "models.sentiment.matches.beta",
        {"version": "v2", "headers": {"x-b": {"prefix": ""}}},
        "models.sentiment.matches.beta.headers.x-b.prefix",
        "an empty prefix (it must have at least 1 character) matches every value",
    ),
    *[
        (
            f"header regex {regex!r} that matches every request",
            "models.sentiment.matches.everyone",
            {"version": "v2", "headers": {"user-agent": {"regex": regex}}},
            "models.sentiment.matches.everyone.headers.user-agent.regex",
            f"regex {regex!r} full-matches {reason} (Envoy's safe_regex matches the whole "
            "value), so it is no condition",
        )
        for regex, reason in (
            (".*", "the empty value"),
            ("^.*$", "the empty value"),
            ("(|x)", "the empty value"),
            ("x*", "the empty value"),
            (".+", "any value"),
            (r"\S.*", "any value"),
        )
    ],
    (
        "cookie regex that matches every cookie",
        "models.sentiment.matches.everyone",
        {"version": "v2", "cookie": "^(.*)$"},
        "models.sentiment.matches.everyone.cookie",
        "write a regex that requires the cookie, e.g. ^(.*?;)?(beta=1)(;.*)?$",
    ),
    (
        "two kinds in one header match",
        "models.sentiment.matches.beta",
        {"version": "v2", "headers": {"x-b": {"exact": "1", "prefix": "1"}}},
        "models.sentiment.matches.beta.headers.x-b",
        "exactly one of exact, prefix, regex",
    ),
    (
        "rule without a condition",
        "models.sentiment.matches.beta",
        {"version": "v2"},
        "models.sentiment.matches.beta",
        "at least one condition",
    ),
    (
        "rule to an unknown version",
        "models.sentiment.matches.beta",
        {"version": "v9", "headers": {"x-b": {"exact": "1"}}},
        "models.sentiment.matches.beta.version",
        "defined: v1, v2",
    ),
    (
        "mirror to a version in the live route",
        "models.sentiment.mirror",
        {"version": "v2", "percent": 5},
        "models.sentiment.mirror.version",
        "already receives live traffic (10%)",
    ),
    (
        "mirror above 100 percent",
        "models.sentiment.mirror",
        {"version": "v2", "percent": 101},
        "models.sentiment.mirror.percent",
        "less than or equal to 100",
    ),
    (
        "mirror to an unknown version",
        "models.sentiment.mirror",
        {"version": "v9", "percent": 1},
        "models.sentiment.mirror.version",
        "not a version of this model",
    ),
    ("timeout without unit", "models.sentiment.timeout", "10", "models.sentiment.timeout", "Go"),
    ("timeout of zero", "models.sentiment.timeout", "0s", "models.sentiment.timeout", "1ms"),
    (
        "timeout below a millisecond step",
        "models.sentiment.timeout",
        "1500us",
        "models.sentiment.timeout",
        "whole number of milliseconds",
    ),
    (
        "retries off with a per-try timeout",
        "models.sentiment.retries",
        {"attempts": 0, "perTryTimeout": "1s"},
        "models.sentiment.retries.perTryTimeout",
        "not allowed with attempts 0",
    ),
    (
        "retryOn with a space",
        "models.sentiment.retries",
        {"attempts": 1, "retryOn": "5xx, reset"},
        "models.sentiment.retries.retryOn",
        "without spaces",
    ),
    (
        "retryOn unknown",
        "models.sentiment.retries",
        {"attempts": 1, "retryOn": "5xx,timeout"},
        "models.sentiment.retries.retryOn",
        "'timeout'",
    ),
    (
        "canary without a weight",
        "models.sentiment.canary",
        {"version": "v2"},
        "models.sentiment.canary.weight",
        "is required",
    ),
]


@pytest.mark.parametrize(
    ("edit", "value", "path", "hint"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_routing_mistake_is_refused_naming_its_path(dev, edit, value, path, hint):
    run, error = try_program(with_value(dev, edit, value))
    message = str(error)
    assert message.startswith(f"ml-mesh: invalid config for stack 'dev': {path}: "), message
    assert hint in message
    assert "\n" not in message
    assert run.resources == []


@pytest.mark.parametrize(
    "regex", ["^beta$", "^(.*?;)?(beta=1)(;.*)?$", "^Mozilla/.*Firefox/.*$", "1|2", "[0-9]+"]
)
def test_a_regex_that_selects_some_requests_is_a_condition(dev, regex):
    from mesh.config.routing import catches_everything

    assert not catches_everything(regex)
    rule = {"version": "v2", "headers": {"x-b": {"regex": regex}}, "cookie": regex}
    parse_config(with_value(dev, "models.sentiment.matches.beta", rule), "dev")


def test_retries_that_outlast_the_timeout_are_refused(dev):
    raw = with_value(dev, "models.sentiment.timeout", "5s")
    raw = with_value(raw, "models.sentiment.retries", {"attempts": 3, "perTryTimeout": "2s"})
    _, error = try_program(raw)
    assert "models.sentiment.retries.perTryTimeout: attempts x perTryTimeout = 6000ms" in str(error)
    fits = with_value(raw, "models.sentiment.retries.perTryTimeout", "1500ms")
    assert try_program(fits)[1] is None


@pytest.mark.parametrize("duration", ["250ms", "1m30s", "1.5s", "2h"])
def test_go_durations_are_accepted(dev, duration):
    raw = with_value(dev, "models.sentiment.timeout", duration)
    assert parse_config(raw, "dev").models["sentiment"].timeout == duration


def test_a_header_value_set_as_a_number_is_matched_as_text(dev):
    """`pulumi config set --path '...headers["x-beta"].exact' 1` stores the number 1."""
    rule = {"version": "v2", "headers": {"x-beta": {"exact": 1}}}
    raw = with_value(dev, "models.sentiment.matches.beta", rule)
    (condition,) = _vs(raw)["spec"]["http"][-2]["match"]
    assert condition["headers"] == {"x-beta": {"exact": "1"}}


def test_a_mirror_percent_set_as_text_is_read_as_a_number(ab):
    """`pulumi config set --path` stores 12.5 as the string "12.5" (only integers become numbers)."""
    raw = with_value(ab, "models.sentiment.mirror.percent", "12.5")
    assert _vs(raw)["spec"]["http"][-1]["mirrorPercentage"] == {"value": 12.5}
