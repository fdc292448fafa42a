"""The ambient data plane of Istio 1.30: ztunnel on every node, a waypoint per namespace or
Service, no sidecars.

Each rule cites istio/istio tag 1.30.3:

- Enrolment: a pod is in ambient mode when it or its namespace is labelled
  `istio.io/dataplane-mode: ambient` and the pod is not labelled `istio.io/dataplane-mode:
  none` and has no sidecar (the Istio CNI's `ambient.enablementSelectors`,
  manifests/charts/istio-cni/values.yaml; cni/pkg/util/podutil.go `podHasSidecar`).
- Capture: the CNI sets up the pod's iptables before any container runs (in-pod
  redirection), so init containers are captured too, and only ztunnel's own packet mark
  escapes it: no UID 1337 exception (cni/pkg/iptables/iptables.go, the ISTIO_OUTPUT rules on
  mark 0x539). The kubelet's probes are SNATed from 169.254.7.127 and let through.
- Waypoints: a Service uses the waypoint its `istio.io/use-waypoint` label names, else its
  namespace's (`none` opts out; `istio.io/use-waypoint-namespace` names another namespace); the
  waypoint must take service traffic (`istio.io/waypoint-for` on the Gateway or its class:
  `service`, the default, or `all`) and admit the Service's namespace (its listener's
  allowedRoutes, Same by default) (pilot/pkg/serviceregistry/ambient/waypoints.go
  `fetchWaypointForService`, `fetchWaypointForTarget`, `gatewayToWaypointTransform`).
  Istio deploys its pods labelled `gateway.networking.k8s.io/gateway-name: <name>` with the
  service account `<name>` (class istio-waypoint; pilot/pkg/config/kube/gatewaycommon/
  deploymentcontroller.go, classinfo.go `DisableNameSuffix`).
- Who uses the waypoint: ztunnel, for a client's traffic to a Service bound to one; an
  ingress gateway only when the Service (or its namespace) is labelled
  `istio.io/ingress-use-waypoint: "true"` (pilot/pkg/xds/endpoints/endpoint_builder.go
  `findServiceWaypoint`: "Currently only ingress and e/w gateway will call waypoints";
  pilot/pkg/serviceregistry/ambient/services.go `ingressUseWaypointFromLabels`). A sidecar
  applies its own routes and sends straight to the pods, without the waypoint.
- Transport: a proxy (sidecar, gateway, waypoint) sends HBONE to an ambient pod
  (endpoint_builder.go `supportTunnel`; "Waypoints always use HBONE"), so the destination sees
  TCP to port 15008 of the pod: a NetworkPolicy must admit 15008, not the container port.
- At the waypoint: the L7 AuthorizationPolicies whose `targetRefs` name the Service (kind
  Service, group ""), the waypoint Gateway, or the GatewayClass istio-waypoint from the root
  namespace; never a policy with a `selector` (pilot/pkg/model/policyattachment.go
  `ShouldAttachPolicy`: "waypoints never use selector"). Then the Service's routes (HTTPRoutes
  with the Service as parentRef, else VirtualServices bound to the mesh), then HBONE to the
  chosen pod.
- At the destination ztunnel: PeerAuthentication (STRICT refuses plaintext), then the
  AuthorizationPolicies with a `selector` (or none) of the pod's namespace and the root
  namespace, never one with targetRefs; the source identity is the direct peer's, the
  waypoint's when the traffic came through it. ztunnel cannot read HTTP: an ALLOW rule that
  needs an HTTP attribute (paths, methods, hosts, requestPrincipals, remoteIpBlocks, a
  request.* `when`) never matches, a DENY rule is enforced without its HTTP parts
  (pilot/pkg/serviceregistry/ambient/authorization.go `convertAuthorizationPolicy`,
  `handleRule`). A refused HBONE CONNECT closes the connection.

A ServiceEntry bound to a waypoint (by its label or its namespace's) sends the mesh's traffic
for its hosts through the waypoint (istio.io/latest/docs/ambient/usage/egress-gateway/); its
policies there are not evaluated. Not modelled: workload-addressed
waypoints (`istio.io/waypoint-for: workload`), multi-network, sidecar-to-waypoint interop and
the waypoint's own NetworkPolicy egress. A source pod's egress NetworkPolicy is applied to
what its ztunnel sends (HBONE to 15008 of the waypoint or of the destination pod; the original
port of a destination outside the cluster): NetworkPolicy is enforced outside the pod and
ambient never bypasses it (Istio's docs, "Ambient and Kubernetes NetworkPolicy").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mesh.trace import authz, netpol
from mesh.trace.gatewayapi import GATEWAY_NAME_LABEL, WAYPOINT_CLASS, gateways
from mesh.trace.model import Step, Workload
from mesh.trace.objects import Objects, Pod, d, items, meta, name_of, namespace_of, selects

DATAPLANE_LABEL = "istio.io/dataplane-mode"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
INGRESS_USE_WAYPOINT = "istio.io/ingress-use-waypoint"
WAYPOINT_FOR = "istio.io/waypoint-for"
SIDECAR_STATUS = "sidecar.istio.io/status"
HBONE_PORT = 15008


def enrolled(objects: Objects, namespace: str, labels: Mapping[str, str], sidecar: bool) -> bool:
    """Whether ztunnel captures a pod's traffic."""
    if sidecar or labels.get(DATAPLANE_LABEL) == "none":
        return False
    return (
        labels.get(DATAPLANE_LABEL) == "ambient"
        or objects.namespace_labels(namespace).get(DATAPLANE_LABEL) == "ambient"
    )


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in d(meta(obj).get("labels")).items()}


