"""Alerts that Prometheus would never load (MESH0004): ml-mesh's own rule, not one of Istio's.

kube-prometheus-stack's Prometheus selects PrometheusRules by `release: <Helm release>` by
default (`prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues: true`), so a rule without
that label is accepted by the API server and silently never evaluated: the stack looks
alerted and is not. Other Prometheus Operator setups select otherwise, so this warns rather
than refuses, and names the setting that fixes it.
"""

from __future__ import annotations

from collections.abc import Iterator

from mesh.checks.findings import ALERTS_WITHOUT_RELEASE_LABEL, Finding
from mesh.checks.index import _Index
from mesh.checks.objects import _labels
from mesh.checks.paths import _finding


def rule_labels(index: _Index) -> Iterator[Finding]:
    for rule in index.by_kind["PrometheusRule"]:
        if "release" in _labels(rule):
            continue
        yield _finding(
            index,
            rule,
            ALERTS_WITHOUT_RELEASE_LABEL,
            "warning",
            "platform.monitoringRelease",
            "the PrometheusRule has no `release` label: kube-prometheus-stack's Prometheus "
            "selects rules by `release: <Helm release>` by default and would never load it; "
            "set platform.monitoringRelease to the release (`helm list -A | grep "
            "kube-prometheus-stack`), or telemetry.alerts.labels to what your ruleSelector wants",
        )
