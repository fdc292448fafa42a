"""Token-level signals of the LLM servers (vllm, sglang), per version, from the servers' own
Prometheus metrics: time to first token, inter-token latency, end-to-end latency, requests
running and waiting, KV-cache usage, prompt and generation tokens per second.

Istio's metrics cannot give these: a streamed completion is one long request to the proxy, so
its duration is the whole generation, and nothing in it says how long the user waited for the
first token or how fast tokens came after. The servers measure them per request.

Every name below was read in the server's own source, in the release the presets target
(models/presets.py, docs/llm.md):

- vLLM 0.34.0 (the `vllm-0.34.0` wheel, `vllm/_version.py` 0.34.0):
  vllm/v1/metrics/loggers.py `PrometheusStatLogger.__init__`. Labels `model_name` (the served
  model name) and `engine` (the engine-core index, `0` with one engine). 0.34.0 serves
  `vllm:inter_token_latency_seconds`; the older `vllm:time_per_output_token_seconds` is gone
  (the per-request mean is `vllm:request_time_per_output_token_seconds`).
- SGLang 0.5.23 (the `sglang-0.5.23` wheel): python/sglang/srt/observability/
  metrics_collector.py (the module that was srt/metrics/collector.py), the scheduler's gauges in
  `SchedulerMetricsCollector.__init__`, the request histograms and token counters in
  `TokenizerMetricsCollector.__init__`. Labels `model_name`, `engine_type` and, on scheduler
  gauges, `tp_rank`, `pp_rank`, `moe_ep_rank`; only the attention-TP rank 0 scheduler reports
  (`SchedulerMetricsCollectorContext`: `is_stats_logging_rank`), so a pod has one series per
  gauge. With priority scheduling a gauge's total is the series with `priority=""` and the
  per-priority breakdown has `priority="<n>"` (`_log_gauge_queue_count`); `priority=""` also
  matches a series without the label, so the gauges select it and never double count.

prometheus_client exports a Counter `x` as `x_total` (and keeps a name that already ends in
`_total`), a Histogram as `x_bucket`, `x_sum`, `x_count`.

How a series is put on a version. The pods carry `app` and `version`, but whether those reach
the server's series depends on the scrape job: Istio's `kubernetes-pods` job
(samples/addons/prometheus.yaml) maps every pod label, the `envoy-stats-monitor` PodMonitor of
kube-prometheus-stack (samples/addons/extras/prometheus-operator.yaml) keeps only `namespace`
and `pod`. Both set `namespace` and `pod`, so the queries select on those: the pods of
Deployment `<m>-<v>` are named `<m>-<v>-<pod-template-hash>-<suffix>` (the ReplicaSet
`<m>-<v>-<hash>`, then the API server's 5-character suffix), and `label_replace` takes the
version out of the pod name. The pattern ends in exactly two hyphen-free segments, so
`chat-v1-...` never matches a pod of version `v1-fast` or of a model `chat-v1`. The API server
cuts a generated name's prefix to 58 characters (apiserver names.go `maxGeneratedNameLength`):
a Deployment name up to 47 characters (58 less the hyphens and a hash of up to 10) keeps the
shape.

Where the server's `/metrics` is read. With sidecars, the pods' `prometheus.io/*` annotations
name the serving port (models.presets `scrape_annotations`); Istio's metrics merging points
the scrape at the agent (:15020/stats/prometheus), which fetches `http://localhost:<port>/metrics`
from inside the pod (pilot/cmd/pilot-agent/status/server.go `handleStats`), past the
AuthorizationPolicy that closes `/metrics` to callers. In ambient mode no injector rewrites the
annotations, so Prometheus scrapes the server's own port; the series carry the same
`namespace` and `pod`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.config import StackConfig
from mesh.promql import DEFAULT_WINDOW, Matcher, selector

LLM_SERVERS = ("vllm", "sglang")
BY_VERSION = "version"
# Deployment `<m>-<v>`'s pods: `<m>-<v>-<pod-template-hash>-<random suffix>` (see above).
POD_SUFFIX = "-[a-z0-9]+-[a-z0-9]+"


@dataclass(frozen=True)
class ServerMetrics:
    """The metric names one server exports, as Prometheus stores them."""

    release: str  # the server release whose source was read
    source: str  # file and function that define them
    ttft: str  # histogram, seconds
    itl: str  # histogram, seconds
    e2e: str  # histogram, seconds
    running: str  # gauge, requests
    waiting: str  # gauge, requests
    kv_cache: str  # gauge, 0..1
    prompt_tokens: str  # counter
    generation_tokens: str  # counter
    gauge_matchers: tuple[Matcher, ...] = ()


METRICS: dict[str, ServerMetrics] = {
    "vllm": ServerMetrics(
        release="vLLM 0.34.0",
        source="vllm/v1/metrics/loggers.py PrometheusStatLogger.__init__",
        ttft="vllm:time_to_first_token_seconds",
        itl="vllm:inter_token_latency_seconds",
        e2e="vllm:e2e_request_latency_seconds",
        running="vllm:num_requests_running",
        waiting="vllm:num_requests_waiting",
        kv_cache="vllm:kv_cache_usage_perc",
        prompt_tokens="vllm:prompt_tokens_total",
        generation_tokens="vllm:generation_tokens_total",
    ),
    "sglang": ServerMetrics(
        release="SGLang 0.5.23",
        source="python/sglang/srt/observability/metrics_collector.py "
        "SchedulerMetricsCollector / TokenizerMetricsCollector",
        ttft="sglang:time_to_first_token_seconds",
        itl="sglang:inter_token_latency_seconds",
        e2e="sglang:e2e_request_latency_seconds",
        running="sglang:num_running_reqs",
        waiting="sglang:num_queue_reqs",
        kv_cache="sglang:token_usage",
        prompt_tokens="sglang:prompt_tokens_total",
        generation_tokens="sglang:generation_tokens_total",
        gauge_matchers=(("priority", "=", ""),),
    ),
}


def serves_llm(config: StackConfig, name: str) -> bool:
    return config.models[name].server in LLM_SERVERS


def pod_pattern(deployments: list[str]) -> str:
    """The pods of the named Deployments (label values are DNS names: no regex metacharacter
    but `.`, which a Deployment name cannot hold)."""
    names = sorted(deployments)
    alternatives = names[0] if len(names) == 1 else "(" + "|".join(names) + ")"
    return alternatives + POD_SUFFIX


def _version_pattern(name: str, versions: list[str]) -> str:
    """Matches the model's pods and captures the version (anchored by label_replace)."""
    return f"{name}-(" + "|".join(sorted(versions)) + ")" + POD_SUFFIX


