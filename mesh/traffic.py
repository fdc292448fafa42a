"""Istio routing of one model: a DestinationRule with a subset per version and a VirtualService
with the match rules, the weighted canary split and the mirror, bound to the shared Gateway and
to the mesh.

All of a model's traffic settings live in its one VirtualService, so shifting the canary changes
exactly one resource. Routes are built per Service port (the destination must name a port: the
Service has more than one, IST0112); for each port the match rules come first, then the weighted
default route, so only the last route of the REST port lacks a match (RULES.md 26).

How a gRPC request finds the gRPC port depends on where it enters:

- in the mesh, the client dials the gRPC Service port, and istiod keeps only the matches whose
  `port` is that listener's port: `port: <grpc port>` selects the route;
- at the ingress gateway, the client dials the Gateway server's port (80/443), and istiod
  compares `match.port` with that server port, so a `port: 8500` match is dropped from the
  gateway's routes (pilot/pkg/networking/core/gateway.go `buildGatewayHTTPRouteConfig` passes
  `server.Port.Number`; route.go `TranslateRoute` returns nil on a port mismatch). The gateway
  block of a gRPC route therefore selects by `content-type: application/grpc...` (every gRPC
  request carries it, gRPC over HTTP/2 spec) and is scoped to our Gateway with `gateways`, so
  it never catches in-mesh REST calls. Both blocks live in one route: the same weights, match
  rules, mirror, timeout and retries for gRPC clients wherever they come from.
"""

from __future__ import annotations

from mesh.config import MatchRule, Model, StackConfig
from mesh.faults import http_fault, with_fault
from mesh.ingress import gateway_ref
from mesh.k8s import istio_networking, metadata
from mesh.resilience import traffic_policy
from models.presets import ServerPort, server_ports
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


def destination(config: StackConfig, name: str, version: str, port: int) -> dict:
    return {"host": config.service_host(name), "subset": version, "port": {"number": port}}


def route_weights(model: Model) -> dict[str, int]:
    """The weight of each version of the weighted route: stable, then the canary, both always
    listed, the idle one at 0.

    Keeping the destination at weight 0 (as Istio users write a warm canary by hand, and as
    Flagger leaves its canary at rest) means a shift only rewrites `weight` numbers, also to
    and from 0 and 100: the object diff never shows a destination appearing, disappearing or
    changing subset. It routes exactly as leaving it out would: istiod skips 0-weight
    destinations when a route has others (pilot/pkg/networking/core/route/route.go,
    `applyHTTPRouteDestination`: "Ignore 0 weighted clusters"), and the weights always add up to
    100, so the route's total is never 0 (IST validation `validateHTTPRouteDestinations`).
    """
    traffic = model.traffic()
    if model.canary is None:
        return traffic
    return {version: traffic.get(version, 0) for version in (model.stable, model.canary.version)}


def weighted_route(config: StackConfig, name: str, port: int) -> list[dict]:
    """Destinations for the live traffic split (see `route_weights`)."""
    return [
        {"destination": destination(config, name, version, port), "weight": weight}
        for version, weight in route_weights(config.models[name]).items()
    ]


def request_policy(model: Model) -> dict:
    """Timeout and retries, the same on every route of the model."""
    policy: dict = {}
    if model.timeout is not None:
        policy["timeout"] = model.timeout
    if model.retries is not None:
        policy["retries"] = model.retries.istio()
    return policy


GRPC_CONTENT_TYPE = {"content-type": {"prefix": "application/grpc"}}


def port_matches(
    config: StackConfig, port: ServerPort, rest: bool, headers: dict | None = None, **named
) -> list[dict]:
    """The match blocks that send a request to `port`, with the rule's `headers` in each.

    The REST port takes what no other route took, so its blocks carry no port condition (and
    none at all without headers). A gRPC port gets a mesh block selected by port number and a
    gateway block selected by the gRPC content type (see the module docstring)."""
    headers = dict(headers or {})
    if rest:
        return [{**named, "headers": headers}] if headers else []
    if port.app_protocol != "grpc":
        return [{**named, **({"headers": headers} if headers else {}), "port": port.number}]
    mesh = {**named, **({"headers": headers} if headers else {})}
    mesh.update({"gateways": ["mesh"], "port": port.number})
    gateway = {
        **named,
        "gateways": [gateway_ref(config)],
        "headers": {**headers, **GRPC_CONTENT_TYPE},
    }
    return [mesh, gateway]


def match_route(
    config: StackConfig, name: str, rule: str, match: MatchRule, port: ServerPort, rest: bool
) -> dict:
    return {
        "name": f"{rule}-{port.name}",
        "match": port_matches(config, port, rest, match.istio_headers(), name=rule),
        "route": [{"destination": destination(config, name, match.version, port.number)}],
        **request_policy(config.models[name]),
    }


def mirror(config: StackConfig, name: str, port: ServerPort) -> dict:
    shadow = config.models[name].mirror
    if shadow is None:
        return {}
    return {
        "mirror": destination(config, name, shadow.version, port.number),
        "mirrorPercentage": {"value": shadow.percent},
    }


def default_route(config: StackConfig, name: str, port: ServerPort, rest: bool) -> dict:
    route: dict = {"name": port.name}
    if not rest:
        route["match"] = port_matches(config, port, rest)
    route["route"] = weighted_route(config, name, port.number)
    route.update(mirror(config, name, port))
    route.update(request_policy(config.models[name]))
    return route


def port_routes(config: StackConfig, name: str, port: ServerPort, rest: bool) -> list[dict]:
    """The match rules of one port, in order, then its weighted route."""
    model = config.models[name]
    routes = [
        match_route(config, name, rule, match, port, rest)
        for rule, match in model.ordered_matches()
    ]
    return [*routes, default_route(config, name, port, rest)]


def http_routes(config: StackConfig, name: str) -> list[dict]:
    """Non-REST ports first (each selected by port), the REST port last: its weighted route has
    no match and takes everything else, including all traffic from the gateway."""
    ports = server_ports(config.models[name])
    rest, others = ports[0], ports[1:]
    routes = [r for port in others for r in port_routes(config, name, port, rest=False)]
    routes += port_routes(config, name, rest, rest=True)
    return with_fault(routes, http_fault(config, name))


def virtual_service(config: StackConfig, name: str) -> dict:
    canary = config.models[name].canary
    annotations = {CANARY_ANNOTATION: canary.version} if canary else None
    return {
        "apiVersion": istio_networking(config),
        "kind": "VirtualService",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}, annotations),
        "spec": {
            "hosts": [*config.model_hosts(name), config.service_host(name)],
            "gateways": [gateway_ref(config), "mesh"],
            "http": http_routes(config, name),
        },
    }


def traffic_objects(config: StackConfig, name: str) -> list[dict]:
    return [destination_rule(config, name), virtual_service(config, name)]
