"""`mesh trace`: an offline simulation of where a request goes, from Kubernetes and Istio objects.

Give it objects (a stack's rendered plan, `kubectl get -o yaml` of a cluster, or both), a
source (an ingress gateway pod, or a pod by namespace, labels and service account, with or
without a sidecar, or one container of a pod) and a request (port, protocol, host or SNI,
method, path, headers); it answers with every decision on the way and where each share of the
requests ends: the Envoy cluster `outbound|<port>|<subset>|<host>`, the pod and container port
that serve it, or why it fails (no route, 403, 503 for a missing subset or endpoint, a
blackhole under REGISTRY_ONLY, a NetworkPolicy drop, a reset by STRICT mTLS).

It models **Istio 1.30** (istio/istio tag 1.30.3) with sidecars or the ambient data plane,
Istio's and the Kubernetes Gateway API's routes, and Kubernetes NetworkPolicy, each rule
citing the Istio source it follows:

- `gateway`: Gateway server selection by selector, port, TLS/SNI, httpsRedirect, server host
  namespaces;
- `routes`: VirtualService binding (`gateways`, `mesh`), host matching, the drop of matches on
  another port or gateway at translation, first-match order, header/uri matching, weights,
  mirror, destination port defaults;
- `upstream`: clusters, DestinationRule subsets and lookup order, endpoints, auto mTLS,
  PeerAuthentication, AuthorizationPolicy, the container port and its protocol;
- `simulate`: the sidecar's outbound path (Sidecar egress scoping, ServiceEntries,
  REGISTRY_ONLY vs ALLOW_ANY), kube-proxy for clients without a proxy, and what a
  container's connections meet (capture by classic or native sidecars, with or without Istio
  CNI, UID 1337), and the proxy's own provider clusters (tracing, access logs);
- `authz`, `netpol`: AuthorizationPolicy and NetworkPolicy evaluation;
- `flagger`: the Services, DestinationRules and VirtualService Flagger creates for a Canary;
- `gatewayapi`, `apiroutes`: Gateway API listeners, HTTPRoute attachment (`allowedRoutes`,
  `sectionName`), hostnames, istiod's rule order (`sortHTTPRoutes`), backendRef weights,
  redirects and mirrors, at the ingress Gateway and for a Service (GAMMA);
- `pools`: Inference Extension InferencePools: the shadow Service istiod creates, the
  backendRef's destination, the Gateway's ext_proc call to the endpoint picker (FailOpen,
  FailClose);
- `ambient`, `waypoint`: ztunnel capture, waypoint binding (`istio.io/use-waypoint`,
  `istio.io/ingress-use-waypoint`), L7 policies at the waypoint (targetRefs), L4 policies and
  PeerAuthentication at the destination ztunnel (the direct peer's identity), HBONE on 15008.

Out of scope, said here so nobody reads a pass as proof of them: GRPCRoute, TLSRoute, TCPRoute,
Gateway API consumer routes, URLRewrite/header filters and ReferenceGrant checks; egress
waypoints' policies, workload waypoints and sidecar-to-waypoint interop; TCP and TLS routes of
VirtualServices; several
VirtualServices merged on one host (the first one is used); VirtualService delegation and
exportTo of VirtualServices; EnvoyFilters and WasmPlugins; CUSTOM (ext_authz) policies and
JWT (RequestAuthentication); locality, outlier ejection and circuit-breaker overflow at run
time; DNS resolution of external hosts (assumed to resolve; the outbound exclusion
annotations apply only to requests addressed by IP); traffic the kubelet sends (node traffic is
allowed by NetworkPolicy, and probes are rewritten to the agent); NetworkPolicy egress rules of
the source; Sidecar egress `port`s and services imported implicitly through VirtualService
destinations; which of several competing Sidecars or PeerAuthentications istiod takes (the
oldest; here the first listed); merging several DestinationRules of one host; whether
REGISTRY_ONLY answers an unknown HTTP host with 502 or a reset (it depends on the listeners the
proxy has; the verdict `blackholed` is the same); TLS passthrough gateway servers (`unmodelled`);
Flagger's A/B and mirroring analyses. meshConfig is not among the objects: `MeshSettings`
holds Istio's defaults (ALLOW_ANY, no CNI, classic sidecars for pods without the
native-sidecar annotation), and the scrape journeys assume meshConfig.enablePrometheusMerge
(on by default: the injector points the scrape annotations at the agent, :15020).

The package takes objects only: it knows nothing of ml-mesh's config or builders, so it traces
objects any tool made. `mesh.journeys` asks it the questions a stack's config promises.
"""

from mesh.trace.model import (
    OK_VERDICTS,
    VERDICTS,
    Branch,
    MeshSettings,
    Outcome,
    Request,
    Step,
    Trace,
    Workload,
)
from mesh.trace.objects import Objects, Pod, load_files
from mesh.trace.simulate import capture, pod_source, proxy_cluster, trace, trace_process

__all__ = [
    "OK_VERDICTS",
    "VERDICTS",
    "Branch",
    "MeshSettings",
    "Objects",
    "Outcome",
    "Pod",
    "Request",
    "Step",
    "Trace",
    "Workload",
    "capture",
    "load_files",
    "pod_source",
    "proxy_cluster",
    "trace",
    "trace_process",
]
