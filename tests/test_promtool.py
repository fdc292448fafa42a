"""The alerts, the dashboard's queries and `mesh promql`'s, evaluated by a real Prometheus:
promtool (Debian's `prometheus` package; `.ci/run` installs it) checks the rendered
PrometheusRule, then runs unit tests over synthetic Istio and kube-state-metrics series.

The series follow what Istio's proxies report (istio/proxy istio_stats.cc, see mesh.promql):
a request a pod answered is counted by both proxies with the full destination labels; a 503
the caller's proxy made after choosing a pod (UO, UF, URX) only on the caller side, with the
pod's workload and canonical revision but `destination_version="unknown"`; one made without a
pod (UH) with `destination_workload="unknown"` and canonical revision `latest`.

The expected numbers are worked out by hand from the per-minute counts of each scenario, so
a query that sums, divides or selects the wrong series fails here.

The rules do not depend on the weights (tests/test_weight_shift.py): a version sent nothing
must stay silent because its expressions have no sample, which the idle scenarios prove
against the rules rendered with the canary at 0 (or at 100, stable idle).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mesh.alerts import CALLER_CANARY_ERRORS, CANARY_ERRORS, NO_READY_PODS, WITHOUT_ENDPOINT
from mesh.config import StackConfig, parse_config
from mesh.dashboard import RATE_WINDOW, dashboard
from mesh.promql import compared_versions, model_queries
from tests.conftest import of_kind, plan_objects, run_mesh, stack_raw, with_value

MINUTES = 40  # samples per series, one a minute
EVAL = "30m"  # past every `for` (10m, 2m) and a full 5m rate window
WINDOW = "5m"
SCALE = 10_000  # queries are compared as round(SCALE * value): exact, whatever the float noise
ALERTS = (CANARY_ERRORS, CALLER_CANARY_ERRORS, WITHOUT_ENDPOINT, NO_READY_PODS)


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool's path; in CI (CI=true) its absence fails the run instead of skipping."""
    path = shutil.which("promtool")
    if path is None:
        message = (
            "promtool is not installed (Debian: apt-get install --no-install-recommends "
            "prometheus; .ci/run does it)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must run the promtool tests", pytrace=False)
        pytest.skip(message)
    return path


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


# The stacks whose rules are tested: prod as committed, dev with its alerts turned on.
STACK_ALERTS = {"prod": {}, "dev": {"telemetry.alerts.enabled": True}}


def _raw(stack: str, edits: dict | None = None) -> dict:
    raw = stack_raw(stack)
    for path, value in {**STACK_ALERTS[stack], **(edits or {})}.items():
        raw = with_value(raw, path, value)
    return raw


def _rule(raw: dict, stack: str) -> dict:
    (rule,) = of_kind(plan_objects(raw, stack), "PrometheusRule")
    return rule


