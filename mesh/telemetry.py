"""What operators see of a stack as a whole: the namespace's Istio Telemetry (access logs, trace
sampling) and, opt-in, the alerts. Each model's Grafana dashboard belongs to that model (see
`mesh.dashboard`).

The Telemetry has no selector, so it applies to every workload of the serving namespace and
overrides, field by field, the mesh-wide Telemetry of the root namespace. Istio allows one such
selector-less Telemetry per namespace.
"""

from __future__ import annotations

from mesh.alerts import alert_objects
from mesh.config import StackConfig
from mesh.k8s import metadata

COMPONENT = "telemetry"
NAME = "ml-mesh"


def telemetry_api(config: StackConfig) -> str:
    """telemetry.istio.io/v1 is served from Istio 1.22, like networking.istio.io/v1; meshes
    pinned to an older networking API get v1alpha1 (same schema)."""
    version = "v1" if config.istio.api_version == "v1" else "v1alpha1"
    return f"telemetry.istio.io/{version}"


def telemetry(config: StackConfig) -> dict:
    settings = config.telemetry
    logging: dict = {"providers": [{"name": settings.access_logging.provider}]}
    if not settings.access_logging.enabled:
        logging["disabled"] = True
    tracing: dict = {"randomSamplingPercentage": settings.tracing.sampling_percentage}
    if settings.tracing.provider:
        tracing["providers"] = [{"name": settings.tracing.provider}]
    return {
        "apiVersion": telemetry_api(config),
        "kind": "Telemetry",
        "metadata": metadata(NAME, config.namespace, COMPONENT),
        "spec": {"accessLogging": [logging], "tracing": [tracing]},
    }


def telemetry_objects(config: StackConfig) -> list[dict]:
    return [telemetry(config), *alert_objects(config)]