def _use_waypoint(labels: Mapping[str, str], namespace: str) -> tuple[str, str] | bool | None:
    """(namespace, name) the labels bind, False for `none`, None when they say nothing."""
    name = labels.get(USE_WAYPOINT)
    if name is None:
        return None
    if name == "none":
        return False
    return labels.get(USE_WAYPOINT_NAMESPACE, namespace), name


def waypoint_for(objects: Objects, service: Mapping[str, Any]) -> tuple[dict, str] | None:
    """The waypoint Gateway that takes the mesh traffic of a Service (or a ServiceEntry:
    Istio's ambient egress, "a ServiceEntry in a namespace enrolled to use a waypoint"), and
    what bound it."""
    key = ("waypoint_for", service.get("kind"), namespace_of(service), name_of(service))
    if key in objects.memo:
        return objects.memo[key]
    namespace = namespace_of(service)
    found = None
    own = _use_waypoint(_labels(service), namespace)
    if own is not None:
        bound = own and (
            own,
            f"label {USE_WAYPOINT} on {service.get('kind')} {namespace}/{name_of(service)}",
        )
    else:
        by_ns = _use_waypoint(objects.namespace_labels(namespace), namespace)
        bound = by_ns and (by_ns, f"label {USE_WAYPOINT} on namespace {namespace}")
    if bound:
        (wp_ns, wp_name), why = bound
        for gateway in gateways(objects):
            if (namespace_of(gateway), name_of(gateway)) != (wp_ns, wp_name):
                continue
            traffic = _labels(gateway).get(WAYPOINT_FOR, "service")
            if traffic in ("service", "all") and _admits_namespace(objects, gateway, namespace):
                found = (gateway, why)
    objects.memo[key] = found
    return found


def _admits_namespace(objects: Objects, gateway: dict[str, Any], namespace: str) -> bool:
    """waypoints.go `AllowsAttachmentFromNamespace`: the first listener's allowedRoutes."""
    listeners = items(d(gateway.get("spec")).get("listeners"))
    origin = d(d(d(listeners[0] if listeners else {}).get("allowedRoutes")).get("namespaces"))
    mode = str(origin.get("from", "Same"))
    if mode == "All":
        return True
    if mode == "Selector":
        return selects(d(origin.get("selector")), objects.namespace_labels(namespace))
    return namespace_of(gateway) == namespace


def ingress_uses_waypoint(objects: Objects, service: Mapping[str, Any]) -> bool:
    value = _labels(service).get(INGRESS_USE_WAYPOINT)
    if value is None:
        value = objects.namespace_labels(namespace_of(service)).get(INGRESS_USE_WAYPOINT)
    return str(value).lower() in ("true", "1", "t")


def waypoint_workload(objects: Objects, gateway: dict[str, Any]) -> Workload:
    """The waypoint's pods: those among the objects (a cluster dump), else what Istio deploys
    (service account = the Gateway's name for class istio-waypoint, `<name>-istio` else)."""
    namespace, name = namespace_of(gateway), name_of(gateway)
    labels = {GATEWAY_NAME_LABEL: name}
    pods = objects.pods_for(namespace, labels)
    if pods:
        account = pods[0].service_account
    else:
        klass = str(d(gateway.get("spec")).get("gatewayClassName", ""))
        account = name if klass == WAYPOINT_CLASS else f"{name}-istio"
    # `gateway`: an Envoy that routes (its own listeners, not a sidecar's).
    return Workload(
        namespace,
        account,
        tuple(sorted(labels.items())),
        sidecar="none",
        gateway=True,
        name=f"waypoint {name}",
    )


def waypoint_pod(gateway: dict[str, Any], workload: Workload) -> Pod:
    """The waypoint's pod as NetworkPolicies see it (labels Istio gives it)."""
    return Pod(
        workload=f"Deployment {workload.namespace}/{name_of(gateway)}",
        namespace=workload.namespace,
        labels={**workload.label_map, "gateway.istio.io/managed": "istio.io-mesh-controller"},
        annotations={},
        service_account=workload.service_account,
        replicas=None,
        spec={},
    )


