"""What operators see of the stack: Istio Telemetry (access logs, traces), the Grafana
dashboard and the PrometheusRule, and the Prometheus that Flagger's MetricTemplates query.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mesh.config.base import _Config
from mesh.config.formats import (
    DnsLabel,
    Flag,
    HttpUrl,
    LabelKey,
    LabelValue,
    Port,
    PromDuration,
    ProviderName,
    SamplingPercent,
    ServiceFqdn,
)


class Collector(_Config):
    """The Kubernetes Service a provider of meshConfig.extensionProviders sends to (its
    `service` and `port`). With egress restricted, the Sidecar must import it: Istio names the
    provider's cluster `outbound|<port>||<host>`, but a proxy only gets clusters for the
    services its Sidecar imports, so a provider outside the egress hosts has no cluster and
    the proxy drops what it would send (istio/istio#53701)."""

    host: ServiceFqdn = Field(
        description="the provider's Service, <service>.<namespace>.svc.cluster.local"
    )
    port: Port = Field(description="the provider's port, as in meshConfig.extensionProviders")


class AccessLogging(_Config):
    enabled: Flag = Field(default=True, description="false turns access logs off for the namespace")
    provider: ProviderName = Field(
        default="envoy",
        description="access log provider from meshConfig.extensionProviders; 'envoy' (the "
        "proxy's stdout) is built in",
    )
    collector: Collector | None = Field(
        default=None,
        description="the Service of a provider other than 'envoy' (e.g. an OpenTelemetry "
        "collector); with egress restricted it is added to the Sidecar's egress hosts, and "
        "required",
    )


class Tracing(_Config):
    sampling_percentage: SamplingPercent = Field(
        default=1.0,
        description="percent of requests traced when no upstream sampling decision was made "
        "(Istio's own default is 1)",
    )
    provider: ProviderName | None = Field(
        default=None,
        description="tracing provider from meshConfig.extensionProviders; default: the mesh's "
        "default tracing provider",
    )
    collector: Collector | None = Field(
        default=None,
        description="the Service the tracing provider sends spans to; with egress restricted "
        "it is added to the Sidecar's egress hosts, and required when `provider` is set. The "
        "mesh default provider (provider unset) is assumed to run in istio-system, which the "
        "egress hosts import already; set this if it runs elsewhere",
    )


class Dashboard(_Config):
    enabled: Flag = True
    namespace: DnsLabel | None = Field(
        default=None,
        description="namespace of the dashboard ConfigMap (one the Grafana sidecar searches); "
        "default: the serving namespace",
    )
    datasource: Annotated[str, Field(min_length=1, max_length=190)] | None = Field(
        default=None,
        description="name or uid of the Prometheus data source selected by default; "
        "default: Grafana's default Prometheus data source",
    )


class Alerts(_Config):
    enabled: Flag = Field(
        default=False,
        description="create a PrometheusRule (needs the Prometheus Operator CRDs)",
    )
    error_ratio_margin: Annotated[float, Field(strict=True, gt=0, le=100)] = Field(
        default=1.0,
        description="percentage points by which a canary's error ratio may exceed the stable "
        "version's before the alert fires",
    )
    error_ratio_for: PromDuration = Field(
        default="10m", description="how long the canary must stay above that margin"
    )
    no_ready_pods_for: PromDuration = Field(
        default="2m",
        description="how long a version that receives traffic may have no available pods",
    )
    ttft_margin: Annotated[float, Field(strict=True, gt=0, le=1000)] = Field(
        default=20.0,
        description="vllm and sglang models: percent by which a canary's p95 time to first "
        "token may exceed the stable version's before the alert fires",
    )
    ttft_for: PromDuration = Field(
        default="10m",
        description="how long the canary's p95 time to first token must stay above that margin",
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default={},
        description="labels of the PrometheusRule object, e.g. release: <helm release> for the "
        "ruleSelector of kube-prometheus-stack",
    )


# Where Flagger finds Prometheus for Istio: its chart's documented `metricsServer` and the
# kustomize install's `-metrics-server` (fluxcd/flagger v1.44 charts/flagger/README.md,
# kustomize/README.md).
DEFAULT_PROMETHEUS_ADDRESS = "http://prometheus.istio-system:9090"


class Prometheus(_Config):
    address: HttpUrl = Field(
        default=DEFAULT_PROMETHEUS_ADDRESS,
        description="the Prometheus that scrapes the mesh, as Flagger's controller reaches it "
        "(its metricsServer); queried by the MetricTemplates of models in progressive mode",
    )


class Telemetry(_Config):
    """What operators see of the stack: access logs, traces, a dashboard and alerts."""

    prometheus: Prometheus = Prometheus()
    access_logging: AccessLogging = AccessLogging()
    tracing: Tracing = Tracing()
    dashboard: Dashboard = Dashboard()
    alerts: Alerts = Alerts()
