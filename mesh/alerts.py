"""Prometheus Operator alerts for a rollout in progress (opt-in: needs the operator's CRDs).

The questions a reviewer would otherwise watch a dashboard for:
- is the canary failing more often than the stable version it is compared with, as its pods
  answered (server side) and as its callers saw it (caller side: also the 503s the callers'
  proxies make themselves, circuit-breaker overflow and connect failures)?
- do callers' requests fail before reaching any pod (no healthy upstream), which Istio's labels
  cannot put on a version (see mesh.promql)?
- does a version that receives traffic have no pod able to serve it?

The rules never depend on the weights, so a canary shift changes the VirtualService and
nothing else (tests/test_weight_shift.py). They exist for every version by its role (the
canary compared with stable whenever the model has a canary; a rule on missing pods for every
version, stable, canary, match and mirror targets alike), and the traffic decides whether
they fire: a version that is sent no requests (a canary at weight 0, stable once the canary
is at 100, a match rule nobody matches) has an error ratio of 0/0, which is no sample (no
series yet) or NaN (counters that stopped rising), and NaN compares false, so its comparison
cannot fire; its missing pods alert only while callers' requests fail for want of a pod
(`routed_without_ready_pods`). Mirrored copies are not reported by the callers' proxies
(`reporter="source"`), so a mirror target's rule fires only for requests routed to it, never
for the copies: a mirror target without pods costs no live request. Nothing here is an absent()- or
"no traffic"-style alert, which an idle canary would set off. tests/test_promtool.py proves
each case over synthetic series.
"""

from __future__ import annotations

from mesh.ambient import server_reporter
from mesh.config import StackConfig
from mesh.k8s import metadata
from mesh.llm_metrics import METRICS, serves_llm, version_ttft_p95
from mesh.promql import (
    DEFAULT_WINDOW,
    caller_version_error_ratio,
    compared_versions,
    routed_without_ready_pods,
    version_error_ratio,
    without_endpoint_ratio,
)

API_VERSION = "monitoring.coreos.com/v1"
COMPONENT = "telemetry"
CANARY_ERRORS = "ModelCanaryErrorRatioAboveStable"
CALLER_CANARY_ERRORS = "ModelCanaryCallerErrorRatioAboveStable"
WITHOUT_ENDPOINT = "ModelRequestsFailedBeforeReachingAPod"
NO_READY_PODS = "ModelVersionRoutedWithoutReadyPods"
CANARY_TTFT = "ModelCanaryTimeToFirstTokenAboveStable"


def _ratio(percentage_points: float) -> str:
    """1.5 (percentage points) -> "0.015", without binary-float noise."""
    return f"{percentage_points / 100:.10g}"


def _points(margin: float) -> str:
    return f"{margin:g} percentage point{'' if margin == 1 else 's'}"


def _canary_above_stable(
    config: StackConfig, name: str, canary: str, stable: str, callers: bool = False
) -> str:
    """Canary error ratio minus stable's, above the margin; one operand per line for review.
    `callers`: as the callers' proxies saw the requests, instead of the serving pods."""
    canary_ratio, stable_ratio = (
        caller_version_error_ratio(config.service_host(name), version, DEFAULT_WINDOW)
        if callers
        else version_error_ratio(
            config.namespace, name, version, DEFAULT_WINDOW, server_reporter(config)
        )
        for version in (canary, stable)
    )
    margin = _ratio(config.telemetry.alerts.error_ratio_margin)
    return f"(\n  {canary_ratio}\n)\n-\n(\n  {stable_ratio}\n)\n> {margin}"


def _canary_rule(
    config: StackConfig, name: str, alert: str, callers: bool, summary: str, description: str
) -> dict:
    """An alert that the canary fails more often than stable, as the destination's proxies
    (callers False) or the callers' proxies (True) report it."""
    alerts = config.telemetry.alerts
    compared = compared_versions(config, name)
    assert compared is not None, "only models with a canary and a stable version compare"
    canary, stable = compared
    return {
        "alert": alert,
        "expr": _canary_above_stable(config, name, canary, stable, callers=callers),
        "for": alerts.error_ratio_for,
        "labels": {
            "severity": "warning",
            "namespace": config.namespace,
            "model": name,
            "version": canary,
            "stable": stable,
        },
        "annotations": {"summary": summary, "description": description},
    }


def _caller_rules(config: StackConfig, name: str) -> list[dict]:
    """The canary comparison as callers saw it, and the requests that reached no pod."""
    alerts = config.telemetry.alerts
    namespace = config.namespace
    margin = _points(alerts.error_ratio_margin)
    rules: list[dict] = []
    compared = compared_versions(config, name)
    if compared is not None:
        canary, stable = compared
        description = (
            f"As the callers' proxies saw it (reporter=source, their own "
            "503s included: circuit-breaker overflow UO, connect failures UF/URX), the "
            f"error ratio of {name} {canary} has exceeded that of the stable version "
            f"{stable} by more than {margin} for {alerts.error_ratio_for}. Consider "
            f"setting models.{name}.canary.weight to 0."
        )
        summary = f"Callers of model {name} see canary {canary} fail more often than {stable}"
        rules.append(_canary_rule(config, name, CALLER_CANARY_ERRORS, True, summary, description))
    rules.append(
        {
            "alert": WITHOUT_ENDPOINT,
            "expr": f"{without_endpoint_ratio(config.service_host(name), DEFAULT_WINDOW)}\n"
            f"> {_ratio(alerts.error_ratio_margin)}",
            "for": alerts.error_ratio_for,
            "labels": {"severity": "warning", "namespace": namespace, "model": name},
            "annotations": {
                "summary": f"Requests to model {name} fail before reaching any pod",
                "description": f"More than {margin} of the requests callers sent to "
                f"{config.service_host(name)} failed in their own proxy without a pod to send "
                f"them to (no healthy upstream, UH) for {alerts.error_ratio_for}: every pod of "
                "a routed version is unready or ejected by outlier detection. Istio cannot name "
                f"the version; see {NO_READY_PODS} and the caller-side panels of the dashboard.",
            },
        }
    )
    return rules