def pods(namespace: str, pattern: str) -> list[Matcher]:
    return [("namespace", "=", namespace), ("pod", "=~", pattern)]


def _per_version(expr: str, name: str, versions: list[str]) -> str:
    return (
        f'label_replace({expr}, "{BY_VERSION}", "$1", "pod", "{_version_pattern(name, versions)}")'
    )


@dataclass(frozen=True)
class TokenQueries:
    """One series per version (label `version`) of each token-level signal."""

    server: ServerMetrics
    ttft_p95: str
    itl_p95: str
    e2e_p95: str
    running: str
    waiting: str
    kv_cache: str
    prompt_tokens: str
    generation_tokens: str

    def views(self) -> list[tuple[str, str, str]]:
        """(title, Grafana unit, query), in the dashboard's order."""
        return [
            ("time to first token p95", "s", self.ttft_p95),
            ("inter-token latency p95", "s", self.itl_p95),
            ("end-to-end latency p95", "s", self.e2e_p95),
            ("KV-cache usage", "percentunit", self.kv_cache),
            ("requests running", "short", self.running),
            ("requests waiting", "short", self.waiting),
            ("prompt tokens/s", "short", self.prompt_tokens),
            ("generation tokens/s", "short", self.generation_tokens),
        ]


def token_queries(config: StackConfig, name: str, window: str = DEFAULT_WINDOW) -> TokenQueries:
    model = config.models[name]
    server = METRICS[model.server]
    versions = sorted(model.versions)
    scope = pods(config.namespace, pod_pattern([f"{name}-{v}" for v in versions]))
    gauges = [*scope, *server.gauge_matchers]

    def quantile(histogram: str) -> str:
        rate = f"rate({selector(histogram + '_bucket', scope)}[{window}])"
        return (
            f"histogram_quantile(0.95, sum by ({BY_VERSION}, le) "
            f"({_per_version(rate, name, versions)}))"
        )

    def gauge(metric: str, how: str) -> str:
        return f"{how} by ({BY_VERSION}) ({_per_version(selector(metric, gauges), name, versions)})"

    def per_second(counter: str) -> str:
        rate = f"rate({selector(counter, scope)}[{window}])"
        return f"sum by ({BY_VERSION}) ({_per_version(rate, name, versions)})"

    return TokenQueries(
        server=server,
        ttft_p95=quantile(server.ttft),
        itl_p95=quantile(server.itl),
        e2e_p95=quantile(server.e2e),
        running=gauge(server.running, "sum"),
        waiting=gauge(server.waiting, "sum"),
        # The fullest pod's cache: pressure on one pod is what preempts its requests.
        kv_cache=gauge(server.kv_cache, "max"),
        prompt_tokens=per_second(server.prompt_tokens),
        generation_tokens=per_second(server.generation_tokens),
    )


def version_ttft_p95(config: StackConfig, name: str, version: str, window: str) -> str:
    """The p95 time to first token of one version's pods, in seconds (one series, no
    labels); NaN without requests in the window, no sample without series."""
    server = METRICS[config.models[name].server]
    scope = pods(config.namespace, pod_pattern([f"{name}-{version}"]))
    rate = f"rate({selector(server.ttft + '_bucket', scope)}[{window}])"
    return f"histogram_quantile(0.95, sum by (le) ({rate}))"


def flagger_ttft_query(config: StackConfig, name: str) -> str:
    """The canary's p95 time to first token in milliseconds over `{{ interval }}`, for a
    Flagger MetricTemplate: `{{ target }}` is the Deployment `<m>`, whose pods
    `<m>-<hash>-<suffix>` are the canary; `<m>-primary-...` has one segment more and is not
    matched. No requests give NaN, which Flagger counts as a failed check."""
    server = METRICS[config.models[name].server]
    scope = pods("{{ namespace }}", "{{ target }}" + POD_SUFFIX)
    rate = f"rate({selector(server.ttft + '_bucket', scope)}[{{{{ interval }}}}])"
    return f"histogram_quantile(0.95, sum by (le) ({rate})) * 1000"