def _write_rules(rule: dict, directory: Path) -> Path:
    """The PrometheusRule's `spec` is a Prometheus rule file (the operator mounts it as one)."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Synthetic series


@dataclass
class Traffic:
    """Per-minute request counts of one model, by who reported them and how they ended."""

    namespace: str
    model: str
    service: str
    series: list[dict] = field(default_factory=list)
    ready: dict[str, int] = field(default_factory=dict)  # version -> available replicas
    desired: dict[str, int] = field(default_factory=dict)  # version -> spec replicas

    def _labels(self, reporter: str, version: str, endpoint: str) -> dict:
        """Destination labels as the reporting proxy fills them in. endpoint: "peer" (a pod
        answered), "endpoint" (the caller's proxy chose a pod but none answered), "none"."""
        labels = {
            "reporter": reporter,
            "destination_service": self.service,
            "destination_service_name": self.model,
        }
        if endpoint == "none":
            return {
                **labels,
                "destination_workload": "unknown",
                "destination_workload_namespace": "unknown",
                "destination_app": "unknown",
                "destination_version": "unknown",
                "destination_canonical_revision": "latest",
            }
        return {
            **labels,
            "destination_workload": f"{self.model}-{version}",
            "destination_workload_namespace": self.namespace,
            "destination_app": self.model if endpoint == "peer" else "unknown",
            "destination_version": version if endpoint == "peer" else "unknown",
            "destination_canonical_revision": version,
        }

    def answered(self, version: str, per_minute: int, code: str = "200", grpc: str = "") -> None:
        """Requests a pod of `version` answered: both proxies count them."""
        for reporter in ("destination", "source"):
            labels = {**self._labels(reporter, version, "peer"), "response_code": code}
            labels |= {"response_flags": "-", "request_protocol": "grpc" if grpc else "http"}
            self._add({**labels, "grpc_response_status": grpc} if grpc else labels, per_minute)

    def stopped(self, version: str, answered: int, failed: int) -> None:
        """A version that served requests (some 503s) before the window and none since: its
        counters exist and stay flat, so every rate is 0 and every ratio 0/0."""
        for reporter in ("destination", "source"):
            for code, total in (("200", answered), ("503", failed)):
                labels = {**self._labels(reporter, version, "peer"), "response_code": code}
                labels |= {"response_flags": "-", "request_protocol": "http"}
                self._add({**labels, "__flat__": total}, 0)

    def failed_by_caller(self, version: str, per_minute: int, flags: str) -> None:
        """503s the caller's proxy made itself; "UH" chooses no pod, so no version."""
        endpoint = "none" if flags == "UH" else "endpoint"
        labels = {**self._labels("source", version, endpoint), "response_code": "503"}
        labels |= {"response_flags": flags, "request_protocol": "http"}
        self._add(labels, per_minute)

    def _add(self, labels: dict, per_minute: int, metric: str = "") -> None:
        self.series.append({**labels, "__count__": per_minute, "__metric__": metric or REQUESTS})

    def latency(self, reporter: str, version: str, per_minute: int, le: float) -> None:
        """`per_minute` requests that all took between the bucket below `le` and `le` ms."""
        base = self._labels(reporter, version, "peer")
        for bound in BUCKETS:
            self._add({**base, "le": _le(bound)}, per_minute if bound >= le else 0, DURATION)

    def input_series(self) -> list[dict]:
        found = []
        for labels in self.series:
            metric = labels["__metric__"]
            plain = {k: v for k, v in labels.items() if not k.startswith("__")}
            values = _counter(labels["__count__"], labels.get("__flat__", 0))
            found.append({"series": _series(metric, plain), "values": values})
        for metric, replicas_of in ((AVAILABLE, self.ready), (DESIRED, self.desired)):
            for version, replicas in sorted(replicas_of.items()):
                gauge = {"namespace": self.namespace, "deployment": f"{self.model}-{version}"}
                found.append(
                    {"series": _series(metric, gauge), "values": f"{replicas}+0x{MINUTES}"}
                )
        return found


REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds_bucket"
AVAILABLE = "kube_deployment_status_replicas_available"
DESIRED = "kube_deployment_spec_replicas"
BUCKETS = (50.0, 100.0, 250.0, 500.0, float("inf"))


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


def _series(metric: str, labels: dict) -> str:
    return metric + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "}"


def _counter(per_minute: int, start: int = 0) -> str:
    return f"{start}+{per_minute}x{MINUTES}"


def _traffic(config: StackConfig, name: str) -> Traffic:
    return Traffic(config.namespace, name, config.service_host(name))


def _config(stack: str) -> StackConfig:
    return parse_config(_raw(stack), stack)


def _versions(config: StackConfig, name: str = "sentiment") -> tuple[str, str]:
    compared = compared_versions(config, name)
    assert compared is not None, "the stack's sentiment canary receives traffic"
    return compared


def _healthy(config: StackConfig) -> list[Traffic]:
    """Every model of the stack with all its pods ready (the baseline of each scenario)."""
    found = []
    for name, model in sorted(config.models.items()):
        traffic = _traffic(config, name)
        traffic.ready = {v: spec.replicas for v, spec in model.versions.items()}
        traffic.desired = dict(traffic.ready)
        found.append(traffic)
    return found


# Each scenario: the series of the sentiment model (canary, stable) and the alerts it must fire.


def canary_fails_in_its_pods(t: Traffic, canary: str, stable: str) -> set[str]:
    """(a) The canary's pods answer 503 to 1 request in 11, stable 1 in 201: both sides see it."""
    t.answered(stable, 1000)
    t.answered(stable, 5, "503")
    t.answered(canary, 100)
    t.answered(canary, 10, "503")
    return {CANARY_ERRORS, CALLER_CANARY_ERRORS}


def canary_fails_only_in_callers_proxies(t: Traffic, canary: str, stable: str) -> set[str]:
    """(b) Every request that reaches a canary pod succeeds, but the callers' proxies overflow
    its circuit breaker (UO) and fail to connect (UF): the serving side sees nothing."""
    t.answered(stable, 1000)
    t.answered(canary, 100)
    t.failed_by_caller(canary, 15, "UO")
    t.failed_by_caller(canary, 5, "UF")
    return {CALLER_CANARY_ERRORS}


def canary_ejected_no_healthy_upstream(t: Traffic, canary: str, stable: str) -> set[str]:
    """(b) Outlier detection ejected every canary pod (still ready): the callers' proxies fail
    its share with UH, which names no version; the canary's own series go quiet."""
    t.answered(stable, 1000)
    t.failed_by_caller(canary, 50, "UH")
    return {WITHOUT_ENDPOINT}


def versions_fail_alike(t: Traffic, canary: str, stable: str) -> set[str]:
    """(c) 1% errors on both versions, on both sides, gRPC (status 14) and HTTP."""
    t.answered(stable, 990)
    t.answered(stable, 10, "503")
    t.answered(canary, 99)
    t.answered(canary, 1, "200", grpc="14")
    return set()


def routed_version_without_ready_pods(t: Traffic, canary: str, stable: str) -> set[str]:
    """(d) kube-state-metrics: the canary's Deployment has no available replica, so istiod
    gives its subset no endpoint and the callers' proxies fail the canary's share with UH."""
    t.answered(stable, 1000)
    t.failed_by_caller(canary, 100, "UH")
    t.ready[canary] = 0
    return {NO_READY_PODS, WITHOUT_ENDPOINT}


def everything_at_once(t: Traffic, canary: str, stable: str) -> set[str]:
    """(e) The series the queries' numbers are checked on: pod errors on stable (HTTP 503) and
    on the canary (gRPC 14), caller-side UO on the canary, UH without a version, latencies."""
    t.answered(stable, 1000)
    t.answered(stable, 5, "503")
    t.answered(canary, 100)
    t.answered(canary, 10, "200", grpc="14")
    t.failed_by_caller(canary, 20, "UO")
    t.failed_by_caller(canary, 30, "UH")
    for reporter in ("destination", "source"):
        t.latency(reporter, stable, 1005, le=100)  # all in (50, 100] ms
    t.latency("destination", canary, 110, le=500)  # all in (250, 500] ms
    t.latency("source", canary, 130, le=500)
    return {CANARY_ERRORS, CALLER_CANARY_ERRORS, WITHOUT_ENDPOINT}


SCENARIOS = [
    canary_fails_in_its_pods,
    canary_fails_only_in_callers_proxies,
    canary_ejected_no_healthy_upstream,
    versions_fail_alike,
    routed_version_without_ready_pods,
    everything_at_once,
]


# Idle versions: each scenario with the canary weight whose rules it runs against. The rules
# are the same at every weight; running them rendered at that weight shows it is not luck.


def canary_idle_never_sent_anything(t: Traffic, canary: str, stable: str) -> set[str]:
    """(f) Weight 0 from the start: the canary has no series at all, stable fails 1 in 201."""
    t.answered(stable, 1000)
    t.answered(stable, 5, "503")
    return set()


def canary_idle_after_a_rollback(t: Traffic, canary: str, stable: str) -> set[str]:
    """(g) Rolled back to 0 after it failed: its counters exist (with many 503s) but are flat
    over the whole window, so its error ratio is 0/0 = NaN, which no comparison exceeds."""
    t.answered(stable, 1000)
    t.stopped(canary, answered=5_000, failed=2_000)
    return set()


def canary_idle_with_broken_pods(t: Traffic, canary: str, stable: str) -> set[str]:
    """(h) Weight 0 and no ready pod (a crash-looping build): nobody is sent to it, no
    request fails, so the rule on missing pods stays silent; stable is healthy."""
    t.answered(stable, 1000)
    t.ready[canary] = 0
    return set()


def canary_idle_scaled_to_zero_while_stable_is_ejected(
    t: Traffic, canary: str, stable: str
) -> set[str]:
    """(i) The canary parked at 0 replicas (allowed at weight 0), while outlier detection
    ejects stable pods (UH): requests fail without a pod, but the canary is not to blame,
    since it should have no pods (desired 0)."""
    t.answered(stable, 1000)
    t.failed_by_caller(stable, 30, "UH")
    t.ready[canary] = 0
    t.desired[canary] = 0
    return {WITHOUT_ENDPOINT}


def stable_idle_after_promotion(t: Traffic, canary: str, stable: str) -> set[str]:
    """(j) Weight 100: the canary takes everything (and fails 1 in 21), stable none; there is
    nothing to compare it with, so no comparison fires."""
    t.answered(canary, 1000)
    t.answered(canary, 50, "503")
    return set()


IDLE_SCENARIOS = [
    (canary_idle_never_sent_anything, 0),
    (canary_idle_after_a_rollback, 0),
    (canary_idle_with_broken_pods, 0),
    (canary_idle_scaled_to_zero_while_stable_is_ejected, 0),
    (stable_idle_after_promotion, 100),
]


def _scenario_series(config: StackConfig, scenario) -> tuple[list[dict], set[str]]:
    canary, stable = _versions(config)
    series, fires = [], set()
    for traffic in _healthy(config):
        if traffic.model == "sentiment":
            fires = scenario(traffic, canary, stable)
        series += traffic.input_series()
    return series, fires


def _expected_alerts(rule: dict, alertname: str, fires: bool, canary: str) -> list[dict]:
    """The alert as Prometheus must send it: the rule's labels (plus the series' own, for
    kube-state-metrics) and annotations, for the sentiment model only."""
    if not fires:
        return []
    (found,) = [
        r
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r["alert"] == alertname
        and r["labels"]["model"] == "sentiment"
        and r["labels"].get("version", canary) == canary
    ]
    labels = dict(found["labels"])
    if alertname == NO_READY_PODS:
        labels["deployment"] = f"sentiment-{canary}"
    return [{"exp_labels": labels, "exp_annotations": found["annotations"]}]


def _unit_test(rule: dict, config: StackConfig, scenario, tests: list) -> dict:
    canary, _ = _versions(config)
    series, fires = _scenario_series(config, scenario)
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": EVAL,
                "alertname": alertname,
                "exp_alerts": _expected_alerts(rule, alertname, alertname in fires, canary),
            }
            for alertname in ALERTS
        ],
        "promql_expr_test": tests,
    }