def _factor(margin_percent: float) -> str:
    """20 (percent) -> "1.2", without binary-float noise."""
    return f"{1 + margin_percent / 100:.10g}"


def ttft_rule(config: StackConfig, name: str, canary: str, stable: str) -> dict:
    """The canary of a vllm or sglang model makes users wait longer for the first token than
    stable does: its p95 time to first token (the server's own histogram, mesh.llm_metrics)
    above stable's times (1 + ttftMargin/100). A version sent no requests has a p95 of NaN
    (buckets that stopped rising) or no sample (no series yet), and neither compares true, so
    an idle canary or an idle stable never fires it."""
    alerts = config.telemetry.alerts
    canary_p95, stable_p95 = (
        version_ttft_p95(config, name, version, DEFAULT_WINDOW) for version in (canary, stable)
    )
    server = METRICS[config.models[name].server]
    return {
        "alert": CANARY_TTFT,
        "expr": f"(\n  {canary_p95}\n)\n> {_factor(alerts.ttft_margin)} * (\n  {stable_p95}\n)",
        "for": alerts.ttft_for,
        "labels": {
            "severity": "warning",
            "namespace": config.namespace,
            "model": name,
            "version": canary,
            "stable": stable,
        },
        "annotations": {
            "summary": f"Canary {canary} of model {name} is slower to the first token than "
            f"{stable}",
            "description": f"The p95 time to first token of {name} {canary} "
            f"({server.ttft}) has exceeded that of the stable version {stable} by more than "
            f"{alerts.ttft_margin:g}% for {alerts.ttft_for}. Consider setting "
            f"models.{name}.canary.weight to 0.",
        },
    }


def model_rules(config: StackConfig, name: str) -> list[dict]:
    alerts = config.telemetry.alerts
    model = config.models[name]
    namespace = config.namespace
    rules: list[dict] = []
    compared = compared_versions(config, name)
    if compared is not None:
        canary, stable = compared
        summary = f"Canary {canary} of model {name} fails more often than {stable}"
        reported = (
            f' (reporter="{server_reporter(config)}": the waypoint served it)'
            if config.ambient()
            else ""
        )
        description = (
            f"The error ratio (HTTP 5xx or gRPC not OK) of {name} "
            f"{canary}{reported} has exceeded that of the stable version {stable} by more than "
            f"{_points(alerts.error_ratio_margin)} for {alerts.error_ratio_for}. "
            "Consider setting "
            f"models.{name}.canary.weight to 0."
        )
        rules.append(_canary_rule(config, name, CANARY_ERRORS, False, summary, description))
        if serves_llm(config, name):
            rules.append(ttft_rule(config, name, canary, stable))
    rules += _caller_rules(config, name)
    for version in sorted(model.versions):
        deployment = f"{name}-{version}"
        rules.append(
            {
                "alert": NO_READY_PODS,
                "expr": routed_without_ready_pods(
                    namespace, deployment, config.service_host(name), DEFAULT_WINDOW
                ),
                "for": alerts.no_ready_pods_for,
                "labels": {
                    "severity": "critical",
                    "namespace": namespace,
                    "model": name,
                    "version": version,
                },
                "annotations": {
                    "summary": f"Version {version} of model {name} receives traffic but has "
                    "no ready pods",
                    "description": f"Deployment {namespace}/{deployment} has had no available "
                    f"replica for {alerts.no_ready_pods_for} while callers' requests to "
                    f"{config.service_host(name)} fail without a pod to send them to (no "
                    "healthy upstream, UH): the requests the VirtualService routes to "
                    f"{version} fail. See {WITHOUT_ENDPOINT} for their share.",
                },
            }
        )
    return rules


def prometheus_rule(config: StackConfig) -> dict:
    """One rule group per model, so a model's alerts are evaluated together.

    Models rolled out by Flagger get none: their pods are `<m>-primary`/`<m>` workloads whose
    versions Flagger moves, and Flagger's own analysis already rolls back a failing canary.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata("ml-mesh-alerts", config.namespace, COMPONENT, config.alert_labels()),
        "spec": {
            "groups": [
                {"name": f"ml-mesh.{config.namespace}.{name}", "rules": model_rules(config, name)}
                for name in sorted(config.models)
                if config.models[name].progressive is None
            ]
        },
    }


def alert_objects(config: StackConfig) -> list[dict]:
    return [prometheus_rule(config)] if config.telemetry.alerts.enabled else []
