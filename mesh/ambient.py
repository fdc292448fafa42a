"""The ambient data plane (`dataplane: ambient`): what the serving namespace needs so ztunnel
carries its pods' traffic and a waypoint proxy enforces L7 policy for its Services.

In ambient mode no pod has an istio-proxy: Istio CNI redirects each pod's traffic, inside the
pod's network namespace, to the node's ztunnel, which speaks mutual TLS (HBONE, port 15008) to
the destination's ztunnel and enforces L4 AuthorizationPolicy (principals, ports). L7 (routes,
paths, methods) needs a waypoint, an Envoy that Istio deploys for a Gateway API `Gateway` of
class `istio-waypoint`; Services whose namespace (or themselves) carry `istio.io/use-waypoint`
are reached through it.

This module builds the ambient pieces every other builder keys on:

- the namespace labels (`namespace_labels`): `istio.io/dataplane-mode: ambient` enrols the pods,
  `istio.io/use-waypoint: waypoint` sends every Service of the namespace (ServiceEntries too)
  through the waypoint;
- the waypoint `Gateway` (`waypoint`), for service traffic;
- the waypoint's identity (`waypoint_principal`) and pod labels (`waypoint_pod_labels`), which
  the L4 policy and the NetworkPolicy admit (mesh.security);
- the Services the L7 policy attaches to (`model_service_names`), which also carry
  `istio.io/ingress-use-waypoint` (`service_labels`);
- which Istio reporter counts a request once on the serving side (`server_reporter`).
"""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.k8s import metadata

COMPONENT = "waypoint"
WAYPOINT = "waypoint"
WAYPOINT_CLASS = "istio-waypoint"
# HBONE: ztunnel and the waypoint tunnel mesh traffic to a pod on this port, whatever port the
# application listens on (the pod's in-pod ztunnel then proxies it to the original port).
HBONE_PORT = 15008
GATEWAY_API = "gateway.networking.k8s.io/v1"

DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"
USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
WAYPOINT_FOR_LABEL = "istio.io/waypoint-for"
REVISION_LABEL = "istio.io/rev"
INGRESS_USE_WAYPOINT_LABEL = "istio.io/ingress-use-waypoint"
# Istio labels the pods it deploys for a Gateway with the Gateway's name
# (pilot/pkg/serviceregistry/ambient/waypoints.go `gatewayToWaypointTransform` reads them back
# by this label to learn the waypoint's service accounts).
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
# `istio.io/use-waypoint: none` opts one object out of its namespace's waypoint
# (pilot/pkg/serviceregistry/ambient/waypoints.go `getUseWaypoint`: "none" is reserved).
NO_WAYPOINT = "none"
# Istio CNI SNATs the kubelet's probes of an ambient pod to this link-local address so ztunnel
# can tell them from mesh traffic and let them through (cni/pkg/iptables/iptables.go, the
# HOST_PROBE_SNAT_IP default in cni/README.md; Istio's docs "Ambient and Kubernetes
# NetworkPolicy"): a NetworkPolicy must admit it or the probes fail.
PROBE_SNAT_ADDRESS = "169.254.7.127"


def namespace_labels(config: StackConfig) -> dict[str, str]:
    """Enrol the namespace in ambient and bind its Services to the waypoint.

    No `istio-injection` and no `istio.io/rev`: Istio's injection analyzer counts either beside
    `istio.io/dataplane-mode` as a second injection label (IST0123,
    pkg/config/analysis/analyzers/injection/injection.go), and a pod with a sidecar in an
    ambient namespace is not captured by ztunnel. A revisioned control plane is chosen by the
    waypoint's own `istio.io/rev` label instead (`waypoint`).
    """
    return {DATAPLANE_MODE_LABEL: "ambient", USE_WAYPOINT_LABEL: WAYPOINT}


def waypoint(config: StackConfig) -> dict:
    """The namespace's waypoint: a Gateway of class `istio-waypoint` with the HBONE listener
    (`istioctl waypoint generate` emits exactly this shape), for service traffic
    (`istio.io/waypoint-for: service`, the default, said explicitly).

    Istio deploys it as Deployment and ServiceAccount `waypoint` (the class has no name
    suffix: pilot/pkg/config/kube/gatewaycommon/classinfo.go `DisableNameSuffix`), pods
    labelled `gateway.networking.k8s.io/gateway-name: waypoint`. With `istio.revision` the
    Gateway carries `istio.io/rev`, so that revision's istiod programs it.
    """
    labels = {WAYPOINT_FOR_LABEL: "service"}
    if config.istio.revision:
        labels[REVISION_LABEL] = config.istio.revision
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": metadata(WAYPOINT, config.namespace, COMPONENT, labels),
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{"name": "mesh", "port": HBONE_PORT, "protocol": "HBONE"}],
        },
    }


def waypoint_objects(config: StackConfig) -> list[dict]:
    return [waypoint(config)] if config.ambient() else []


def waypoint_principal(config: StackConfig) -> str:
    """The SPIFFE principal of the waypoint's pods (`<td>/ns/<ns>/sa/waypoint`): what the
    destination's ztunnel sees on every connection the waypoint forwards."""
    return f"{config.security.trust_domain}/ns/{config.namespace}/sa/{WAYPOINT}"


def waypoint_pod_labels() -> dict[str, str]:
    return {GATEWAY_NAME_LABEL: WAYPOINT}


def model_service_names(config: StackConfig, name: str) -> list[str]:
    """The Services of model `name` that callers reach and the L7 policy attaches to: the model
    Service `<model>`, and in gateway-api routing also one Service per version
    (`<model>-<version>`, the HTTPRoute's backends)."""
    services = [name]
    if config.gateway_api():
        services += [f"{name}-{version}" for version in sorted(config.models[name].versions)]
    return services


def service_labels(config: StackConfig) -> dict[str, str]:
    """`istio.io/ingress-use-waypoint: "true"` on a model's Services in ambient: the ingress
    gateway then sends their traffic through the waypoint, where the L7 policy is enforced,
    instead of straight to the pods (read on the Service from Istio 1.24.0:
    pilot/pkg/serviceregistry/ambient/services.go `ingressUseWaypointFromLabels`)."""
    return {INGRESS_USE_WAYPOINT_LABEL: "true"} if config.ambient() else {}


def server_reporter(config: StackConfig) -> str:
    """The `reporter` whose `istio_requests_total` (and request-duration histogram) counts each
    request to a model's pods exactly once, on the server side.

    With sidecars it is the pod's own proxy, `destination`. In ambient mode no proxy runs in
    the pod (ztunnel reports only TCP metrics, `istio_tcp_*`); the L7 metrics come from the
    waypoint, whose stats filter istiod configures with `Reporter_SERVER_GATEWAY` (istio/istio
    1.30.3 pilot/pkg/model/telemetry.go `generateStatsConfig`, `isWaypoint`), which the proxy
    labels `reporter="waypoint"` with the destination workload of the chosen endpoint
    (istio/proxy 1.30.3 source/extensions/filters/http/istio_stats/istio_stats.cc,
    `Reporter::ServerGateway`; istio/istio tests/integration/ambient/baseline_test.go
    `buildQuery` queries it so). A request the waypoint answers itself (e.g. a 403 of its L7
    policy) has no endpoint and is reported with `destination_workload="unknown"`."""
    return "waypoint" if config.ambient() else "destination"
