"""PromQL that compares the versions of a model, shared by the dashboard, the alerts and
`python -m mesh promql`, so every view of a canary asks Prometheus exactly the same question.

Everything reads Istio's standard metrics as reported by the server-side proxy
(`reporter="destination"`): each request is counted once, by the pod that served it, whether it
came through the ingress gateway or from inside the mesh. Pods carry `app: <model>` and
`version: <version>`, which Istio turns into `destination_app` and `destination_version`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.config import Model, StackConfig

REQUESTS = "istio_requests_total"
DURATION_BUCKETS = "istio_request_duration_milliseconds_bucket"
# kube-state-metrics: pods of a Deployment that are ready (for minReadySeconds).
AVAILABLE_REPLICAS = "kube_deployment_status_replicas_available"
BY_VERSION = "destination_version"
DEFAULT_WINDOW = "5m"

# An error is an HTTP 5xx or a gRPC status other than OK. gRPC failures travel as HTTP 200
# with a grpc-status trailer, so response_code alone misses them; `grpc_response_status` is
# empty on plain HTTP requests, hence `!~"0|"`.
HTTP_5XX = ("response_code", "=~", "5..")
GRPC_NOT_OK = ("grpc_response_status", "!~", "0|")

Matcher = tuple[str, str, str]


def _literal(value: str) -> str:
    """A PromQL string literal (double-quoted, Go escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(metric: str, matchers: Iterable[Matcher]) -> str:
    return metric + "{" + ",".join(f"{n}{op}{_literal(v)}" for n, op, v in matchers) + "}"


def served_by(namespace: str, model: str, versions: Iterable[str]) -> list[Matcher]:
    """Requests served by the named versions of a model, counted once (server side)."""
    names = sorted(versions)
    version: Matcher = (
        (BY_VERSION, "=", names[0]) if len(names) == 1 else (BY_VERSION, "=~", "|".join(names))
    )
    return [
        ("reporter", "=", "destination"),
        ("destination_workload_namespace", "=", namespace),
        ("destination_app", "=", model),
        version,
    ]


def _rate(matchers: list[Matcher], window: str, *extra: Matcher) -> str:
    return f"rate({selector(REQUESTS, [*matchers, *extra])}[{window}])"


def _failed(matchers: list[Matcher], window: str) -> str:
    """Per series, the rate of failed requests, and 0 for series that never failed.

    Series-level `or` keeps a series once even when it is both a 5xx and a gRPC failure, and
    the `0 * rate(all)` tail gives every version a value, so a version without errors shows an
    error ratio of 0 instead of no line at all.
    """
    return (
        f"{_rate(matchers, window, HTTP_5XX)} or {_rate(matchers, window, GRPC_NOT_OK)} "
        f"or 0 * {_rate(matchers, window)}"
    )


def request_rate(matchers: list[Matcher], window: str) -> str:
    """Requests per second, one series per version."""
    return f"sum by ({BY_VERSION}) ({_rate(matchers, window)})"


def error_ratio(matchers: list[Matcher], window: str) -> str:
    """Failed / all requests (0..1), one series per version."""
    return (
        f"sum by ({BY_VERSION}) ({_failed(matchers, window)}) / "
        f"sum by ({BY_VERSION}) ({_rate(matchers, window)})"
    )


def latency_quantile(quantile: float, matchers: list[Matcher], window: str) -> str:
    """The quantile of request duration in milliseconds, one series per version."""
    buckets = f"rate({selector(DURATION_BUCKETS, matchers)}[{window}])"
    return f"histogram_quantile({quantile:g}, sum by ({BY_VERSION}, le) ({buckets}))"


def version_error_ratio(namespace: str, model: str, version: str, window: str) -> str:
    """Failed / all requests of one version, as a single series without labels."""
    matchers = served_by(namespace, model, [version])
    return f"sum({_failed(matchers, window)}) / sum({_rate(matchers, window)})"


def canary_error_excess(
    namespace: str, model: str, canary: str, stable: str, window: str = DEFAULT_WINDOW
) -> str:
    """How much higher the canary's error ratio is than the stable version's (0..1)."""
    return (
        f"({version_error_ratio(namespace, model, canary, window)}) - "
        f"({version_error_ratio(namespace, model, stable, window)})"
    )


def no_available_pods(namespace: str, deployment: str) -> str:
    matchers = [("namespace", "=", namespace), ("deployment", "=", deployment)]
    return f"{selector(AVAILABLE_REPLICAS, matchers)} < 1"


def compared_versions(config: StackConfig, name: str) -> tuple[str, str] | None:
    """(canary, stable) when both receive traffic, so their error ratios can be compared."""
    model = config.models[name]
    traffic = model.traffic()
    if model.canary is None:
        return None
    canary, stable = model.canary.version, model.stable
    if traffic.get(canary, 0) > 0 and traffic.get(stable, 0) > 0:
        return canary, stable
    return None


@dataclass(frozen=True)
class ModelQueries:
    """The PromQL that compares the versions of one model."""

    model: str
    versions: tuple[str, ...]
    request_rate: str
    error_ratio: str
    p50_latency: str
    p99_latency: str
    canary_error_excess: str | None  # None unless both canary and stable receive traffic

    def comparisons(self) -> list[tuple[str, str]]:
        """(what it measures, query): each gives one series per version."""
        return [
            ("request rate (requests/s)", self.request_rate),
            ("error ratio (HTTP 5xx or gRPC status not OK, 0..1)", self.error_ratio),
            ("p50 latency (ms)", self.p50_latency),
            ("p99 latency (ms)", self.p99_latency),
        ]


def model_queries(config: StackConfig, name: str, window: str = DEFAULT_WINDOW) -> ModelQueries:
    """Every configured version of the model, deployed or routed, one series each."""
    versions = tuple(sorted(config.models[name].versions))
    matchers = served_by(config.namespace, name, versions)
    compared = compared_versions(config, name)
    return ModelQueries(
        model=name,
        versions=versions,
        request_rate=request_rate(matchers, window),
        error_ratio=error_ratio(matchers, window),
        p50_latency=latency_quantile(0.5, matchers, window),
        p99_latency=latency_quantile(0.99, matchers, window),
        canary_error_excess=(
            canary_error_excess(config.namespace, name, *compared, window) if compared else None
        ),
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


def promql_report(
    stack: str, config: StackConfig, models: Sequence[str] = (), window: str = DEFAULT_WINDOW
) -> str:
    """What `python -m mesh promql` prints: per model, one query per line under a comment."""
    lines = [
        f"# stack {stack}: namespace {config.namespace}, rate window {window}, "
        f"server-side Istio metrics, one series per {BY_VERSION}",
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
        if queries.canary_error_excess is not None:
            canary, stable = compared_versions(config, name) or ("", "")
            lines += [
                f"# canary {canary} error ratio minus stable {stable} (0..1)",
                queries.canary_error_excess,
            ]
    return "\n".join(lines) + "\n"