def _write_tests(directory: Path, tests: list[dict]) -> Path:
    path = directory / "tests.yaml"
    document = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=10_000))
    return path


def _promtool_test(promtool: str, rule: dict, tests: list[dict], directory: Path):
    _write_rules(rule, directory)
    _write_tests(directory, tests)
    return _run(promtool, "test", "rules", "tests.yaml", cwd=directory)


# ---------------------------------------------------------------------------------------------
# Rules: checked and unit-tested


@pytest.mark.parametrize("stack", STACK_ALERTS)
def test_promtool_accepts_the_rendered_rules(promtool, stack, tmp_path):
    rule = _rule(_raw(stack), stack)
    _write_rules(rule, tmp_path)
    result = _run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


@pytest.mark.parametrize("stack", STACK_ALERTS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_alerts_fire_exactly_in_their_scenario(promtool, stack, scenario, tmp_path):
    config = _config(stack)
    rule = _rule(_raw(stack), stack)
    result = _promtool_test(promtool, rule, [_unit_test(rule, config, scenario, [])], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("edit", "scenario", "alertname"),
    [
        # a margin of 50 points is never reached, so the pods' 9% are not an alert any more
        ({"telemetry.alerts.errorRatioMargin": 50}, canary_fails_in_its_pods, CANARY_ERRORS),
        ({"telemetry.alerts.errorRatioMargin": 50}, canary_ejected_no_healthy_upstream, None),
        # it must stay above the margin for an hour: not yet at 30 minutes
        ({"telemetry.alerts.errorRatioFor": "1h"}, canary_fails_only_in_callers_proxies, None),
    ],
)
def test_the_unit_tests_catch_a_rule_that_stays_silent(
    promtool, edit, scenario, alertname, tmp_path
):
    """The same expectations against rules rendered with a laxer threshold must fail."""
    config = _config("prod")
    expected = _rule(_raw("prod"), "prod")
    lax = _rule(_raw("prod", edit), "prod")
    test = _unit_test(expected, config, scenario, [])
    _write_rules(lax, tmp_path)
    _write_tests(tmp_path, [test])
    result = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "FAILED" in result.stdout + result.stderr
    if alertname:
        assert f"alertname: {alertname}" in result.stdout + result.stderr


@pytest.mark.parametrize("stack", STACK_ALERTS)
@pytest.mark.parametrize(
    ("scenario", "weight"), IDLE_SCENARIOS, ids=[s.__name__ for s, _ in IDLE_SCENARIOS]
)
def test_a_version_sent_nothing_raises_no_alert(promtool, stack, scenario, weight, tmp_path):
    config = _config(stack)
    rule = _rule(_raw(stack, {"models.sentiment.canary.weight": weight}), stack)
    assert rule == _rule(_raw(stack), stack), "the rules do not depend on the weight"
    result = _promtool_test(promtool, rule, [_unit_test(rule, config, scenario, [])], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_idle_scenarios_would_catch_a_rule_that_fires(promtool, tmp_path):
    """The same expectation (nothing fires) against a rule on missing pods that ignores the
    traffic (the plain kube-state-metrics check) fails: the idle canary's broken pods set it
    off. So (h) passing above is the traffic condition's doing."""
    config = _config("prod")
    rule = _rule(_raw("prod"), "prod")
    naive = json.loads(json.dumps(rule))
    for group in naive["spec"]["groups"]:
        for r in group["rules"]:
            if r["alert"] == NO_READY_PODS:
                r["expr"] = r["expr"].split("\n)\nand on ()")[0].lstrip("(\n")
    test = _unit_test(rule, config, canary_idle_with_broken_pods, [])
    _write_rules(naive, tmp_path)
    _write_tests(tmp_path, [test])
    result = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert f"alertname: {NO_READY_PODS}" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# The queries people read: the dashboard's panels and `mesh promql`, over scenario (e)


def _expected_numbers(canary: str, stable: str) -> dict[str, dict[tuple[str, ...], float]]:
    """Per query, per series (its grouping labels' values), from scenario (e)'s counts/minute.

    Served (pods): stable 1000 ok + 5 HTTP 503; canary 100 ok + 10 gRPC 14.
    Callers: the same, plus 20 UO on the canary (its revision, version unknown) and 30 UH
    (revision `latest`). Latency: stable in (50, 100] ms, canary in (250, 500] ms, so a
    quantile q is the bucket's lower bound + q x its width (Prometheus interpolates linearly).
    """
    served = {stable: (5, 1005), canary: (10, 110)}
    callers = {stable: (5, 1005), canary: (30, 130)}
    every_caller = 1005 + 130 + 30

    def ratio(counts, version):
        failed, total = counts[version]
        return failed / total

    def quantile(version, q):
        low, high = (50, 100) if version == stable else (250, 500)
        return low + (high - low) * q

    return {
        "request_rate": {(stable,): 1005 / 60, (canary,): 110 / 60},
        "error_ratio": {(v,): ratio(served, v) for v in served},
        "p50_latency": {(v,): quantile(v, 0.5) for v in served},
        "p99_latency": {(v,): quantile(v, 0.99) for v in served},
        "canary_error_excess": {(): ratio(served, canary) - ratio(served, stable)},
        "caller_error_ratio": {(v,): ratio(callers, v) for v in callers},
        "caller_p99_latency": {(v,): quantile(v, 0.99) for v in callers},
        "caller_errors_by_flags": {
            (stable, "-"): 5 / 60,
            (canary, "-"): 10 / 60,
            (canary, "UO"): 20 / 60,
            ("latest", "UH"): 30 / 60,
        },
        "without_endpoint_ratio": {(): 30 / every_caller},
        "caller_error_excess": {(): ratio(callers, canary) - ratio(callers, stable)},
        # every request callers sent, by revision: the UH ones as `latest`; adds up to 1
        "traffic_split": {
            (stable,): 1005 / every_caller,
            (canary,): 130 / every_caller,
            ("latest",): 30 / every_caller,
        },
    }


GROUPING = {
    "request_rate": ("destination_version",),
    "error_ratio": ("destination_version",),
    "p50_latency": ("destination_version",),
    "p99_latency": ("destination_version",),
    "canary_error_excess": (),
    "caller_error_ratio": ("destination_canonical_revision",),
    "caller_p99_latency": ("destination_canonical_revision",),
    "caller_errors_by_flags": ("destination_canonical_revision", "response_flags"),
    "without_endpoint_ratio": (),
    "caller_error_excess": (),
    "traffic_split": ("destination_canonical_revision",),
}


def _round(value: float) -> int:
    """PromQL's round(): half up (math.Floor(x + 0.5))."""
    return math.floor(SCALE * value + 0.5)


def _expr_test(query: str, numbers: dict[tuple[str, ...], float], labels: tuple[str, ...]):
    samples = []
    for values, number in sorted(numbers.items()):
        matchers = ",".join(f"{k}={json.dumps(v)}" for k, v in zip(labels, values, strict=True))
        samples.append({"labels": "{" + matchers + "}", "value": _round(number)})
    return {"expr": f"round({SCALE} * ({query}))", "eval_time": EVAL, "exp_samples": samples}


def _named_queries(config: StackConfig, window: str) -> dict[str, str]:
    queries = model_queries(config, "sentiment", window)
    return {name: getattr(queries, name) for name in GROUPING}


def _panel_queries(config: StackConfig) -> list[str]:
    """Every query of the sentiment board, with Grafana's window replaced by a fixed one."""
    board = dashboard(config, "sentiment")
    return [
        target["expr"].replace(RATE_WINDOW, WINDOW)
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def _report_queries(stack: str) -> list[str]:
    """The queries `python -m mesh promql <stack> --model sentiment` prints, as printed: each
    is the lines under its `# what` heading (the observed split spans three)."""
    result = run_mesh("promql", stack, "--model", "sentiment", "--window", WINDOW)
    assert result.returncode == 0, result.stderr
    queries: list[list[str]] = []
    for line in result.stdout.splitlines():
        if line.startswith("#"):
            queries.append([])
        elif line and queries:
            queries[-1].append(line)
    return ["\n".join(query) for query in queries if query]


@pytest.mark.parametrize("stack", STACK_ALERTS)
def test_dashboard_and_promql_queries_show_the_per_version_numbers(promtool, stack, tmp_path):
    config = _config(stack)
    canary, stable = _versions(config)
    numbers = _expected_numbers(canary, stable)
    named = _named_queries(config, WINDOW)
    by_query = {query: name for name, query in named.items()}
    panels, printed = _panel_queries(config), _report_queries(stack)
    # every panel and every printed line is one of the queries whose numbers are checked, and
    # each of those is shown somewhere
    assert set(panels) <= set(by_query), set(panels) - set(by_query)
    assert set(printed) <= set(by_query), set(printed) - set(by_query)
    assert set(panels) | set(printed) == set(by_query)
    assert len(panels) == 9
    tests = [_expr_test(q, numbers[by_query[q]], GROUPING[by_query[q]]) for q in by_query]
    rule = _rule(_raw(stack), stack)
    result = _promtool_test(
        promtool, rule, [_unit_test(rule, config, everything_at_once, tests)], tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_number_is_caught(promtool, tmp_path):
    """The per-version expectations are compared, not just evaluated: one off by 1 fails."""
    config = _config("prod")
    canary, stable = _versions(config)
    numbers = _expected_numbers(canary, stable)
    numbers["caller_error_ratio"][(canary,)] += 1 / SCALE
    query = model_queries(config, "sentiment", WINDOW).caller_error_ratio
    test = _expr_test(query, numbers["caller_error_ratio"], GROUPING["caller_error_ratio"])
    rule = _rule(_raw("prod"), "prod")
    result = _promtool_test(
        promtool, rule, [_unit_test(rule, config, everything_at_once, [test])], tmp_path
    )
    assert result.returncode == 1, result.stdout
    assert "expr:" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("scenario", "shares"),
    [
        # never sent anything: the canary has no series, stable takes everything
        (canary_idle_never_sent_anything, {"stable": 1.0}),
        # rolled back: its flat counters still exist, so the board shows it at 0
        (canary_idle_after_a_rollback, {"stable": 1.0, "canary": 0.0}),
        # promoted: the canary alone
        (stable_idle_after_promotion, {"canary": 1.0}),
        # the canary's pods are gone but it is still sent 100 of 1100 requests a minute
        (routed_version_without_ready_pods, {"stable": 1000 / 1100, "latest": 100 / 1100}),
    ],
    ids=["canary-idle", "canary-rolled-back", "stable-idle", "canary-without-pods"],
)
def test_the_observed_split_shows_where_the_callers_sent_requests(
    promtool, scenario, shares, tmp_path
):
    config = _config("prod")
    canary, stable = _versions(config)
    names = {"stable": stable, "canary": canary, "latest": "latest"}
    numbers = {(names[role],): share for role, share in shares.items()}
    query = model_queries(config, "sentiment", WINDOW).traffic_split
    test = _expr_test(query, numbers, GROUPING["traffic_split"])
    rule = _rule(_raw("prod"), "prod")
    result = _promtool_test(promtool, rule, [_unit_test(rule, config, scenario, [test])], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
