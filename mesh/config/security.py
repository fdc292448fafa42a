"""Mesh security of the serving namespace: mutual TLS, authorization, egress restriction."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mesh.config.base import _Config
from mesh.config.formats import DnsLabel, DnsSubdomain, Flag, Principal

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
        "store (REGISTRY_ONLY); default: protected",
    )
    network_policy: Flag | None = Field(
        default=None,
        description="a NetworkPolicy per model under the AuthorizationPolicy: ingress only from "
        "the gateway pods, the callers' namespaces and the metrics namespaces; default: protected",
    )
    metrics_namespaces: list[DnsLabel] = Field(
        default=["monitoring"],
        description="namespaces whose Prometheus may scrape the model pods (ports 15020 and "
        "15090) through the NetworkPolicy",
    )
    gateway_principal: Principal = Field(
        default=DEFAULT_GATEWAY_PRINCIPAL,
        description="identity of the ingress gateway pods, allowed to call every model",
    )
    trust_domain: DnsSubdomain = Field(
        default="cluster.local", description="trust domain of models.<m>.callers"
    )
