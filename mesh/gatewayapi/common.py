"""Names and formats every Gateway API builder shares."""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.config.formats import duration_millis
from mesh.config.inference import MAX_POOL_NAME

GATEWAY_API = "gateway.networking.k8s.io/v1"
GROUP = "gateway.networking.k8s.io"

# Gateway API `Duration` (GEP-2257): `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, so no decimals and no
# ns/us units, unlike the Go durations the stack config accepts (Istio's syntax).
_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def gateway_duration(value: str) -> str:
    """A config duration (Go syntax, whole milliseconds: `_duration` guarantees it) in
    Gateway API syntax: `1.5s` -> `1s500ms`, `90s` -> `1m30s`, `250ms` -> `250ms`.

    Istio parses the result with Go's time.ParseDuration (conversion.go `convertHTTPRoute`),
    so both spellings mean the same time."""
    left = duration_millis(value)
    parts = []
    for unit, millis in _UNITS:
        count, left = divmod(left, millis)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def version_service_name(name: str, version: str) -> str:
    """The Service of one version: `<model>-<version>` (the Deployment's name too; the config
    keeps it within 63 characters)."""
    return f"{name}-{version}"


def version_service_host(config: StackConfig, name: str, version: str) -> str:
    return f"{version_service_name(name, version)}.{config.namespace}.svc.cluster.local"


# Inference pools (mesh/gatewayapi/pools.py): the names the routes, the NetworkPolicy and the
# pickers' chart share.
POOL_API = "inference.networking.k8s.io/v1"
POOL_GROUP = "inference.networking.k8s.io"
# The pilot-agent's merged metrics (Istio metrics merging, meshConfig.enablePrometheusMerge),
# where the endpoint pickers scrape the servers.
AGENT_METRICS_PORT = 15020
AGENT_METRICS_PATH = "/stats/prometheus"
# The picker's ext_proc and metrics ports (llm-d-router v0.10.0 routerlib `_deployment.yaml`).
EXT_PROC_PORT = 9002
PICKER_METRICS_PORT = 9090


def has_pools(config: StackConfig, name: str) -> bool:
    """The model routes its ingress traffic through InferencePools (models.<m>.inferencePool;
    Flagger models never: the config refuses the pair)."""
    model = config.models[name]
    return config.gateway_api() and model.inference_pool is not None and model.progressive is None


def pool_name(name: str, version: str) -> str:
    """The pool, and the picker's Helm release, of one version: `<model>-<version>`."""
    return f"{name}-{version}"


def picker_name(pool: str) -> str:
    """The picker's Deployment, Service and ServiceAccount (llm-d-router v0.10.0 routerlib
    `_helpers.tpl` `llm-d-router.name`: the release, lowercased, cut to 40 characters, then
    `-epp`)."""
    return f"{pool.lower()[:MAX_POOL_NAME]}-epp"


def picker_pod_labels(pool: str) -> dict[str, str]:
    """The picker pods' selector labels in pool mode (`llm-d-router.selectorLabels`)."""
    return {"llm-d-router-gateway": picker_name(pool)}
