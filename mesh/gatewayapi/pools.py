"""Inference Extension pools: one InferencePool and one endpoint picker per version.

The picker is the llm-d router's endpoint picker (EPP), installed per pool from its chart
`oci://ghcr.io/llm-d/charts/llm-d-router-gateway` v0.10.0 (llm-d/llm-d-router v0.10.0,
`config/charts/llm-d-router-gateway`, commit 71f4f09): the Inference Extension moved its EPP
and chart there in 2026 (gateway-api-inference-extension v1.6.0 README; v1.5.0's
`inferencepool` chart is the last of its own). The chart creates, for a release `<pool>`
(`config/charts/routerlib/templates/`):

- the InferencePool `<pool>` (`_inferencepool.yaml`, `inferencePool.create` true: the picker
  then runs in pool mode, `--pool-name <pool>`, and watches it), selecting `modelServers.
  matchLabels` on `targetPorts`, `endpointPickerRef: {name: <pool>-epp, port: 9002,
  failureMode}`;
- Deployment, Service and ServiceAccount `<pool>-epp` (the release cut to 40 characters,
  `_helpers.tpl` `llm-d-router.name`); the Service's `grpc-ext-proc` port 9002 is appProtocol
  `kubernetes.io/h2c`, its selector `llm-d-router-gateway: <pool>-epp`;
- with `provider.name: istio`, DestinationRule `<pool>-epp` for the Service host, `tls: SIMPLE,
  insecureSkipVerify: true` (`llm-d-router-gateway/templates/istio.yaml`): the picker's
  ext_proc server speaks TLS with a self-signed certificate (`--secure-serving` true).

In the mesh. The picker pods get `sidecar.istio.io/inject: "false"` (`epp.podAnnotations`;
istio/istio 1.30.3 pkg/kube/inject/inject.go `injectRequired` reads the annotation when no label
is set): the gateway reaches them with that plain TLS, which a sidecar under STRICT mTLS would
refuse. The picker scrapes every pod of its pool for queue length and KV-cache usage
(`metrics-data-source`, `pkg/epp/framework/plugins/datalayer/source/metrics/datasource.go`):
by default on the pool's target port, which STRICT mTLS refuses to a client outside the mesh,
so the plugin configuration here points it at the pilot-agent's merged metrics on
`:15020/stats/prometheus` (the server's own `/metrics` plus Envoy's; the injector sends the
pod's prometheus.io annotations there), the port the sidecar never captures. The model's
NetworkPolicy admits the picker pods on 15020 (mesh/security.py).

Istio mirrors each pool in a headless shadow Service `<pool>-ip-<sha256(pool)[:8]>` whose
first port, 54321, carries every endpoint (pilot/pkg/config/kube/gateway/
inferencepool_collection.go `InferencePoolServiceName`, `translateShadowServiceToService`); the
gateway's cluster for it takes the pod the picker names (cluster.go `applyOverrideHostPolicy`).
The model's traffic policy goes on a DestinationRule for that host, as it does on the version
Services.
"""

from __future__ import annotations

import hashlib

import yaml

from mesh.charts import HelmChart
from mesh.config import StackConfig
from mesh.gatewayapi.common import (
    AGENT_METRICS_PATH,
    AGENT_METRICS_PORT,
    POOL_API,
    has_pools,
    picker_name,
    picker_pod_labels,
    pool_name,
)
from mesh.k8s import istio_networking, metadata
from mesh.resilience import traffic_policy
from models.presets import server_ports
from models.workloads import selector_labels

PICKER_CHART = "oci://ghcr.io/llm-d/charts/llm-d-router-gateway"
PICKER_CHART_VERSION = "v0.10.0"
PICKER_SOURCE = "llm-d/llm-d-router v0.10.0 config/charts (routerlib templates)"
EXT_PROC_PORT = 9002
PLUGINS_FILE = "ml-mesh-plugins.yaml"
SHADOW_PORT = 54321
TRAFFIC_COMPONENT = "traffic"
# The picker pods stay out of the mesh (see the module docstring).
PICKER_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}


