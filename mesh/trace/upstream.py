"""From a route's destination to the process that answers: the cluster, its endpoints, and
what the destination pod does with the connection.

- The cluster `outbound|<port>|<subset>|<host>` exists when the host is a Service (or
  ServiceEntry) with that port and, for a subset, when a DestinationRule the proxy sees defines
  it (pilot/pkg/networking/core/cluster_builder.go `buildSubsetCluster`; DestinationRule lookup
  in the proxy's namespace, then the host's, then the root namespace:
  pilot/pkg/model/push_context.go `destinationRule`). A route to a missing cluster answers 503
  (NC).
- Endpoints are the ready pods the Service selects, narrowed to the subset's labels; none: 503
  (UH, no healthy upstream). The Service port's targetPort names the container port.
- mTLS: a client proxy talks Istio mutual TLS to a pod with a sidecar unless the
  DestinationRule says `tls.mode: DISABLE` (auto mTLS, meshConfig.enableAutoMtls, on by
  default; ISTIO_MUTUAL forces it). A client without a proxy talks plaintext.
- At the destination pod, in order: NetworkPolicy (the kernel, before any proxy), the inbound
  sidecar (ports 15020, 15021 and 15090 are never captured: the injector's
  `excludeInboundPorts`), PeerAuthentication (STRICT refuses plaintext: the connection is
  reset: pilot/pkg/networking/core/filterchain_options.go `getFilterChainMatchOptions` has
  only TLS chains under STRICT),
  AuthorizationPolicy (mesh.trace.authz), then the container port and its protocol.
"""

from __future__ import annotations

from typing import Any

from mesh.trace import ambient, authz, hosts, netpol
from mesh.trace.model import Branch, Outcome, Request, Step, Workload
from mesh.trace.objects import (
    Objects,
    Pod,
    d,
    exported_to,
    items,
    name_of,
    namespace_of,
    selects,
    spec_of,
)
from mesh.trace.routes import Destination, cluster_name

NOT_CAPTURED_INBOUND = frozenset({15020, 15021, 15090})
HTTP2_PROTOCOLS = frozenset({"grpc", "http2", "grpc-web", "h2c"})


def port_protocol(port: dict[str, Any]) -> str:
    """Istio's protocol of a Service port: appProtocol, else the name's prefix before `-`
    (pkg/config/kube/conversion.go `ConvertProtocol`); '' when neither says (sniffed)."""
    value = str(port.get("appProtocol") or "").lower()
    if not value:
        value = str(port.get("name") or "").split("-", 1)[0].lower()
    known = {"http", "http2", "grpc", "grpc-web", "https", "tls", "tcp", "h2c", "udp"}
    return value if value in known else ""


def speaks(protocol: str, request: Request) -> bool:
    """Whether a server port of this protocol answers the request's protocol: a gRPC call
    needs a gRPC (HTTP/2) server; a REST call is not a gRPC call."""
    if not protocol or protocol == "tcp":
        return True
    if request.protocol == "grpc":
        return protocol in HTTP2_PROTOCOLS
    if request.protocol == "http":
        return protocol in ("http", "http2", "https", "h2c")
    return True


def destination_rule(objects: Objects, host: str, client_namespace: str) -> dict[str, Any] | None:
    """The DestinationRule a client proxy applies to `host`: looked up in the client's
    namespace, the host's, then the root namespace; in each the most specific host wins, a
    wildcard (`*.ns.svc.cluster.local`, `*.local`) included (push_context.go `destinationRule`,
    `MostSpecificHostMatch`). Not modelled: merging several rules of one host, and the
    root namespace's private rules taking precedence for a proxy in the root namespace."""
    key = ("destination_rule", host, client_namespace)
    if key not in objects.memo:
        objects.memo[key] = _destination_rule(objects, host, client_namespace)
    return objects.memo[key]


def _destination_rule(objects: Objects, host: str, client_namespace: str) -> dict[str, Any] | None:
    service_ns = host.split(".")[1] if host.endswith(".svc.cluster.local") else None
    order = [client_namespace, service_ns, objects.settings.root_namespace]
    for namespace in [n for n in order if n]:
        found: list[tuple[str, dict[str, Any]]] = []
        for rule in objects.kind("DestinationRule", namespace):
            spec = spec_of(rule)
            rule_host = str(spec.get("host", ""))
            if "." not in rule_host:
                rule_host = f"{rule_host}.{namespace_of(rule)}.svc.cluster.local"
            if exported_to(rule, client_namespace) and hosts.matches(rule_host, host):
                found.append((rule_host, rule))
        if found:
            return sorted(found, key=lambda pair: hosts.specificity(pair[0]))[0][1]
    return None