def enter_waypoint(objects: Objects, peer: Workload, gateway: dict[str, Any]) -> tuple[bool, Step]:
    """HBONE from `peer` to the waypoint's 15008: the peer pod's egress NetworkPolicies, then
    the waypoint's ingress ones."""
    workload = waypoint_workload(objects, gateway)
    pod = waypoint_pod(gateway, workload)
    source = netpol.Peer(peer.namespace, peer.label_map)
    out = netpol.egress_admits(
        objects, source, HBONE_PORT, to=netpol.Peer(pod.namespace, pod.labels), what="the waypoint"
    )
    if not out.allowed:
        return False, Step("networkpolicy", f"waypoint HBONE :15008: egress: {out.reason}")
    verdict = netpol.admits(objects, pod, source, HBONE_PORT)
    return verdict.allowed, Step(
        "networkpolicy", f"waypoint HBONE :15008: egress: {out.reason}; {verdict.reason}"
    )


# --- policies ------------------------------------------------------------------------------

HTTP_OPERATION_FIELDS = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
HTTP_SOURCE_FIELDS = (
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "requestPrincipals",
    "notRequestPrincipals",
)
L4_WHEN = frozenset(
    {
        "source.ip",
        "source.namespace",
        "source.principal",
        "destination.ip",
        "destination.port",
    }
)


def _target_refs(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = d(policy.get("spec"))
    refs = items(spec.get("targetRefs")) or ([spec["targetRef"]] if spec.get("targetRef") else [])
    return [d(r) for r in refs]


def waypoint_policies(
    objects: Objects, gateway: dict[str, Any], service: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The AuthorizationPolicies the waypoint applies to traffic for `service`."""
    root = objects.settings.root_namespace
    found = []
    for policy in objects.kind("AuthorizationPolicy"):
        policy_ns = namespace_of(policy)
        for ref in _target_refs(policy):
            group, kind, name = ref.get("group", ""), ref.get("kind"), ref.get("name")
            if (group, kind) == ("", "Service") and (policy_ns, name) == (
                namespace_of(service),
                name_of(service),
            ):
                found.append(policy)
                break
            if (
                policy_ns == root
                and kind == "GatewayClass"
                and group == "gateway.networking.k8s.io"
                and name == WAYPOINT_CLASS
            ):
                found.append(policy)
                break
            if (
                kind == "Gateway"
                and group == "gateway.networking.k8s.io"
                and (policy_ns, name) == (namespace_of(gateway), name_of(gateway))
                and ref.get("namespace", policy_ns) == policy_ns
            ):
                found.append(policy)
                break
    return found


def ztunnel_policies(objects: Objects, pod: Pod) -> list[dict[str, Any]]:
    """What a destination ztunnel enforces for the pod: selector (or namespace-wide) policies,
    never one with targetRefs; CUSTOM is not supported by ztunnel."""
    root = objects.settings.root_namespace
    found = []
    for policy in objects.kind("AuthorizationPolicy"):
        spec = d(policy.get("spec"))
        if _target_refs(policy):
            continue
        selector = d(spec.get("selector")).get("matchLabels")
        if namespace_of(policy) not in (pod.namespace, root):
            continue
        if selector and not selects(selector, pod.labels):
            continue
        found.append(_l4_only(policy))
    return found


def _l4_only(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy as ztunnel receives it: in ALLOW, a rule with HTTP attributes becomes one
    that never matches; in DENY, the HTTP attributes are dropped (more restrictive)."""
    spec = d(policy.get("spec"))
    action = str(spec.get("action", "ALLOW"))
    rules = []
    for rule in items(spec.get("rules")):
        rule = d(rule)
        operations = [d(d(t).get("operation")) for t in items(rule.get("to"))]
        sources = [d(d(f).get("source")) for f in items(rule.get("from"))]
        whens = [d(w) for w in items(rule.get("when"))]
        http = (
            any(o.get(f) for o in operations for f in HTTP_OPERATION_FIELDS)
            or any(s.get(f) for s in sources for f in HTTP_SOURCE_FIELDS)
            or any(str(w.get("key")) not in L4_WHEN for w in whens)
        )
        if not http:
            rules.append(rule)
            continue
        if action == "ALLOW":
            continue  # "rules matching HTTP attributes are omitted"
        stripped = {
            "to": [
                {"operation": {k: v for k, v in o.items() if k not in HTTP_OPERATION_FIELDS}}
                for o in operations
            ],
            "from": [
                {"source": {k: v for k, v in s.items() if k not in HTTP_SOURCE_FIELDS}}
                for s in sources
            ],
            "when": [w for w in whens if str(w.get("key")) in L4_WHEN],
        }
        rules.append({k: v for k, v in stripped.items() if v})
    return {**policy, "spec": {**spec, "rules": rules}}


def decide_l4(objects: Objects, pod: Pod, request: authz.AuthzRequest) -> authz.Decision:
    return authz.decide_policies(ztunnel_policies(objects, pod), request, what="ztunnel")


def is_waypoint(objects: Objects, workload: Workload) -> bool:
    """Whether a workload is the pods of a waypoint (a Gateway of class istio-waypoint)."""
    name = workload.label_map.get(GATEWAY_NAME_LABEL)
    return any(
        name_of(g) == name
        and namespace_of(g) == workload.namespace
        and d(g.get("spec")).get("gatewayClassName") == WAYPOINT_CLASS
        for g in gateways(objects)
    )
