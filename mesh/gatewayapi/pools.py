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
NetworkPolicy admits the picker pods on 15020, and the pickers get their own default-deny
NetworkPolicy (mesh/security.py `picker_peers`, `picker_network_policies`). The chart has no
value for a securityContext: the program hardens the picker Deployment with a Pulumi transform
(`harden_picker`), so the policy pack, which sees the chart's objects at preview, accepts it.

Istio mirrors each pool in a headless shadow Service `<pool>-ip-<sha256(pool)[:8]>` whose
first port, 54321, carries every endpoint (pilot/pkg/config/kube/gateway/
inferencepool_collection.go `InferencePoolServiceName`, `translateShadowServiceToService`); the
gateway's cluster for it takes the pod the picker names (cluster.go `applyOverrideHostPolicy`).
The model's traffic policy goes on a DestinationRule for that host, as it does on the version
Services. A weighted rule across pools gets one picker in Istio 1.30, its last backendRef's
(mesh/gatewayapi/routes.py `stable_pool_last`).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import yaml

from mesh.charts import HelmChart
from mesh.config import StackConfig
from mesh.gatewayapi.common import (
    AGENT_METRICS_PATH,
    AGENT_METRICS_PORT,
    EXT_PROC_PORT,
    PICKER_METRICS_PORT,
    POOL_API,
    has_pools,
    picker_name,
    picker_pod_labels,
    pool_name,
)
from mesh.gatewayapi.services import policy_rule
from mesh.resilience import traffic_policy
from mesh.trace.pools import shadow_name
from models.presets import server_ports
from models.workloads import selector_labels

PICKER_CHART = "oci://ghcr.io/llm-d/charts/llm-d-router-gateway"
PICKER_CHART_VERSION = "v0.10.0"
PICKER_SOURCE = "llm-d/llm-d-router v0.10.0 config/charts (routerlib templates)"
PLUGINS_FILE = "ml-mesh-plugins.yaml"
TRAFFIC_COMPONENT = "traffic"
# The picker pods stay out of the mesh (see the module docstring).
PICKER_POD_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
PLUGINS_DIGEST = "ml-mesh.io/plugins-sha256"


# The picker image runs as 65532:65532 (llm-d-router v0.10.0 Dockerfile.epp `USER`) and writes
# nothing to disk (its self-signed certificate is made in memory, pkg/epp/server/runserver.go).
PICKER_UID = 65532
PICKER_CONTAINER = "epp"
# The picker's gRPC health port (`--grpc-health-port`, the chart's default).
HEALTH_PORT = 9003
# The selector label of the picker pods in pool mode (`llm-d-router.selectorLabels`).
PICKER_LABEL = next(iter(picker_pod_labels("pool")))
# What the chart gives every picker unless told otherwise (routerlib/values.yaml `epp.resources`).
CHART_REQUESTS = {"cpu": "8", "memory": "8Gi"}
CHART_LIMITS = {"memory": "16Gi"}
PICKER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": PICKER_UID,
    "runAsGroup": PICKER_UID,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def picker_host(config: StackConfig, pool: str) -> str:
    return f"{picker_name(pool)}.{config.namespace}.svc.cluster.local"


def shadow_service_host(config: StackConfig, pool: str) -> str:
    """The host of istiod's shadow Service of a pool (mesh.trace.pools `shadow_name`, the
    trace's model of istiod, which also derives the Service itself)."""
    return f"{shadow_name(pool)}.{config.namespace}.svc.cluster.local"


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


def picker_pod_annotations(config: StackConfig, name: str) -> dict[str, str]:
    """No sidecar, and the digest of the plugin configuration: the chart mounts it from a
    ConfigMap with no checksum on the pod template (`_deployment.yaml`), and the picker reads
    it once at start, so without the digest a changed configuration would wait for the next
    restart; with it, the Deployment rolls."""
    digest = hashlib.sha256(plugins_config(config, name).encode()).hexdigest()[:16]
    return {**PICKER_POD_ANNOTATIONS, PLUGINS_DIGEST: digest}


def picker_values(config: StackConfig, name: str, version: str) -> dict:
    """The chart's values (`llm-d-router-gateway/values.yaml`, `routerlib/values.yaml` under
    `router:`)."""
    model = config.models[name]
    settings = model.inference_pool
    assert settings is not None, "only models with an inferencePool have pickers"
    epp: dict = {
        "replicas": settings.picker_replicas,
        "image": picker_image_values(config.images.endpoint_picker),
        "podAnnotations": picker_pod_annotations(config, name),
        "pluginsConfigFile": PLUGINS_FILE,
        "pluginsCustomConfig": {PLUGINS_FILE: plugins_config(config, name)},
    }
    epp["resources"] = picker_resource_values(config, name)
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
            "epp": epp,
        },
    }


def picker_image_values(image: str) -> dict:
    """`epp.image` from a reference: the chart writes `<registry>/<repository>:<tag>`
    (`_deployment.yaml`), so the first path segment is the registry, the rest the repository,
    and a digest rides after the tag (`v0.10.0@sha256:...`, which the kubelet pins)."""
    reference, at, digest = image.partition("@")
    name, tag = reference.rsplit(":", 1)
    registry, _, repository = name.partition("/")
    if not repository:
        registry, repository = "docker.io", f"library/{name}"
    return {
        "registry": registry,
        "repository": repository,
        "tag": f"{tag}{at}{digest}",
        "pullPolicy": "IfNotPresent",
    }


