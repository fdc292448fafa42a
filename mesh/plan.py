"""Everything one stack creates, as plain Kubernetes objects grouped the way `pulumi preview`
shows them. Render, the Pulumi program and the tests all start from `build_plan`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh import gatewayapi
from mesh.ambient import waypoint_objects
from mesh.charts import HelmChart
from mesh.config import StackConfig
from mesh.dashboard import dashboard_objects
from mesh.egress import egress_objects
from mesh.gatewayapi.common import has_pools, picker_name, pool_name, version_service_host
from mesh.ingress import endpoint_urls, gateway, gateway_hosts
from mesh.namespace import namespace
from mesh.progressive import progressive_objects
from mesh.security import model_security_objects, namespace_security_objects
from mesh.telemetry import telemetry_objects
from mesh.trace import pools
from mesh.traffic import traffic_objects
from models.workloads import model_objects

MODEL = "ml-mesh:serving:Model"
INGRESS = "ml-mesh:mesh:Ingress"
EGRESS = "ml-mesh:mesh:Egress"
TELEMETRY = "ml-mesh:observability:Telemetry"
SECURITY = "ml-mesh:mesh:Security"
WAYPOINT = "ml-mesh:mesh:Waypoint"


@dataclass(frozen=True)
class Component:
    """A Pulumi ComponentResource: its type token, logical name, child objects and the Helm
    releases it installs (the model's endpoint pickers)."""

    type: str
    name: str
    objects: tuple[dict, ...]
    charts: tuple[HelmChart, ...] = ()


@dataclass(frozen=True)
class Plan:
    namespace: dict
    components: tuple[Component, ...]

    def objects(self) -> list[dict]:
        """Every object in creation order: the namespace first, then each component's."""
        return [self.namespace, *(obj for c in self.components for obj in c.objects)]

    def charts(self) -> list[HelmChart]:
        return [chart for c in self.components for chart in c.charts]

    def cluster_objects(self) -> list[dict]:
        """What the cluster holds once applied: the objects, those the charts create that
        ml-mesh models (mesh.charts), and the shadow Service istiod derives from each
        InferencePool: what the checks (and the policy pack at preview) and trace read."""
        made = [obj for chart in self.charts() for obj in chart.modelled]
        return pools.expand([*self.objects(), *made])


def ingress_objects(config: StackConfig) -> list[dict]:
    """The shared ingress in the stack's routing API: the Istio Gateway (`routing: istio`), or
    the Gateway API Gateway and its HTTPS redirect route (mesh.gatewayapi.ingress)."""
    if config.gateway_api():
        return gatewayapi.ingress_objects(config)
    return [gateway(config)]


def routing_objects(config: StackConfig, name: str) -> list[dict]:
    """A model's routing in the stack's routing API: DestinationRule subsets and a
    VirtualService (mesh.traffic), or version Services, their DestinationRules and an
    HTTPRoute (mesh.gatewayapi)."""
    if config.gateway_api():
        return gatewayapi.routing_objects(config, name)
    return traffic_objects(config, name)


def build_plan(config: StackConfig) -> Plan:
    components = [
        Component(INGRESS, config.gateway.name, tuple(ingress_objects(config))),
        Component(EGRESS, "egress", tuple(egress_objects(config))),
        # After egress: the Sidecar's REGISTRY_ONLY must not cut the pods off before the
        # ServiceEntries exist (see DEPENDS_ON_KINDS in mesh.program).
        Component(SECURITY, "security", tuple(namespace_security_objects(config))),
        # Ambient only (empty otherwise): the namespace's waypoint, before the models whose
        # Services it serves.
        Component(WAYPOINT, "waypoint", tuple(waypoint_objects(config))),
    ]
    for name in sorted(config.models):
        charts = tuple(gatewayapi.picker_charts(config, name))
        components.append(Component(MODEL, name, tuple(serving_objects(config, name)), charts))
    components.append(Component(TELEMETRY, "telemetry", tuple(telemetry_objects(config))))
    # A component with nothing in it (no ServiceEntry for an in-cluster store, security off)
    # would only clutter the preview.
    return Plan(namespace(config), tuple(c for c in components if c.objects))


def serving_objects(config: StackConfig, name: str) -> list[dict]:
    """A model's objects in the mode that owns its routing: ml-mesh, or Flagger (progressive)."""
    if config.models[name].progressive is not None:
        return [*progressive_objects(config, name), *model_security_objects(config, name)]
    # The model's dashboard sits with the model: its preview shows the board beside the routes
    # it describes, and a weight shift touches nothing outside the model. Flagger models get
    # none: Flagger renames the workloads (<m>-primary) and owns the weights the board shows.
    return [
        *model_objects(config, name),
        *routing_objects(config, name),
        *model_security_objects(config, name),
        *dashboard_objects(config, name),
    ]


def routing_owner(config: StackConfig, name: str) -> str:
    return "flagger" if config.models[name].progressive is not None else "ml-mesh"


def model_outputs(config: StackConfig, name: str) -> dict[str, Any]:
    model = config.models[name]
    outputs = {
        "urls": endpoint_urls(config, name),
        "service": config.service_host(name),
        "routing": routing_owner(config, name),
        "stable": model.stable,
        "canary": model.canary.version if model.canary else None,
        "traffic": model.traffic(),
        "matches": {rule: match.version for rule, match in model.ordered_matches()},
        "mirror": model.mirror.model_dump() if model.mirror else None,
    }
    if config.gateway_api() and model.progressive is None:
        # The Service of each version, for a caller that must reach one version directly
        # (the HTTPRoute splits between these).
        outputs["versionServices"] = {
            version: version_service_host(config, name, version)
            for version in sorted(model.versions)
        }
    if has_pools(config, name):
        # The InferencePool and endpoint picker Service of each version, for the ingress.
        outputs["inferencePools"] = {
            version: {
                "pool": pool_name(name, version),
                "picker": picker_name(pool_name(name, version)),
            }
            for version in sorted(model.versions)
        }
    return outputs


def stack_outputs(config: StackConfig) -> dict[str, Any]:
    outputs = {
        "namespace": config.namespace,
        "gatewayHosts": gateway_hosts(config),
        "models": {name: model_outputs(config, name) for name in sorted(config.models)},
    }
    if config.gateway_api():
        outputs["routing"] = config.routing
        outputs["gateway"] = f"{config.gateway.namespace}/{config.gateway.name}"
    return outputs
