"""Token-level canary signals of the vllm and sglang models (mesh.llm_metrics): the metric names
each server exports, where they appear (dashboard, `mesh promql`, alerts, Flagger), and the
rules and queries evaluated by promtool over synthetic series of the servers' own metrics.

The series are what the servers export (names and labels from vllm/v1/metrics/loggers.py and
sglang srt/observability/metrics_collector.py) as a scrape stores them: `namespace` and `pod`
added by the scrape job. Expected numbers are worked out by hand from the per-minute counts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mesh.alerts import CANARY_TTFT
from mesh.config import parse_config
from mesh.dashboard import dashboard
from mesh.llm_metrics import METRICS, flagger_ttft_query, token_queries
from mesh.promql import promql_report
from mesh.stackfile import raw_project_config
from tests.conftest import PROJECT_DIR, of_kind, one, plan_objects, stack_raw, with_value

LLM_STACK = PROJECT_DIR / "examples" / "Pulumi.llm.yaml"
NAMESPACE = "llm-prod"
MINUTES = 40
EVAL = "30m"
SCALE = 10_000
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))


def _llm_raw(**edits) -> dict:
    raw = raw_project_config(yaml.safe_load(LLM_STACK.read_text()))
    for path, value in {"telemetry.alerts.enabled": True, **edits}.items():
        raw = with_value(raw, path, value)
    return raw


def _config(**edits):
    return parse_config(_llm_raw(**edits), "llm")


# ---------------------------------------------------------------------------------------------
# The names, as the servers' source defines them (tables)

NAMES = [  # server, signal, exported name (as Prometheus stores it)
    ("vllm", "ttft", "vllm:time_to_first_token_seconds"),
    ("vllm", "itl", "vllm:inter_token_latency_seconds"),
    ("vllm", "e2e", "vllm:e2e_request_latency_seconds"),
    ("vllm", "running", "vllm:num_requests_running"),
    ("vllm", "waiting", "vllm:num_requests_waiting"),
    ("vllm", "kv_cache", "vllm:kv_cache_usage_perc"),
    ("vllm", "prompt_tokens", "vllm:prompt_tokens_total"),
    ("vllm", "generation_tokens", "vllm:generation_tokens_total"),
    ("sglang", "ttft", "sglang:time_to_first_token_seconds"),
    ("sglang", "itl", "sglang:inter_token_latency_seconds"),
    ("sglang", "e2e", "sglang:e2e_request_latency_seconds"),
    ("sglang", "running", "sglang:num_running_reqs"),
    ("sglang", "waiting", "sglang:num_queue_reqs"),
    ("sglang", "kv_cache", "sglang:token_usage"),
    ("sglang", "prompt_tokens", "sglang:prompt_tokens_total"),
    ("sglang", "generation_tokens", "sglang:generation_tokens_total"),
]


@pytest.mark.parametrize(("server", "signal", "name"), NAMES)
def test_each_signal_reads_the_name_the_server_exports(server, signal, name):
    assert getattr(METRICS[server], signal) == name


@pytest.mark.parametrize(("server", "signal", "name"), NAMES)
def test_each_name_is_in_the_dashboard_and_in_mesh_promql(server, signal, name):
    config = _config()
    model = {"vllm": "chat", "sglang": "coder"}[server]
    exprs = [t["expr"] for p in dashboard(config, model)["panels"] for t in p.get("targets", [])]
    assert any(name in e for e in exprs)
    assert name in promql_report("llm", config, [model])


def test_non_llm_models_get_no_token_panels_and_no_ttft_rule():
    raw = with_value(stack_raw("dev"), "telemetry.alerts.enabled", True)
    objects = plan_objects(raw, "dev")
    text = json.dumps(objects)
    assert "vllm:" not in text and "sglang:" not in text
    assert CANARY_TTFT not in text


PANELS = [  # model, panel title, unit, first PromQL function
    ("chat", "time to first token p95 by version", "s", "histogram_quantile(0.95"),
    ("chat", "KV-cache usage by version", "percentunit", "max by (version)"),
    ("chat", "generation tokens/s by version", "short", "sum by (version)"),
    ("coder", "requests waiting by version", "short", "sum by (version)"),
]


@pytest.mark.parametrize(("model", "title", "unit", "start"), PANELS)
def test_token_panels_per_version(model, title, unit, start):
    board = dashboard(_config(), model)
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    assert panel["fieldConfig"]["defaults"]["unit"] == unit
    assert panel["targets"][0]["expr"].startswith(start)
    assert panel["targets"][0]["legendFormat"] == "{{version}}"
    (versions,) = [p for p in board["panels"] if p["title"] == "versions"]
    assert versions["gridPos"]["y"] == 5 * 8  # below the two token rows


def test_sglang_gauges_read_the_total_never_the_per_priority_breakdown():
    queries = token_queries(_config(), "coder")
    assert (
        'sglang:num_queue_reqs{namespace="llm-prod",pod=~"coder-v3-[a-z0-9]+-[a-z0-9]+",priority=""}'
        in queries.waiting
    )


RULE_CASES = [  # edits, the rule exists, its factor
    ({}, True, "1.2"),
    ({"telemetry.alerts.ttftMargin": 50}, True, "1.5"),
    ({"models.chat.canary": None}, False, None),
]


@pytest.mark.parametrize(("edits", "exists", "factor"), RULE_CASES)
def test_the_ttft_rule_exists_for_an_llm_canary_with_its_margin(edits, exists, factor):
    raw = _llm_raw()
    for path, value in edits.items():
        if value is None:
            *parents, last = path.split(".")
            node = raw
            for part in parents:
                node = node[part]
            del node[last]
        else:
            raw = with_value(raw, path, value)
    (rule,) = of_kind(plan_objects(raw, "llm"), "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == CANARY_TTFT]
    assert bool(rules) == exists
    if exists:
        assert f"> {factor} * (" in rules[0]["expr"]
        assert rules[0]["labels"]["version"] == "v2"


def test_flagger_reads_the_canary_ttft_for_llm_models_only():
    raw = _llm_raw()
    chat = raw["models"]["chat"]
    del chat["canary"]
    chat["progressive"] = {"maxTtftMs": 1500}
    chat["versions"] = {"v2": chat["versions"]["v2"]}
    chat["stable"] = "v2"
    objects = plan_objects(raw, "llm")
    template = one(objects, "MetricTemplate", "chat-ttft-p95")
    assert template["spec"]["query"] == flagger_ttft_query(parse_config(raw, "llm"), "chat")
    canary = one(objects, "Canary", "chat")
    (metric,) = [
        m for m in canary["spec"]["analysis"]["metrics"] if m["name"] == "ml-mesh-ttft-p95"
    ]
    assert metric["thresholdRange"] == {"max": 1500}
    assert metric["templateRef"] == {"name": "chat-ttft-p95", "namespace": NAMESPACE}


def test_llm_pods_point_the_scrape_at_the_serving_port():
    objects = plan_objects(_llm_raw(), "llm")
    for deployment, port in (("chat-v1", "8000"), ("coder-v3", "30000")):
        annotations = one(objects, "Deployment", deployment)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == "/metrics"


# ---------------------------------------------------------------------------------------------
# promtool over synthetic series


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed")
    return path


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


def _series(metric: str, labels: dict) -> str:
    return metric + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "}"


def _pod(pod: str) -> dict:
    return {"namespace": NAMESPACE, "pod": pod, "model_name": "acme/chat-8b", "engine": "0"}


def ttft(pod: str, per_minute: int, upper: float, flat_from: int | None = None) -> list[dict]:
    """`per_minute` requests whose first token came in the bucket ending at `upper` seconds;
    `flat_from`: counters that stopped rising (a version no longer sent anything)."""
    found = []
    for bound in TTFT_BUCKETS:
        count = per_minute if bound >= upper else 0
        values = f"0+{count}x{MINUTES}" if flat_from is None else f"{flat_from * count}+0x{MINUTES}"
        labels = {**_pod(pod), "le": _le(bound)}
        found.append(
            {"series": _series(METRICS["vllm"].ttft + "_bucket", labels), "values": values}
        )
    return found


STABLE = ("chat-v1-7d9c5b6f4-bx2lq", "chat-v1-7d9c5b6f4-zk8p4")
CANARY = "chat-v2-5f6b8c9d7-q4wrt"
# A pod of another Deployment whose name starts like the canary's: never counted as v2.
DECOY = "chat-v2-fast-6c7d8f9b5-m2n4p"

SCENARIOS = [  # name, series, fires
    (
        "canary slower to the first token",
        [*ttft(STABLE[0], 300, 0.25), *ttft(STABLE[1], 300, 0.25), *ttft(CANARY, 60, 1.0)],
        True,
    ),
    ("canary as fast as stable", [*ttft(STABLE[0], 300, 0.25), *ttft(CANARY, 60, 0.25)], False),
    (
        "both versions slower alike",
        [*ttft(STABLE[0], 300, 0.5), *ttft(CANARY, 60, 0.5)],
        False,
    ),
    ("no traffic at all", [], False),
    ("canary never sent anything", [*ttft(STABLE[0], 300, 0.25)], False),
    (
        "canary rolled back after it was slow",
        [*ttft(STABLE[0], 300, 0.25), *ttft(CANARY, 60, 2.5, flat_from=20)],
        False,
    ),
    (
        "stable idle, canary slow",
        [*ttft(STABLE[0], 300, 0.25, flat_from=20), *ttft(CANARY, 60, 2.5)],
        False,
    ),
    (
        "only a look-alike pod is slow",
        [*ttft(STABLE[0], 300, 0.25), *ttft(CANARY, 60, 0.25), *ttft(DECOY, 60, 2.5)],
        False,
    ),
]


def _rule_file(directory: Path) -> None:
    (rule,) = of_kind(plan_objects(_llm_raw(), "llm"), "PrometheusRule")
    groups = rule["spec"]["groups"]
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))


def _promtool_test(promtool: str, directory: Path, tests: list[dict]):
    _rule_file(directory)
    document = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (directory / "tests.yaml").write_text(yaml.safe_dump(document, sort_keys=False, width=10_000))
    return subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _alert_test(series: list[dict], fires: bool) -> dict:
    expected = []
    if fires:
        (rule,) = of_kind(plan_objects(_llm_raw(), "llm"), "PrometheusRule")
        (ttft_rule,) = [
            r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == CANARY_TTFT
        ]
        expected = [
            {
                "exp_labels": {**ttft_rule["labels"], "alertname": CANARY_TTFT},
                "exp_annotations": ttft_rule["annotations"],
            }
        ]
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": EVAL, "alertname": CANARY_TTFT, "exp_alerts": expected}],
    }


def test_promtool_accepts_the_rules(promtool, tmp_path):
    _rule_file(tmp_path)
    result = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("name", "series", "fires"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_the_ttft_alert_fires_exactly_when_the_canary_is_slower(
    promtool, tmp_path, name, series, fires
):
    result = _promtool_test(promtool, tmp_path, [_alert_test(series, fires)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scenarios_would_catch_a_rule_that_never_fires(promtool, tmp_path):
    """The firing scenario, expected silent, must fail: the test is not vacuous."""
    _name, series, fires = SCENARIOS[0]
    assert fires
    result = _promtool_test(promtool, tmp_path, [_alert_test(series, False)])
    assert result.returncode != 0


def _gauge(metric: str, pod: str, value: float, extra: dict | None = None) -> dict:
    return {
        "series": _series(metric, {**_pod(pod), **(extra or {})}),
        "values": f"{value}+0x{MINUTES}",
    }


def _counter(metric: str, pod: str, per_minute: int) -> dict:
    return {"series": _series(metric, _pod(pod)), "values": f"0+{per_minute}x{MINUTES}"}


def _expr(query: str, samples: dict[str, float]) -> dict:
    return {
        "expr": f"round({SCALE} * ({query}))",
        "eval_time": EVAL,
        "exp_samples": [
            {"labels": f'{{version="{v}"}}', "value": round(SCALE * x)} for v, x in samples.items()
        ],
    }


def test_dashboard_and_promql_numbers_per_version(promtool, tmp_path):
    """Two stable pods and one canary pod: p95 interpolated in its bucket (0.1 + 0.15 * 0.95 =
    0.2425 s; 0.5 + 0.5 * 0.95 = 0.975 s), KV cache the fullest pod, running and tokens
    summed over pods (per second: per minute / 60). The look-alike pod counts nowhere."""
    vllm = METRICS["vllm"]
    series = [
        *ttft(STABLE[0], 300, 0.25),
        *ttft(STABLE[1], 300, 0.25),
        *ttft(CANARY, 60, 1.0),
        *ttft(DECOY, 60, 2.5),
        _gauge(vllm.kv_cache, STABLE[0], 0.5),
        _gauge(vllm.kv_cache, STABLE[1], 0.75),
        _gauge(vllm.kv_cache, CANARY, 0.25),
        _gauge(vllm.kv_cache, DECOY, 1),
        _gauge(vllm.running, STABLE[0], 3),
        _gauge(vllm.running, STABLE[1], 5),
        _gauge(vllm.running, CANARY, 2),
        _counter(vllm.generation_tokens, STABLE[0], 6000),
        _counter(vllm.generation_tokens, STABLE[1], 3000),
        _counter(vllm.generation_tokens, CANARY, 1200),
    ]
    queries = token_queries(_config(), "chat", "5m")
    tests = [
        _expr(queries.ttft_p95, {"v1": 0.2425, "v2": 0.975}),
        _expr(queries.kv_cache, {"v1": 0.75, "v2": 0.25}),
        _expr(queries.running, {"v1": 8, "v2": 2}),
        _expr(queries.generation_tokens, {"v1": 150, "v2": 20}),
    ]
    result = _promtool_test(
        promtool, tmp_path, [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_flagger_query_reads_the_canary_pods_not_the_primary(promtool, tmp_path):
    """Flagger's `<m>` pods are the canary (0.975 s -> 975 ms); `<m>-primary` is left out."""
    query = (
        flagger_ttft_query(_config(), "chat")
        .replace("{{ namespace }}", NAMESPACE)
        .replace("{{ target }}", "chat")
        .replace("{{ interval }}", "5m")
    )
    series = [
        *ttft("chat-primary-6d8f7c5b9-x7k2m", 300, 0.25),
        *ttft("chat-7c9d5b6f8-p3q9r", 60, 1.0),
    ]
    test = {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": f"round({query})",
                "eval_time": EVAL,
                "exp_samples": [{"labels": "{}", "value": 975}],
            }
        ],
    }
    result = _promtool_test(promtool, tmp_path, [test])
    assert result.returncode == 0, result.stdout + result.stderr
