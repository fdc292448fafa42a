"""Istio routing of one model: a DestinationRule with a subset per version and a VirtualService
with the weighted canary split, bound to the shared Gateway and to the mesh.

All of a model's traffic settings live in its one VirtualService, so shifting the canary changes
exactly one resource.
"""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.faults import http_fault, with_fault
from mesh.ingress import gateway_ref
from mesh.k8s import istio_networking, metadata
from mesh.resilience import traffic_policy
from models.presets import server_ports
from models.workloads import selector_labels

COMPONENT = "traffic"
# Names the canary version on the VirtualService, for policies that bound its weight.
CANARY_ANNOTATION = "ml-mesh.io/canary"


def destination_rule(config: StackConfig, name: str) -> dict:
    model = config.models[name]
    rule = {
        "apiVersion": istio_networking(config),
        "kind": "DestinationRule",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            # No exportTo: the ingress gateway pods (another namespace) need these subsets.
            "host": config.service_host(name),
            "subsets": [
                {"name": version, "labels": {"version": selector_labels(name, version)["version"]}}
                for version in sorted(model.versions)
            ],
        },
    }
    policy = traffic_policy(config, name)
    if policy is not None:
        rule["spec"]["trafficPolicy"] = policy
    return rule


def weighted_route(config: StackConfig, name: str, port: int) -> list[dict]:
    """Destinations for the live traffic split; versions at 0% are left out of the route."""
    return [
        {
            "destination": {
                "host": config.service_host(name),
                "subset": version,
                "port": {"number": port},
            },
            "weight": weight,
        }
        for version, weight in config.models[name].traffic().items()
    ]


def virtual_service(config: StackConfig, name: str) -> dict:
    """Routes for every Service port: the destination must name a port (the Service has more
    than one, IST0112), so each non-REST port gets a route matched on that port and the REST
    port takes the rest, which includes everything arriving through the gateway."""
    ports = server_ports(config.models[name])
    rest, others = ports[0], ports[1:]
    http = [
        {
            "name": port.name,
            "match": [{"port": port.number}],
            "route": weighted_route(config, name, port.number),
        }
        for port in others
    ]
    http.append({"name": rest.name, "route": weighted_route(config, name, rest.number)})
    http = with_fault(http, http_fault(config, name))
    canary = config.models[name].canary
    annotations = {CANARY_ANNOTATION: canary.version} if canary else None
    return {
        "apiVersion": istio_networking(config),
        "kind": "VirtualService",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}, annotations),
        "spec": {
            "hosts": [*config.model_hosts(name), config.service_host(name)],
            "gateways": [gateway_ref(config), "mesh"],
            "http": http,
        },
    }


def traffic_objects(config: StackConfig, name: str) -> list[dict]:
    return [destination_rule(config, name), virtual_service(config, name)]