def _twice_cpu(quantity: str) -> str:
    """Twice a CPU quantity (`8` -> `16`, `500m` -> `1`, `1.5` -> `3`), in millicores when
    not whole."""
    millis = int(quantity[:-1]) if quantity.endswith("m") else int(Decimal(quantity) * 1000)
    doubled = 2 * millis
    return str(doubled // 1000) if doubled % 1000 == 0 else f"{doubled}m"


def picker_resource_values(config: StackConfig, name: str) -> dict:
    """`epp.resources` as given, plus a CPU limit unless given: the chart leaves it unset on
    purpose (bursts), and the policy pack's `resources-limited` refuses a container without
    one. Request and response bodies stream through the picker (route.go `ExtProcPerRoute`,
    FULL_DUPLEX_STREAMED), so CFS throttling at the request would add to every request's
    latency: the limit is twice the CPU request (the given one, else the chart's 8). Helm
    merges the rest with the chart's defaults key by key."""
    settings = config.models[name].inference_pool
    assert settings is not None
    given = settings.picker_resources.values()
    requests = {**CHART_REQUESTS, **given.get("requests", {})}
    limits = {"cpu": _twice_cpu(requests["cpu"]), **given.get("limits", {})}
    found = {"limits": limits}
    if given.get("requests"):
        found["requests"] = given["requests"]
    return found


def harden_picker(obj: dict) -> dict:
    """The picker Deployment as the policy pack's `hardened-security-context` wants it: the
    chart gives its containers no securityContext and has no value for one, so the program
    applies this to the Deployment the chart renders (a Pulumi transform, mesh/program.py).
    Anything else passes unchanged; the input is not modified."""
    if obj.get("kind") != "Deployment":
        return obj
    selector = obj.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    spec = obj.get("spec", {}).get("template", {}).get("spec")
    if not spec or PICKER_LABEL not in selector:
        return obj
    pod = {**spec, "containers": []}
    for container in spec.get("containers", []):
        context = {**PICKER_SECURITY_CONTEXT, **(container.get("securityContext") or {})}
        pod["containers"].append({**container, "securityContext": context})
    template = {**obj["spec"]["template"], "spec": pod}
    return {**obj, "spec": {**obj["spec"], "template": template}}


def picker_deployment(config: StackConfig, name: str, version: str) -> dict:
    """The picker Deployment the chart renders (`_deployment.yaml`, pool mode), the fields the
    checks and the trace read: labels, the no-injection annotation, the service account, the
    `epp` container's image, resources, ports and gRPC probes, after `harden_picker`."""
    settings = config.models[name].inference_pool
    assert settings is not None
    pool = pool_name(name, version)
    picker = picker_name(pool)
    values = picker_resource_values(config, name)
    # What Helm makes of the values: the chart's defaults, key by key overridden.
    resources = {
        "requests": {**CHART_REQUESTS, **values.get("requests", {})},
        "limits": {**CHART_LIMITS, **values["limits"]},
    }
    probe = {"grpc": {"port": HEALTH_PORT, "service": "inference-extension"}}
    if settings.picker_replicas > 1:  # leader election: a health service per role
        liveness = {"grpc": {"port": HEALTH_PORT, "service": "liveness"}}
        readiness = {"grpc": {"port": HEALTH_PORT, "service": "readiness"}}
    else:
        liveness = readiness = probe
    container = {
        "name": PICKER_CONTAINER,
        "image": config.images.endpoint_picker,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--pool-name", pool, "--pool-namespace", config.namespace],
        "resources": resources,
        "ports": [
            {"name": "grpc", "containerPort": EXT_PROC_PORT},
            {"name": "grpc-health", "containerPort": HEALTH_PORT},
            {"name": "metrics", "containerPort": PICKER_METRICS_PORT},
        ],
        "livenessProbe": {**liveness, "initialDelaySeconds": 5, "periodSeconds": 10},
        "readinessProbe": {**readiness, "periodSeconds": 2},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": picker, "namespace": config.namespace},
        "spec": {
            "replicas": settings.picker_replicas,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": picker_pod_labels(pool)},
            "template": {
                "metadata": {
                    # `llm-d-router.selectorLabels` and `modeLabels` (pool mode)
                    "labels": {
                        **picker_pod_labels(pool),
                        "llm-d.ai/igw-mode": "llm-d-router-gateway",
                    },
                    "annotations": picker_pod_annotations(config, name),
                },
                "spec": {
                    "serviceAccountName": picker,
                    "terminationGracePeriodSeconds": 130,
                    "containers": [container],
                },
            },
        },
    }
    return harden_picker(deployment)


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
                {"name": "http-metrics", "protocol": "TCP", "port": PICKER_METRICS_PORT},
            ],
            "type": "ClusterIP",
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
            picker_deployment(config, name, version),
            picker_service(config, pool),
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
    return [
        policy_rule(
            config,
            f"{pool_name(name, version)}-pool",
            shadow_service_host(config, pool_name(name, version)),
            selector_labels(name, version),
            policy,
        )
        for version in sorted(config.models[name].versions)
    ]
