"""The PromQL that the dashboard, the alerts and `python -m mesh promql` share: Istio's standard
metrics and labels, one series per version, every configured version, valid syntax."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from mesh.alerts import prometheus_rule
from mesh.config import StackConfig, parse_config
from mesh.dashboard import dashboard_config_map
from mesh.promql import model_queries
from mesh.stackfile import load_stack
from tests.conftest import STACKS, run_mesh, with_value, without

# The label names of istio_requests_total / istio_request_duration_milliseconds as Istio's
# standard metrics reference lists them, plus the histogram's `le`.
ISTIO_LABELS = {
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "source_canonical_service",
    "source_canonical_revision",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
    "grpc_response_status",
    "le",
}
METRIC_LABELS = {
    "istio_requests_total": ISTIO_LABELS - {"le"},
    "istio_request_duration_milliseconds_bucket": ISTIO_LABELS,
    "kube_deployment_status_replicas_available": {"namespace", "deployment"},
    "kube_deployment_spec_replicas": {"namespace", "deployment"},
}
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# The selector grammar these queries use: metric{label<op>"value",...}
SELECTOR = re.compile(r'([a-z_]+)\{((?:[a-z_]+(?:=|!=|=~|!~)"[^"\\]*",?)+)\}')
MATCHER = re.compile(r'([a-z_]+)(=~|!~|!=|=)"([^"\\]*)"')


@pytest.fixture(scope="module", params=STACKS)
def config(request) -> StackConfig:
    return load_stack(request.param).config


def _with_alerts(config: StackConfig) -> StackConfig:
    raw = config.model_dump(by_alias=True, exclude_none=True)
    return parse_config(with_value(raw, "telemetry.alerts.enabled", True), "test")


def every_query(config: StackConfig) -> list[str]:
    """Each query the stack emits anywhere: CLI comparisons, dashboard targets, alert rules."""
    queries = []
    for name in config.models:
        found = model_queries(config, name)
        queries += [query for _, query in [*found.comparisons(), *found.caller_views()]]
        queries += [q for q in (found.canary_error_excess, found.caller_error_excess) if q]
    boards = [
        json.loads(next(iter(dashboard_config_map(config, name)["data"].values())))
        for name in config.models
    ]
    queries += [
        target["expr"].replace("$__rate_interval", "5m")
        for board in boards
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    rule = prometheus_rule(_with_alerts(config))
    queries += [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    return queries


def _parser():
    return pytest.importorskip(
        "promql_parser", reason="promql-parser (requirements-dev.txt) parses PromQL for real"
    )


def _selectors(expr) -> list:
    parser = _parser()
    found = []

    def visit(node):
        if isinstance(node, parser.VectorSelector):
            found.append(node)

    parser.walk(expr, visit)
    return found


def test_every_query_parses_as_promql(config):
    parser = _parser()
    queries = every_query(config)
    assert len(queries) >= 4 * len(config.models)
    for query in queries:
        parser.parse(query)  # raises ValueError on any syntax error


def test_queries_read_only_known_metrics_and_their_labels(config):
    parser = _parser()
    for query in every_query(config):
        for vector in _selectors(parser.parse(query)):
            assert vector.name in METRIC_LABELS, query
            for matcher in vector.matchers.matchers:
                assert LABEL_NAME.match(matcher.name)
                assert matcher.name in METRIC_LABELS[vector.name], (vector.name, matcher.name)


def test_istio_requests_are_counted_once_by_one_reporter(config):
    """Every selector picks one reporter: the serving proxy in the stack's namespace, or the
    callers' proxies sending to one of the stack's Services; never both at once."""
    parser = _parser()
    services = {config.service_host(name) for name in config.models}
    reporters = set()
    for query in every_query(config):
        for vector in _selectors(parser.parse(query)):
            if vector.name.startswith("istio_"):
                matchers = {(m.name, str(m.op), m.value) for m in vector.matchers.matchers}
                equal = {name: value for name, op, value in matchers if op == "MatchOp.Equal"}
                reporters.add(equal["reporter"])
                if equal["reporter"] == "destination":
                    assert equal["destination_workload_namespace"] == config.namespace
                else:
                    assert equal["reporter"] == "source"
                    assert equal["destination_service"] in services
    assert reporters == {"destination", "source"}


def _grouping(node) -> list[str]:
    return list(node.modifier.labels) if node.modifier is not None else []


def test_each_comparison_gives_one_series_per_version(config):
    parser = _parser()
    for name in config.models:
        queries = model_queries(config, name)
        rate = parser.parse(queries.request_rate)
        assert (str(rate.op), _grouping(rate)) == ("sum", ["destination_version"])
        ratio = parser.parse(queries.error_ratio)
        assert isinstance(ratio, parser.BinaryExpr) and str(ratio.op) == "/"
        for side in (ratio.lhs, ratio.rhs):
            assert (str(side.op), _grouping(side)) == ("sum", ["destination_version"])
        for quantile, query in ((0.5, queries.p50_latency), (0.99, queries.p99_latency)):
            call = parser.parse(query)
            assert call.func.name == "histogram_quantile"
            assert call.args[0].val == quantile
            assert _grouping(call.args[1]) == ["destination_version", "le"]


def test_queries_select_exactly_the_configured_versions_of_their_model(config):
    for name, model in config.models.items():
        queries = model_queries(config, name)
        assert queries.versions == tuple(sorted(model.versions))
        for _, query in queries.comparisons():
            for _, matchers in SELECTOR.findall(query):
                found = {label: (op, value) for label, op, value in MATCHER.findall(matchers)}
                assert found["destination_app"] == ("=", name)
                op, value = found["destination_version"]
                assert set(value.split("|")) == set(model.versions)
                assert op == ("=~" if len(model.versions) > 1 else "=")


def test_caller_side_views_go_per_canonical_revision_of_the_models_service(config):
    """The caller's proxy names the version only by the endpoint's canonical revision when it
    failed the request itself (mesh.promql); the breakdowns keep every request to the model."""
    parser = _parser()
    for name, model in config.models.items():
        queries = model_queries(config, name)
        ratio = parser.parse(queries.caller_error_ratio)
        for side in (ratio.lhs, ratio.rhs):
            assert _grouping(side) == ["destination_canonical_revision"]
        assert _grouping(parser.parse(queries.caller_p99_latency).args[1]) == [
            "destination_canonical_revision",
            "le",
        ]
        assert _grouping(parser.parse(queries.caller_errors_by_flags)) == [
            "destination_canonical_revision",
            "response_flags",
        ]
        for query in (queries.caller_error_ratio, queries.caller_p99_latency):
            for _, matchers in SELECTOR.findall(query):
                found = {label: (op, value) for label, op, value in MATCHER.findall(matchers)}
                assert found["destination_service"] == ("=", config.service_host(name))
                _, value = found["destination_canonical_revision"]
                assert set(value.split("|")) == set(model.versions)
        for query in (queries.caller_errors_by_flags, queries.without_endpoint_ratio):
            for _, matchers in SELECTOR.findall(query):
                assert "destination_canonical_revision" not in matchers  # "latest" included


def test_errors_are_http_5xx_or_grpc_status_not_ok(config):
    for name in config.models:
        ratio = model_queries(config, name).error_ratio
        assert 'response_code=~"5.."' in ratio
        assert 'grpc_response_status!~"0|"' in ratio  # empty on plain HTTP, "0" is gRPC OK


def test_versions_without_errors_get_an_error_ratio_of_zero_not_a_gap(config):
    """PromQL drops versions that have no failed series; `or 0 * rate(all)` puts them back."""
    for name in config.models:
        queries = model_queries(config, name)
        (matchers,) = {m for _, m in SELECTOR.findall(queries.request_rate)}
        every_request = f"rate(istio_requests_total{{{matchers}}}[5m])"
        assert f" or 0 * {every_request}) / " in queries.error_ratio


def test_queries_are_well_formed_without_a_parser(config):
    """Balanced brackets and only selectors of the grammar above (runs without promql-parser)."""
    for query in every_query(config):
        depth = 0
        for char in query:
            depth += {"(": 1, ")": -1}.get(char, 0)
            assert depth >= 0, query
        assert depth == 0, query
        assert query.count("{") == query.count("}") == len(SELECTOR.findall(query))
        for _, matchers in SELECTOR.findall(query):
            assert all(LABEL_NAME.match(label) for label, _, _ in MATCHER.findall(matchers))


def test_canary_comparison_follows_the_canary_role_not_its_weight(dev):
    """The same query at every weight; when one side is sent nothing it has no sample
    (tests/test_promtool.py), so an idle canary needs no query of its own."""

    def excess(raw):
        return model_queries(parse_config(raw, "dev"), "sentiment").canary_error_excess

    at_10 = excess(with_value(dev, "models.sentiment.canary.weight", 10))
    assert at_10 is not None and 'destination_version="v2"' in at_10
    for weight in (0, 100):
        assert excess(with_value(dev, "models.sentiment.canary.weight", weight)) == at_10
    assert excess(without(dev, "models.sentiment.canary")) is None  # nothing to compare


def test_the_observed_split_is_each_revisions_share_of_every_caller_request(config):
    """Caller side, every request to the Service (also `latest`, no pod chosen), so the shares
    add up to 1 (numbers: tests/test_promtool.py)."""
    parser = _parser()
    for name in config.models:
        split = parser.parse(model_queries(config, name).traffic_split)
        assert isinstance(split, parser.BinaryExpr) and str(split.op) == "/"
        assert _grouping(split.lhs) == ["destination_canonical_revision"]
        assert _grouping(split.rhs) == []
        for _, matchers in SELECTOR.findall(model_queries(config, name).traffic_split):
            found = {label: (op, value) for label, op, value in MATCHER.findall(matchers)}
            assert found == {
                "reporter": ("=", "source"),
                "destination_service": ("=", config.service_host(name)),
            }


def _promql(*args: str) -> subprocess.CompletedProcess:
    return run_mesh("promql", *args)


def test_promql_command_prints_every_models_comparisons():
    result = _promql("prod")
    assert result.returncode == 0, result.stderr
    config = load_stack("prod").config
    for name in config.models:
        queries = model_queries(config, name)
        for _, query in [*queries.comparisons(), *queries.caller_views()]:
            assert query + "\n" in result.stdout
    assert "## sentiment: v3 stable 95%, v4 canary 5%" in result.stdout
    assert "## fraud: v7 stable 100%" in result.stdout


def test_promql_command_takes_a_model_and_a_window():
    result = _promql("prod", "--model", "fraud", "--window", "1m")
    assert result.returncode == 0, result.stderr
    assert "sentiment" not in result.stdout
    assert "[1m]" in result.stdout and "[5m]" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("prod", "--model", "nope"),
            "stack 'prod' has no model 'nope'; defined: fraud, sentiment",
        ),
        (("dev", "--window", "5 minutes"), "is not a Prometheus duration"),
        (("staging",), "no stack file"),
    ],
)
def test_promql_command_refuses_bad_input_in_one_line(args, message):
    result = _promql(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_label_values_are_quoted_as_promql_strings():
    from mesh.promql import selector

    assert selector("m", [("a", "=", 'x"y\\z')]) == 'm{a="x\\"y\\\\z"}'