def _subset(rule: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for subset in items(spec_of(rule or {}).get("subsets")):
        if d(subset).get("name") == name:
            return d(subset)
    return None


def _tls_mode(rule: dict[str, Any] | None, subset: dict[str, Any] | None, port: int) -> str | None:
    """The client TLS mode: the subset's policy over the rule's, a port-level setting over
    the policy's own (pilot/pkg/networking/core/cluster_builder.go `applyTrafficPolicy`)."""
    for policy in (d(d(subset).get("trafficPolicy")), d(spec_of(rule or {}).get("trafficPolicy"))):
        for level in items(policy.get("portLevelSettings")):
            if d(d(level).get("port")).get("number") == port and d(d(level).get("tls")).get("mode"):
                return str(d(d(level).get("tls"))["mode"])
        mode = d(policy.get("tls")).get("mode")
        if mode:
            return str(mode)
    return None


def peer_authentication_mode(objects: Objects, pod: Pod, port: int) -> tuple[str, str]:
    """The mTLS mode a pod's inbound port enforces, and the object that set it.

    Workload-selector policy > namespace-wide > the root namespace's > PERMISSIVE (Istio's
    default); `portLevelMtls` applies to the container port (pilot/pkg/security/authn/
    policy_applier.go `ComposePeerAuthentication`)."""
    workload, namespace, root = None, None, None
    for policy in objects.kind("PeerAuthentication"):
        spec = spec_of(policy)
        selector = d(spec.get("selector")).get("matchLabels")
        if namespace_of(policy) == pod.namespace:
            if selector and selects(selector, pod.labels):
                workload = policy
            elif not selector:
                namespace = policy
        elif namespace_of(policy) == objects.settings.root_namespace and not selector:
            root = policy
    mode, source = "PERMISSIVE", "Istio's default"
    for policy in (root, namespace, workload):
        if policy is None:
            continue
        spec = spec_of(policy)
        value = d(spec.get("mtls")).get("mode")
        if policy is workload:
            levels = d(spec.get("portLevelMtls"))
            value = d(levels.get(str(port), levels.get(port))).get("mode") or value
        if value and value != "UNSET":
            mode = str(value)
            source = f"PeerAuthentication {namespace_of(policy)}/{name_of(policy)}"
    return mode, source


def to_destinations(
    objects: Objects,
    source: Workload,
    request: Request,
    destination: Destination,
    kind: str = "route",
) -> list[Branch]:
    """The branches of one destination of a route. Usually one; an ingress gateway that sends
    a Service's traffic to its waypoint (mesh.trace.ambient) gets the waypoint's split."""
    service = objects.services.get(destination.host)
    if service is not None and source.gateway and not ambient.is_waypoint(objects, source):
        bound = ambient.waypoint_for(objects, service)
        if bound is not None and ambient.ingress_uses_waypoint(objects, service):
            from mesh.trace.waypoint import via_waypoint_branches

            return via_waypoint_branches(
                objects, source, request, destination, service, *bound, kind
            )
    return [to_destination(objects, source, request, destination, kind)]


def to_destination(
    objects: Objects,
    source: Workload,
    request: Request,
    destination: Destination,
    kind: str = "route",
) -> Branch:
    """One branch: a destination of a route, followed down to the answering process (no
    waypoint: see `to_destinations`)."""
    steps: list[Step] = []
    cluster = cluster_name(destination)
    service = objects.services.get(destination.host)
    base = {
        "kind": kind,
        "share": destination.weight,
        "cluster": cluster,
        "host": destination.host,
        "subset": destination.subset,
        "port": destination.port,
    }
    if service is None:
        entry = _service_entry(objects, destination.host, destination.port, source.namespace)
        if entry is not None:
            steps.append(Step("egress", f"cluster {cluster} from ServiceEntry {entry}"))
            return Branch(
                outcome=Outcome("egress", f"leaves the mesh to {destination.host}"),
                steps=tuple(steps),
                **base,
            )
        return Branch(
            outcome=Outcome(
                "no-cluster",
                f"{destination.host} is no Service or ServiceEntry the proxy knows: 503 NC",
                503,
            ),
            steps=tuple(steps),
            **base,
        )
    service_port = next(
        (
            d(p)
            for p in items(spec_of(service).get("ports"))
            if d(p).get("port") == destination.port
        ),
        None,
    )
    if service_port is None:
        ports = [d(p).get("port") for p in items(spec_of(service).get("ports"))]
        return Branch(
            outcome=Outcome(
                "no-cluster",
                f"Service {destination.host} has no port {destination.port} (ports {ports}): "
                "503 NC",
                503,
            ),
            **base,
        )
    rule = destination_rule(objects, destination.host, source.namespace)
    subset = None
    if destination.subset:
        subset = _subset(rule, destination.subset)
        if subset is None:
            where = (
                f"DestinationRule {namespace_of(rule)}/{name_of(rule)}"
                if rule
                else "no DestinationRule"
            )
            return Branch(
                outcome=Outcome(
                    "no-cluster",
                    f"subset {destination.subset!r} is not defined ({where}): cluster "
                    f"{cluster} does not exist, 503 NC",
                    503,
                ),
                **base,
            )
        steps.append(
            Step(
                "destination",
                f"subset {destination.subset} of DestinationRule "
                f"{namespace_of(rule)}/{name_of(rule)}: pods with {d(subset.get('labels'))}",
            )
        )
    pods = [
        p
        for p in objects.endpoints(service)
        if subset is None or selects(d(subset.get("labels")), p.labels)
    ]
    ready = [p for p in pods if p.ready]
    if not ready:
        why = "no pod matches" if not pods else "every matching workload has 0 replicas"
        return Branch(
            outcome=Outcome("no-endpoints", f"cluster {cluster}: {why}: 503 UH", 503),
            steps=tuple(steps),
            **base,
        )
    pod = ready[0]
    others = f" (+{len(ready) - 1} more workloads)" if len(ready) > 1 else ""
    steps.append(
        Step(
            "endpoints",
            f"{pod.workload}{others}, Service port {destination.port} → "
            f"targetPort {service_port.get('targetPort', destination.port)}",
        )
    )
    target = pod.container_port(service_port.get("targetPort", destination.port))
    mode = _tls_mode(rule, subset, destination.port)
    mtls = _mtls(objects, source, pod, mode, target[1] if target else None)
    outcome, container, container_port, more = deliver(
        objects, source, pod, service_port, request, mtls
    )
    return Branch(
        outcome=outcome,
        steps=tuple(steps + more),
        workload=pod.workload,
        container=container,
        container_port=container_port,
        **base,
    )


def _mtls(objects: Objects, source: Workload, pod: Pod, mode: str | None, port: int | None) -> bool:
    """Whether the client proxy speaks Istio mTLS to the endpoint. Without a TLS mode in the
    DestinationRule, auto mTLS does so to a pod with a sidecar unless the pod's
    PeerAuthentication disables mTLS on the port (pilot/pkg/xds/endpoints/mtls_checker.go
    `checkMtlsEnabled`)."""
    proxied = source.gateway or source.sidecar != "none"
    if not proxied or mode in ("DISABLE", "SIMPLE", "MUTUAL"):
        return False
    if mode == "ISTIO_MUTUAL":
        return True
    if objects.sidecar_mode(pod) == "none":
        return False
    return port is None or peer_authentication_mode(objects, pod, port)[0] != "DISABLE"


def _service_entry(objects: Objects, host: str, port: int, client_ns: str) -> str | None:
    for entry in objects.kind("ServiceEntry"):
        spec = spec_of(entry)
        if not exported_to(entry, client_ns):
            continue
        if not any(hosts.matches(str(h), host) for h in items(spec.get("hosts"))):
            continue
        if any(d(p).get("number") == port for p in items(spec.get("ports"))):
            return f"{namespace_of(entry)}/{name_of(entry)}"
    return None


def deliver(
    objects: Objects,
    source: Workload,
    pod: Pod,
    service_port: dict[str, Any],
    request: Request,
    mtls: bool,
) -> tuple[Outcome, str | None, int | None, list[Step]]:
    """What the destination pod does with a connection to a Service port's targetPort."""
    steps: list[Step] = []
    target = service_port.get("targetPort", service_port.get("port"))
    found = pod.container_port(target)
    if found is None:
        return (
            Outcome("refused", f"no container of {pod.workload} has port {target}"),
            None,
            None,
            steps,
        )
    container, number = found
    return deliver_to_port(
        objects, source, pod, container, number, port_protocol(service_port), request, mtls, steps
    )


def deliver_to_port(
    objects: Objects,
    source: Workload,
    pod: Pod,
    container: dict[str, Any] | None,
    number: int,
    protocol: str,
    request: Request,
    mtls: bool,
    steps: list[Step] | None = None,
) -> tuple[Outcome, str | None, int | None, list[Step]]:
    steps = list(steps or [])
    name = str(container.get("name")) if container else None
    if objects.sidecar_mode(pod) == "ambient":
        return ztunnel_inbound(objects, source, pod, name, number, protocol, request, mtls, steps)
    verdict = netpol.admits(objects, pod, netpol.Peer(source.namespace, source.label_map), number)
    steps.append(Step("networkpolicy", verdict.reason))
    if not verdict.allowed:
        return Outcome("dropped", verdict.reason), name, number, steps
    sidecar = objects.sidecar_mode(pod)
    if sidecar != "none" and number not in NOT_CAPTURED_INBOUND:
        mode, why = peer_authentication_mode(objects, pod, number)
        steps.append(Step("mtls", f"{mode} ({why}); client {'mTLS' if mtls else 'plaintext'}"))
        if mode == "STRICT" and not mtls:
            return (
                Outcome(
                    "reset", f"{why} is STRICT and the client speaks plaintext: connection reset"
                ),
                name,
                number,
                steps,
            )
        principal = source.principal(objects.settings.trust_domain) if mtls else None
        decision = authz.decide(
            objects,
            pod,
            authz.AuthzRequest(
                principal=principal,
                namespace=source.namespace if mtls else None,
                port=number,
                method="POST" if request.protocol == "grpc" else request.method,
                path=request.path,
                host=request.authority(),
                headers=request.header_map,
            ),
        )
        steps.append(Step("authz", f"{decision.policy or '-'}: {decision.reason}"))
        if not decision.allowed:
            return Outcome("denied", decision.reason, 403), name, number, steps
    elif sidecar != "none":
        steps.append(Step("inbound", f"port {number} is not captured by the sidecar"))
    if not speaks(protocol, request):
        return (
            Outcome(
                "wrong-protocol",
                f"a {request.protocol} request reaches {number}, a {protocol} port of "
                f"container {name}: the server does not speak it",
            ),
            name,
            number,
            steps,
        )
    return (
        Outcome(
            "served",
            f"{f'container {name}' if name else 'the pod (no container declares it)'} on port "
            f"{number} ({protocol or 'tcp'}) "
            f"serves {request.method if request.protocol != 'grpc' else 'gRPC'} "
            f"{request.path}",
        ),
        name,
        number,
        steps,
    )


def _served(name: str | None, number: int, protocol: str, request: Request) -> Outcome:
    return Outcome(
        "served",
        f"{f'container {name}' if name else 'the pod (no container declares it)'} on port "
        f"{number} ({protocol or 'tcp'}) "
        f"serves {request.method if request.protocol != 'grpc' else 'gRPC'} "
        f"{request.path}",
    )


def ztunnel_inbound(
    objects: Objects,
    source: Workload,
    pod: Pod,
    name: str | None,
    number: int,
    protocol: str,
    request: Request,
    hbone: bool,
    steps: list[Step],
) -> tuple[Outcome, str | None, int | None, list[Step]]:
    """An ambient pod's inbound (mesh.trace.ambient): the kernel's NetworkPolicy on what
    arrives (HBONE: port 15008; plaintext: the container port), then the pod's ztunnel:
    PeerAuthentication, the L4 AuthorizationPolicies with the direct peer's identity, then
    the container port."""
    seen = ambient.HBONE_PORT if hbone else number
    verdict = netpol.admits(objects, pod, netpol.Peer(source.namespace, source.label_map), seen)
    what = f"HBONE to :{seen}" if hbone else f"plaintext to :{seen}"
    steps.append(Step("networkpolicy", f"{what}: {verdict.reason}"))
    if not verdict.allowed:
        return Outcome("dropped", f"{what}: {verdict.reason}"), name, number, steps
    mode, why = peer_authentication_mode(objects, pod, number)
    peer = "HBONE (mTLS)" if hbone else "plaintext"
    steps.append(Step("mtls", f"ztunnel: {mode} ({why}); peer {peer}"))
    if mode == "STRICT" and not hbone:
        return (
            Outcome("reset", f"{why} is STRICT: ztunnel refuses the plaintext connection"),
            name,
            number,
            steps,
        )
    principal = source.principal(objects.settings.trust_domain) if hbone else None
    decision = ambient.decide_l4(
        objects,
        pod,
        authz.AuthzRequest(
            principal=principal,
            namespace=source.namespace if hbone else None,
            port=number,
            method="POST" if request.protocol == "grpc" else request.method,
            path=request.path,
            host=request.authority(),
            headers=request.header_map,
        ),
    )
    who = principal or "no identity (plaintext)"
    steps.append(Step("authz", f"{decision.policy or '-'}: ztunnel, peer {who}: {decision.reason}"))
    if not decision.allowed:
        return Outcome("denied", decision.reason), name, number, steps
    if not speaks(protocol, request):
        return (
            Outcome(
                "wrong-protocol",
                f"a {request.protocol} request reaches {number}, a {protocol} port of "
                f"container {name}: the server does not speak it",
            ),
            name,
            number,
            steps,
        )
    return _served(name, number, protocol, request), name, number, steps
