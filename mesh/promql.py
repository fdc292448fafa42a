"""PromQL that compares the versions of a model, shared by the dashboard, the alerts and
`python -m mesh promql`, so every view of a canary asks Prometheus exactly the same question.

It reads Istio's standard metrics from both proxies of a request:

- server side (`reporter="destination"`): each request that reached a pod, counted once by that
  pod's proxy, whether it came through the ingress gateway or from inside the mesh. Pods carry
  `app: <model>` and `version: <version>`, which Istio turns into `destination_app` and
  `destination_version`. In ambient (`dataplane: ambient`) no pod has a proxy: the waypoint
  counts each request once, as `reporter="waypoint"`, with the same destination labels
  (mesh.ambient.server_reporter); ztunnel reports only TCP metrics.
- caller side (`reporter="source"`, the ingress gateway and every calling sidecar): also the
  503s the caller's own proxy makes without any pod answering: circuit-breaker overflow (`UO`),
  connect failures (`UF`, `URX`), no healthy upstream (`UH`), which a bad canary under the
  protected defaults (outlier detection, connection limits) produces and the server side
  never sees. In ambient the callers' ztunnels report no HTTP metrics, so the caller side is
  the ingress gateway (and any sidecar callers); the waypoint, which then applies the routes
  and connection limits, reports its own 503s with the server side.

Which labels the caller's proxy can fill in depends on how far the request got (istio/proxy
source/extensions/filters/http/istio_stats/istio_stats.cc, `populatePeerInfo`):

- `destination_service` comes from the chosen cluster's `istio.services` metadata, so it is the
  model's Service host on every request routed to the model, failed or not;
- the destination workload comes from the peer's metadata exchange, and, when no response
  carried it (the proxy failed the request itself), from the chosen endpoint's `istio.workload`
  metadata, which holds workload, namespace, canonical service and canonical revision but no
  `app` or `version` (extensions/common/metadata_object.cc `convertEndpointMetadata`): such a
  request has `destination_version="unknown"` but the right `destination_canonical_revision`.
  Istio derives that revision from the pod label `version` when neither
  `service.istio.io/canonical-revision` nor `app.kubernetes.io/version` is set
  (pkg/kube/labels/labels.go `CanonicalService`), as on ml-mesh pods. Caller-side views therefore go
  per `destination_canonical_revision`;
- with no endpoint at all (`UH`: every pod of the subset unready or ejected) there is no peer:
  `destination_workload="unknown"`, `destination_canonical_revision="latest"`. Nothing in the
  metric names the subset, so these requests cannot be put on a version: they get their own
  series (`latest` in the breakdown by response flags) and their own alert.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.ambient import server_reporter
from mesh.config import Model, StackConfig

REQUESTS = "istio_requests_total"
DURATION_BUCKETS = "istio_request_duration_milliseconds_bucket"
# kube-state-metrics: pods of a Deployment that are ready (for minReadySeconds), and the
# replicas it should have (the autoscaler's choice when there is one).
AVAILABLE_REPLICAS = "kube_deployment_status_replicas_available"
DESIRED_REPLICAS = "kube_deployment_spec_replicas"
BY_VERSION = "destination_version"
# Caller side: the version as the chosen endpoint's metadata names it (see above).
BY_CALLER_VERSION = "destination_canonical_revision"
BY_FLAGS = "response_flags"
DEFAULT_WINDOW = "5m"

# An error is an HTTP 5xx or a gRPC status other than OK. gRPC failures travel as HTTP 200
# with a grpc-status trailer, so response_code alone misses them; `grpc_response_status` is
# empty on plain HTTP requests, hence `!~"0|"`.
HTTP_5XX = ("response_code", "=~", "5..")
GRPC_NOT_OK = ("grpc_response_status", "!~", "0|")

Matcher = tuple[str, str, str]
# What the caller's proxy reports when it chose no endpoint (istio_stats.cc: no peer).
NO_ENDPOINT: Matcher = ("destination_workload", "=", "unknown")


def _literal(value: str) -> str:
    """A PromQL string literal (double-quoted, Go escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(metric: str, matchers: Iterable[Matcher]) -> str:
    return metric + "{" + ",".join(f"{n}{op}{_literal(v)}" for n, op, v in matchers) + "}"


def _one_of(label: str, versions: Iterable[str]) -> Matcher:
    names = sorted(versions)
    return (label, "=", names[0]) if len(names) == 1 else (label, "=~", "|".join(names))


def served_by(
    namespace: str, model: str, versions: Iterable[str], reporter: str = "destination"
) -> list[Matcher]:
    """Requests served by the named versions of a model, counted once (server side): by the
    pods' sidecars (`destination`) or, in ambient, the waypoint (`waypoint`)."""
    return [
        ("reporter", "=", reporter),
        ("destination_workload_namespace", "=", namespace),
        ("destination_app", "=", model),
        _one_of(BY_VERSION, versions),
    ]


def called(service: str, versions: Iterable[str] = ()) -> list[Matcher]:
    """Requests callers' proxies sent to the model's Service (caller side), for the named
    versions, or all of them (also those that reached no endpoint) when none are named."""
    matchers: list[Matcher] = [("reporter", "=", "source"), ("destination_service", "=", service)]
    return [*matchers, _one_of(BY_CALLER_VERSION, versions)] if versions else matchers


def _rate(matchers: list[Matcher], window: str, *extra: Matcher) -> str:
    return f"rate({selector(REQUESTS, [*matchers, *extra])}[{window}])"


def _errors(matchers: list[Matcher], window: str) -> str:
    """Per series, the rate of failed requests: series-level `or` keeps a series once even
    when it is both a 5xx and a gRPC failure."""
    return f"{_rate(matchers, window, HTTP_5XX)} or {_rate(matchers, window, GRPC_NOT_OK)}"


def _failed(matchers: list[Matcher], window: str) -> str:
    """Per series, the rate of failed requests, and 0 for series that never failed.

    The `0 * rate(all)` tail gives every version a value, so a version without errors shows an
    error ratio of 0 instead of no line at all.
    """
    return f"{_errors(matchers, window)} or 0 * {_rate(matchers, window)}"


def request_rate(matchers: list[Matcher], window: str, by: str = BY_VERSION) -> str:
    """Requests per second, one series per version."""
    return f"sum by ({by}) ({_rate(matchers, window)})"


def error_ratio(matchers: list[Matcher], window: str, by: str = BY_VERSION) -> str:
    """Failed / all requests (0..1), one series per version."""
    return (
        f"sum by ({by}) ({_failed(matchers, window)}) / sum by ({by}) ({_rate(matchers, window)})"
    )


def errors_by_flags(matchers: list[Matcher], window: str) -> str:
    """Failed requests per second, one series per (version, Envoy response flags): `-` for
    errors a pod answered, `UO`, `UF`, `URX`, `UH`... for those the caller's proxy made."""
    return f"sum by ({BY_CALLER_VERSION}, {BY_FLAGS}) ({_errors(matchers, window)})"


def latency_quantile(
    quantile: float, matchers: list[Matcher], window: str, by: str = BY_VERSION
) -> str:
    """The quantile of request duration in milliseconds, one series per version."""
    buckets = f"rate({selector(DURATION_BUCKETS, matchers)}[{window}])"
    return f"histogram_quantile({quantile:g}, sum by ({by}, le) ({buckets}))"


def _ratio_of(matchers: list[Matcher], window: str) -> str:
    return f"sum({_failed(matchers, window)}) / sum({_rate(matchers, window)})"


def version_error_ratio(
    namespace: str, model: str, version: str, window: str, reporter: str = "destination"
) -> str:
    """Failed / all requests of one version, as a single series without labels."""
    return _ratio_of(served_by(namespace, model, [version], reporter), window)


def caller_version_error_ratio(service: str, version: str, window: str) -> str:
    """Failed / all requests of one version as its callers' proxies saw them (one series)."""
    return _ratio_of(called(service, [version]), window)


def traffic_split(service: str, window: str = DEFAULT_WINDOW) -> str:
    """Each version's share of the requests callers sent to the model (0..1), one series per
    `destination_canonical_revision`: the split the VirtualService produced, as observed.

    Caller side, because that is where the split happens: the callers' proxies apply the
    VirtualService, and they count each request once whatever became of it, also those their
    own proxy failed (UO, UF: the version's revision; UH, no pod chosen: `latest`), so a failing
    canary still shows the share it was sent. The serving side would leave those out, and it
    counts mirrored copies as if they were live requests of the mirror's version (Envoy sends
    the shadow past the caller's HTTP filters, so only `reporter="destination"` sees it:
    istio/istio#23496). The shares add up to 1; with no requests there is no series at all.
    """
    every = called(service)
    by = BY_CALLER_VERSION
    return (
        f"{request_rate(every, window, by)}\n/ ignoring ({by}) group_left\n"
        f"sum({_rate(every, window)})"
    )


def failed_without_endpoint(service: str, window: str = DEFAULT_WINDOW) -> str:
    """Requests per second to the model that the callers' proxies failed before choosing any
    pod (one series; none while there are none)."""
    return f"sum({_errors([*called(service), NO_ENDPOINT], window)})"


def without_endpoint_ratio(service: str, window: str = DEFAULT_WINDOW) -> str:
    """Requests to the model that the caller's proxy failed before choosing any pod (no
    healthy upstream), as a share of all requests callers sent it (one series, 0..1); 0, not
    a gap, while there are none."""
    every = called(service)
    return (
        f"({failed_without_endpoint(service, window)} or vector(0)) / sum({_rate(every, window)})"
    )


def _excess(canary_ratio: str, stable_ratio: str) -> str:
    return f"({canary_ratio}) - ({stable_ratio})"


def canary_error_excess(
    namespace: str,
    model: str,
    canary: str,
    stable: str,
    window: str = DEFAULT_WINDOW,
    reporter: str = "destination",
) -> str:
    """How much higher the canary's error ratio is than the stable version's (0..1)."""
    return _excess(
        version_error_ratio(namespace, model, canary, window, reporter),
        version_error_ratio(namespace, model, stable, window, reporter),
    )


def caller_error_excess(
    service: str, canary: str, stable: str, window: str = DEFAULT_WINDOW
) -> str:
    """The same comparison as callers see it, their proxies' own 503s included (0..1)."""
    return _excess(
        caller_version_error_ratio(service, canary, window),
        caller_version_error_ratio(service, stable, window),
    )


def no_available_pods(namespace: str, deployment: str) -> str:
    """The Deployment should have pods but none is available (one series, value 0)."""
    matchers = [("namespace", "=", namespace), ("deployment", "=", deployment)]
    return (
        f"{selector(AVAILABLE_REPLICAS, matchers)} < 1\n"
        f"and on (namespace, deployment)\n{selector(DESIRED_REPLICAS, matchers)} > 0"
    )


def routed_without_ready_pods(
    namespace: str, deployment: str, service: str, window: str = DEFAULT_WINDOW
) -> str:
    """The Deployment has no available pod while callers' requests to the model fail for want
    of one (no healthy upstream).

    What tells that requests are routed to the version is the traffic itself, not the
    configured weight: when no pod of a routed subset is ready, istiod sends the subset's
    cluster no endpoint and the callers' proxies fail its share with UH (see the module
    docstring). A version that is sent nothing (a canary at weight 0, a match rule nobody
    matched) makes no such failures, so the expression has no sample and nothing alerts,
    however broken its pods; one scaled to 0 on purpose has no sample either (desired 0).
    """
    pods = textwrap.indent(no_available_pods(namespace, deployment), "  ")
    return f"(\n{pods}\n)\nand on ()\n{failed_without_endpoint(service, window)} > 0"


def compared_versions(config: StackConfig, name: str) -> tuple[str, str] | None:
    """(canary, stable) of a model with a canary, whatever the weight: the role decides, so
    the comparison (and its alert) stays the same while the canary is shifted. When one of
    them is sent nothing its error ratio is 0/0: no sample where its series do not exist, NaN
    where they do (counters that stopped rising), and NaN compares false, so the comparison
    cannot fire either way (tests/test_promtool.py proves both over series)."""
    model = config.models[name]
    if model.canary is None or model.progressive is not None:
        return None
    return model.canary.version, model.stable


@dataclass(frozen=True)
class ModelQueries:
    """The PromQL that compares the versions of one model."""

    model: str
    versions: tuple[str, ...]
    request_rate: str
    error_ratio: str
    p50_latency: str
    p99_latency: str
    caller_error_ratio: str
    caller_p99_latency: str
    caller_errors_by_flags: str
    without_endpoint_ratio: str
    traffic_split: str  # the dashboard's observed split (caller side)
    canary_error_excess: str | None  # None unless the model has a canary
    caller_error_excess: str | None

    def comparisons(self) -> list[tuple[str, str]]:
        """(what it measures, query): each gives one series per version (server side)."""
        return [
            ("request rate (requests/s)", self.request_rate),
            ("error ratio (HTTP 5xx or gRPC status not OK, 0..1)", self.error_ratio),
            ("p50 latency (ms)", self.p50_latency),
            ("p99 latency (ms)", self.p99_latency),
        ]

    def caller_views(self) -> list[tuple[str, str]]:
        """(what it measures, query) as the callers' proxies saw the requests."""
        return [
            (f"observed traffic split (0..1), per {BY_CALLER_VERSION}", self.traffic_split),
            (
                f"caller-side error ratio, the proxies' own 503s included (0..1), per "
                f"{BY_CALLER_VERSION}",
                self.caller_error_ratio,
            ),
            (f"caller-side p99 latency (ms), per {BY_CALLER_VERSION}", self.caller_p99_latency),
            (
                f"caller-side failed requests/s per {BY_CALLER_VERSION} and {BY_FLAGS} "
                '("latest": no pod was chosen)',
                self.caller_errors_by_flags,
            ),
            (
                "share of requests the callers' proxies failed before choosing a pod (0..1)",
                self.without_endpoint_ratio,
            ),
        ]


def model_queries(config: StackConfig, name: str, window: str = DEFAULT_WINDOW) -> ModelQueries:
    """Every configured version of the model, deployed or routed, one series each."""
    versions = tuple(sorted(config.models[name].versions))
    reporter = server_reporter(config)
    matchers = served_by(config.namespace, name, versions, reporter)
    service = config.service_host(name)
    callers = called(service, versions)
    compared = compared_versions(config, name)
    return ModelQueries(
        model=name,
        versions=versions,
        request_rate=request_rate(matchers, window),
        error_ratio=error_ratio(matchers, window),
        p50_latency=latency_quantile(0.5, matchers, window),
        p99_latency=latency_quantile(0.99, matchers, window),
        caller_error_ratio=error_ratio(callers, window, BY_CALLER_VERSION),
        caller_p99_latency=latency_quantile(0.99, callers, window, BY_CALLER_VERSION),
        caller_errors_by_flags=errors_by_flags(called(service), window),
        without_endpoint_ratio=without_endpoint_ratio(service, window),
        traffic_split=traffic_split(service, window),
        canary_error_excess=(
            canary_error_excess(config.namespace, name, *compared, window, reporter)
            if compared
            else None
        ),
        caller_error_excess=(caller_error_excess(service, *compared, window) if compared else None),
    )


def version_role(model: Model, version: str) -> str:
    if version == model.stable:
        return "stable"
    if model.canary is not None and version == model.canary.version:
        return "canary"
    return ""


def _split(model: Model) -> str:
    traffic = model.traffic()
    return ", ".join(
        " ".join(p for p in (v, version_role(model, v), f"{traffic.get(v, 0)}%") if p)
        for v in sorted(model.versions)
    )


def _reporter_note(config: StackConfig) -> str:
    """Only ambient says which reporter it reads: the sidecar report stays as it was."""
    return f" (reporter={server_reporter(config)})" if config.ambient() else ""


def promql_report(
    stack: str, config: StackConfig, models: Sequence[str] = (), window: str = DEFAULT_WINDOW
) -> str:
    """What `python -m mesh promql` prints: per model, one query per line under a comment."""
    lines = [
        f"# stack {stack}: namespace {config.namespace}, rate window {window}, "
        f"server-side Istio metrics{_reporter_note(config)}, one series per {BY_VERSION}; "
        f"then caller-side (reporter=source), one series per {BY_CALLER_VERSION}",
    ]
    for name in sorted(models or config.models):
        if config.models[name].progressive is not None:
            lines += [
                "",
                f"## {name}: rolled out by Flagger (its workloads are {name}-primary "
                f"and {name}); compare them with Flagger's own metrics",
            ]
            continue
        queries = model_queries(config, name, window)
        lines += ["", f"## {name}: {_split(config.models[name])}"]
        for what, query in queries.comparisons():
            lines += [f"# {what}", query]
        canary, stable = compared_versions(config, name) or ("", "")
        if queries.canary_error_excess is not None:
            lines += [
                f"# canary {canary} error ratio minus stable {stable} (0..1)",
                queries.canary_error_excess,
            ]
        for what, query in queries.caller_views():
            lines += [f"# {what}", query]
        if queries.caller_error_excess is not None:
            lines += [
                f"# caller-side: canary {canary} error ratio minus stable {stable} (0..1)",
                queries.caller_error_excess,
            ]
        lines += _token_lines(config, name, window)
    return "\n".join(lines) + "\n"


def _token_lines(config: StackConfig, name: str, window: str) -> list[str]:
    """The server's own token-level signals of a vllm or sglang model (mesh.llm_metrics)."""
    from mesh.llm_metrics import serves_llm, token_queries  # it builds on this module

    if not serves_llm(config, name):
        return []
    tokens = token_queries(config, name, window)
    lines = [
        f"# token-level, from the server's /metrics ({tokens.server.release}), one series per "
        "version (from the pod name)"
    ]
    for title, unit, query in tokens.views():
        lines += [f"# {title}" + (f" ({unit})" if unit in ("s", "percentunit") else ""), query]
    return lines
