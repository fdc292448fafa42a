"""`routing: gateway-api`: the Kubernetes Gateway API form of a stack's routing, as Istio 1.30
implements it (pilot/pkg/config/kube/gateway/).

- `ingress`: the ingress `Gateway` (class `istio`, Istio deploys its pods) and the HTTPRoute
  that redirects plain HTTP to HTTPS;
- `services`: a Service per version (HTTPRoute splits between Services, there are no subsets)
  and the DestinationRules that keep the traffic policy on them;
- `routes`: one HTTPRoute per model, bound to the Gateway and to the model Service (GAMMA);
  with inference pools, a second one binds the Gateway and splits between the pools;
- `pools`: the Inference Extension pools and their endpoint pickers (Helm releases).

Everything is emitted at `gateway.networking.k8s.io/v1` (served by Gateway API v1.5.1, which
Istio 1.30 builds against, and by v1.6.1); experimental-channel fields (HTTPRoute `retry`)
only when `platform.gatewayApiChannel` is `experimental`.
"""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.gatewayapi.common import GATEWAY_API
from mesh.gatewayapi.ingress import ingress_objects
from mesh.gatewayapi.pools import picker_charts, pool_destination_rules
from mesh.gatewayapi.routes import http_route, pool_route
from mesh.gatewayapi.services import version_destination_rules, version_services

__all__ = [
    "GATEWAY_API",
    "http_route",
    "ingress_objects",
    "picker_charts",
    "routing_objects",
    "version_destination_rules",
    "version_services",
]


def routing_objects(config: StackConfig, name: str) -> list[dict]:
    """A model's routing in gateway-api mode: its version Services, their DestinationRules
    (traffic policy only) and the HTTPRoute, in the order Pulumi creates them; with
    inference pools, the pools' traffic policy and the Gateway's route to the pools too (the
    pools and their pickers are Helm releases: `picker_charts`)."""
    pools = pool_route(config, name)
    return [
        *version_services(config, name),
        *version_destination_rules(config, name),
        *pool_destination_rules(config, name),
        http_route(config, name),
        *([pools] if pools is not None else []),
    ]
