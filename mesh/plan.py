"""Everything one stack creates, as plain Kubernetes objects grouped the way `pulumi preview`
shows them. Render, the Pulumi program and the tests all start from `build_plan`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh.config import StackConfig
from mesh.egress import egress_objects
from mesh.ingress import endpoint_urls, gateway, gateway_hosts
from mesh.namespace import namespace
from mesh.security import model_security_objects, namespace_security_objects
from mesh.traffic import traffic_objects
from models.workloads import model_objects

MODEL = "ml-mesh:serving:Model"
INGRESS = "ml-mesh:mesh:Ingress"
EGRESS = "ml-mesh:mesh:Egress"
SECURITY = "ml-mesh:mesh:Security"


@dataclass(frozen=True)
class Component:
    """A Pulumi ComponentResource: its type token, logical name and child objects."""

    type: str
    name: str
    objects: tuple[dict, ...]


@dataclass(frozen=True)
class Plan:
    namespace: dict
    components: tuple[Component, ...]

    def objects(self) -> list[dict]:
        """Every object in creation order: the namespace first, then each component's."""
        return [self.namespace, *(obj for c in self.components for obj in c.objects)]


def build_plan(config: StackConfig) -> Plan:
    components = [
        Component(INGRESS, config.gateway.name, (gateway(config),)),
        Component(EGRESS, "egress", tuple(egress_objects(config))),
        # After egress: the Sidecar's REGISTRY_ONLY must not cut the pods off before the
        # ServiceEntries exist (see DEPENDS_ON_KINDS in mesh.program).
        Component(SECURITY, "security", tuple(namespace_security_objects(config))),
    ]
    for name in sorted(config.models):
        objects = [
            *model_objects(config, name),
            *traffic_objects(config, name),
            *model_security_objects(config, name),
        ]
        components.append(Component(MODEL, name, tuple(objects)))
    # A component with nothing in it (no ServiceEntry for an in-cluster store, security off)
    # would only clutter the preview.
    return Plan(namespace(config), tuple(c for c in components if c.objects))


def model_outputs(config: StackConfig, name: str) -> dict[str, Any]:
    model = config.models[name]
    return {
        "urls": endpoint_urls(config, name),
        "service": config.service_host(name),
        "stable": model.stable,
        "canary": model.canary.version if model.canary else None,
        "traffic": model.traffic(),
    }


def stack_outputs(config: StackConfig) -> dict[str, Any]:
    return {
        "namespace": config.namespace,
        "gatewayHosts": gateway_hosts(config),
        "models": {name: model_outputs(config, name) for name in sorted(config.models)},
    }
