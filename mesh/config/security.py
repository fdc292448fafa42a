"""Mesh security of the serving namespace: mutual TLS, authorization, egress restriction."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mesh.config.base import _Config
from mesh.config.formats import DnsLabel, DnsSubdomain, Flag, Principal

# The principal of the legacy gateway install (istioctl default profile, `istio-ingress` chart)
# in the default trust domain: what StackConfig.gateway_principal() gives for the default
# gateway settings.
DEFAULT_GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


class Security(_Config):
    """Mesh security of the serving namespace. Unset switches follow `protected`: on in
    protected stacks, off otherwise, so each is one setting away in dev."""

    mtls: Literal["STRICT", "PERMISSIVE"] | None = Field(
        default=None,
        description="PeerAuthentication of the namespace; default STRICT when protected, "
        "otherwise none (the mesh-wide setting applies)",
    )
    authorization: Flag | None = Field(
        default=None,
        description="an ALLOW AuthorizationPolicy per model; default: protected",
    )
    restrict_egress: Flag | None = Field(
        default=None,
        description="a Sidecar limiting egress to the namespace, istio-system and the model "
        "store (REGISTRY_ONLY); in ambient, where ztunnel has no REGISTRY_ONLY, a NetworkPolicy "
        "egress (DNS, the waypoint, the store, 443 to any address: no host names, warned as "
        "MESH0025; false acknowledges open egress); default: protected",
    )
    network_policy: Flag | None = Field(
        default=None,
        description="a NetworkPolicy per model under the AuthorizationPolicy: ingress only from "
        "the gateway pods, the callers' namespaces and the metrics namespaces; default: protected",
    )
    metrics_namespaces: list[DnsLabel] = Field(
        default=["monitoring"],
        description="namespaces whose Prometheus may scrape the model pods (ports 15020 and "
        "15090) through the NetworkPolicy; in ambient the server's metrics port, by a Prometheus "
        "enrolled in ambient (HBONE on 15008) under STRICT mTLS or the L4 policy",
    )
    gateway_principal: Principal | None = Field(
        default=None,
        description="deprecated, kept for compatibility: must equal the principal derived from "
        "gateway.namespace/serviceAccount/selector (set those instead)",
    )
    trust_domain: DnsSubdomain = Field(
        default="cluster.local",
        description="trust domain of the gateway's principal and of models.<m>.callers",
    )