def picker_host(config: StackConfig, pool: str) -> str:
    return f"{picker_name(pool)}.{config.namespace}.svc.cluster.local"


def shadow_service_name(pool: str) -> str:
    """Istio's shadow Service of a pool (`InferencePoolServiceName`): `<pool>-ip-<hash>`,
    the pool name cut so that the whole fits 63 characters."""
    digest = hashlib.sha256(pool.encode()).hexdigest()[:8]
    separator = "-ip-"
    base = pool[: 63 - len(separator) - len(digest)]
    return f"{base}{separator}{digest}"


def shadow_service_host(config: StackConfig, pool: str) -> str:
    return f"{shadow_service_name(pool)}.{config.namespace}.svc.cluster.local"


def plugins_config(config: StackConfig, name: str) -> str:
    """The picker's EndpointPickerConfig: the chart's default scheduling (queue, KV-cache and
    prefix-cache scorers, weights 2/2/3: `_config.yaml` `default-plugins.yaml`), with the
    metrics read from the pilot-agent's port. `port` overrides the pool's target port for
    every endpoint (`source/http/datasource.go`), which the single target port allows.
    `core-metrics-extractor` reads vLLM's metric names unless told `defaultEngine: sglang`."""
    model = config.models[name]
    extractor: dict = {"type": "core-metrics-extractor"}
    if model.server == "sglang":
        extractor["parameters"] = {"defaultEngine": "sglang"}
    document = {
        "apiVersion": "llm-d.ai/v1alpha1",
        "kind": "EndpointPickerConfig",
        "plugins": [
            {"type": "queue-scorer"},
            {"type": "kv-cache-utilization-scorer"},
            {"type": "prefix-cache-scorer"},
            {
                "type": "metrics-data-source",
                "parameters": {
                    "scheme": "http",
                    "path": AGENT_METRICS_PATH,
                    "port": AGENT_METRICS_PORT,
                },
            },
            extractor,
        ],
        "schedulingProfiles": [
            {
                "name": "default",
                "plugins": [
                    {"pluginRef": "queue-scorer", "weight": 2},
                    {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
                    {"pluginRef": "prefix-cache-scorer", "weight": 3},
                ],
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def picker_values(config: StackConfig, name: str, version: str) -> dict:
    """The chart's values (`llm-d-router-gateway/values.yaml`, `routerlib/values.yaml` under
    `router:`)."""
    model = config.models[name]
    settings = model.inference_pool
    assert settings is not None, "only models with an inferencePool have pickers"
    return {
        "provider": {"name": "istio"},
        "router": {
            "inferencePool": {"create": True, "failureMode": settings.failure_mode},
            "modelServers": {
                "type": model.server,
                "protocol": "http",
                "matchLabels": selector_labels(name, version),
                "targetPorts": [{"number": server_ports(model)[0].number}],
            },
            "epp": {
                "replicas": settings.picker_replicas,
                "image": {"tag": PICKER_CHART_VERSION, "pullPolicy": "IfNotPresent"},
                "podAnnotations": dict(PICKER_POD_ANNOTATIONS),
                "pluginsConfigFile": PLUGINS_FILE,
                "pluginsCustomConfig": {PLUGINS_FILE: plugins_config(config, name)},
            },
        },
    }


def inference_pool(config: StackConfig, name: str, version: str) -> dict:
    """The InferencePool the chart creates (`_inferencepool.yaml` with these values)."""
    settings = config.models[name].inference_pool
    assert settings is not None
    pool = pool_name(name, version)
    return {
        "apiVersion": POOL_API,
        "kind": "InferencePool",
        "metadata": {"name": pool, "namespace": config.namespace},
        "spec": {
            "targetPorts": [{"number": server_ports(config.models[name])[0].number}],
            "appProtocol": "http",
            "selector": {"matchLabels": selector_labels(name, version)},
            "endpointPickerRef": {
                "name": picker_name(pool),
                "port": {"number": EXT_PROC_PORT},
                "failureMode": settings.failure_mode,
            },
        },
    }


def picker_service(config: StackConfig, pool: str) -> dict:
    """The picker's Service (`_service.yaml`, the non-GKE branch)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": picker_name(pool), "namespace": config.namespace},
        "spec": {
            "selector": picker_pod_labels(pool),
            "ports": [
                {
                    "name": "grpc-ext-proc",
                    "protocol": "TCP",
                    "port": EXT_PROC_PORT,
                    "appProtocol": "kubernetes.io/h2c",
                },
                {"name": "http-metrics", "protocol": "TCP", "port": 9090},
            ],
            "type": "ClusterIP",
        },
    }


def picker_deployment(config: StackConfig, name: str, pool: str) -> dict:
    """The picker's Deployment as far as traffic goes (`_deployment.yaml`, replicas, the pod
    template's selector and mode labels, `epp.podAnnotations`, the service account, the `epp`
    container's ports 9002 (ext_proc), 9003 (gRPC health) and 9090 (metrics)): what the trace
    needs to find the picker pods and whether they run a sidecar."""
    settings = config.models[name].inference_pool
    assert settings is not None
    picker = picker_name(pool)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": picker, "namespace": config.namespace},
        "spec": {
            "replicas": settings.picker_replicas,
            "selector": {"matchLabels": picker_pod_labels(pool)},
            "template": {
                "metadata": {
                    "labels": {
                        **picker_pod_labels(pool),
                        "llm-d.ai/igw-mode": "llm-d-router-gateway",
                    },
                    "annotations": dict(PICKER_POD_ANNOTATIONS),
                },
                "spec": {
                    "serviceAccountName": picker,
                    "containers": [
                        {
                            "name": "epp",
                            "ports": [
                                {"name": "grpc", "containerPort": EXT_PROC_PORT},
                                {"name": "grpc-health", "containerPort": 9003},
                                {"name": "metrics", "containerPort": 9090},
                            ],
                        }
                    ],
                },
            },
        },
    }


def picker_destination_rule(config: StackConfig, pool: str) -> dict:
    """The chart's DestinationRule for the picker (`istio.yaml`, provider istio)."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": picker_name(pool), "namespace": config.namespace},
        "spec": {
            "host": picker_host(config, pool),
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "insecureSkipVerify": True}},
        },
    }


def picker_chart(config: StackConfig, name: str, version: str) -> HelmChart:
    pool = pool_name(name, version)
    return HelmChart(
        name=pool,
        namespace=config.namespace,
        chart=PICKER_CHART,
        version=PICKER_CHART_VERSION,
        values=picker_values(config, name, version),
        modelled=(
            inference_pool(config, name, version),
            picker_service(config, pool),
            picker_deployment(config, name, pool),
            picker_destination_rule(config, pool),
        ),
        source=PICKER_SOURCE,
    )


def picker_charts(config: StackConfig, name: str) -> list[HelmChart]:
    if not has_pools(config, name):
        return []
    return [picker_chart(config, name, v) for v in sorted(config.models[name].versions)]


def pool_destination_rules(config: StackConfig, name: str) -> list[dict]:
    """The model's traffic policy on each pool's shadow host (none without a policy)."""
    policy = traffic_policy(config, name)
    if policy is None or not has_pools(config, name):
        return []
    rules = []
    for version in sorted(config.models[name].versions):
        pool = pool_name(name, version)
        rules.append(
            {
                "apiVersion": istio_networking(config),
                "kind": "DestinationRule",
                "metadata": metadata(
                    f"{pool}-pool",
                    config.namespace,
                    TRAFFIC_COMPONENT,
                    selector_labels(name, version),
                ),
                "spec": {"host": shadow_service_host(config, pool), "trafficPolicy": policy},
            }
        )
    return rules
