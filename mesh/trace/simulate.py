"""The trace itself: a source and a request in, the steps and where each share ends out.

Three ways a request leaves its source:

- through an ingress gateway (mesh.trace.gateway);
- through the source pod's sidecar (`outbound`): the outbound listener of the Service port,
  the Sidecar resource that scopes what the proxy knows, the VirtualService bound to `mesh`,
  or, for a host outside the registry, the outbound traffic policy: REGISTRY_ONLY sends it to
  the BlackHoleCluster (502 for HTTP, a reset for TLS/TCP), ALLOW_ANY to the PassthroughCluster
  (pilot/pkg/networking/core/listener.go `buildSidecarOutboundListeners`,
  cluster_builder.go `buildBlackHoleCluster` / `buildDefaultPassthroughCluster`);
- not through a proxy at all (`direct`): a pod without sidecar, or a process whose traffic the
  iptables rules do not capture; an in-cluster Service is then reached through kube-proxy, on
  any pod the Service selects, without routes, subsets or mutual TLS.

Sidecar egress scoping follows pilot/pkg/model/sidecar.go `convertToSidecarScope`,
`initSidecarScopeInternalIndexes` and `selectServices`: hosts `namespace/host` with `.` for the proxy's namespace, `*` for any,
`~` for none; no Sidecar resource means every exported service. A ServiceEntry or
DestinationRule with `exportTo: ["."]` is seen only in its own namespace.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from mesh.trace import hosts, netpol
from mesh.trace.model import Branch, Outcome, Request, Step, Trace, Workload
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
from mesh.trace.routes import (
    Destination,
    Listener,
    choose_route,
    describe,
    destinations,
    mirror,
    virtual_services_for,
)
from mesh.trace.upstream import deliver, to_destinations


def trace(objects: Objects, source: Workload, request: Request) -> Trace:
    """Where `request` from `source` goes. The answer depends on the objects, the source and
    the request alone (all three immutable), so it is kept with the objects: `mesh diff` asks
    the head's and the base's questions of each side, mostly the same ones."""
    key = ("trace", source, request)
    found = objects.memo.get(key)
    if found is None:
        found = objects.memo[key] = _trace(objects, source, request)
    return found


def _trace(objects: Objects, source: Workload, request: Request) -> Trace:
    if source.gateway:
        from mesh.trace import apiroutes, gatewayapi
        from mesh.trace.gateway import ingress

        gateway = gatewayapi.gateway_for_pod(objects, source.namespace, source.label_map)
        if gateway is not None:
            return apiroutes.ingress(objects, source, request, gateway)
        return ingress(objects, source, request)
    if source.sidecar == "ambient":
        return ztunnel_outbound(objects, source, request, [])
    if source.sidecar == "none":
        return direct(objects, source, request, [Step("capture", "no sidecar: not captured")])
    return outbound(objects, source, request, [])


def finish_http(
    objects: Objects,
    source: Workload,
    request: Request,
    listener: Listener,
    vs: dict[str, Any],
    steps: list[Step],
) -> Trace:
    """Route matching in `vs`, then every destination and the mirror followed down."""
    choice = choose_route(vs, listener, request)
    for_notes = choice.notes if choice else ()
    if choice is None:
        reasons = "; ".join(_route_notes(vs, listener, request))
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("no-route", f"no route of {describe(vs)} matches ({reasons}): 404 NR", 404),
        )
    steps = [*steps, *(Step("route", f"skipped {note}") for note in for_notes)]
    steps.append(Step("route", f"{describe(vs)} route {choice.name} (http[{choice.index}])"))
    route = choice.route
    if "redirect" in route:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("redirected", f"redirect {route['redirect']}", 301),
            route=choice.name,
        )
    if "directResponse" in route:
        status = d(route["directResponse"]).get("status")
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("aborted", "directResponse", status),
            route=choice.name,
        )
    abort = d(d(route.get("fault")).get("abort"))
    if abort:
        percent = d(abort.get("percentage")).get("value", 100)
        steps.append(
            Step(
                "fault",
                f"{percent}% aborted with {abort.get('httpStatus', abort.get('grpcStatus'))}",
            )
        )
    branches = [
        branch
        for target in destinations(objects, choice, listener)
        for branch in to_destinations(objects, source, request, target)
    ]
    branches += [
        branch
        for target in mirror(objects, choice, listener)
        for branch in to_destinations(objects, source, request, target, kind="mirror")
    ]
    ok = Outcome("served", "routed")
    return Trace(source, request, tuple(steps), ok, tuple(branches), route=choice.name)


def _route_notes(vs: dict[str, Any], listener: Listener, request: Request) -> list[str]:
    from mesh.trace.routes import _dynamic_miss, _static_drop

    notes = []
    for index, route in enumerate(items(spec_of(vs).get("http"))):
        for block in items(d(route).get("match")):
            why = _static_drop(d(block), listener, namespace_of(vs)) or _dynamic_miss(
                d(block), request
            )
            if why:
                notes.append(f"{d(route).get('name') or f'http[{index}]'}: {why}")
    return notes


def _sidecar_resource(objects: Objects, source: Workload) -> dict[str, Any] | None:
    """The Sidecar that configures this proxy: one with a matching workloadSelector in its
    namespace, else the namespace's selector-less one, else the root namespace's."""
    own = objects.kind("Sidecar", source.namespace)
    for sidecar in own:
        selector = d(d(spec_of(sidecar).get("workloadSelector")).get("labels"))
        if selector and selects(selector, source.label_map):
            return sidecar
    for sidecar in own:
        if not d(spec_of(sidecar).get("workloadSelector")):
            return sidecar
    for sidecar in objects.kind("Sidecar", objects.settings.root_namespace):
        if not d(spec_of(sidecar).get("workloadSelector")):
            return sidecar
    return None


def egress_admits(
    sidecar: dict[str, Any] | None, client_ns: str, namespace: str, host: str
) -> bool:
    """Whether a Sidecar's egress `hosts` import a host of `namespace`. No Sidecar, or one
    without egress listeners, imports everything (pilot/pkg/model/sidecar.go
    `convertToSidecarScope` gives it the default `*/*` listener)."""
    if sidecar is None or not items(spec_of(sidecar).get("egress")):
        return True
    for listener in items(spec_of(sidecar).get("egress")):
        for entry in items(d(listener).get("hosts")):
            ns, _, pattern = str(entry).rpartition("/")
            ns = client_ns if ns == "." else ns
            if ns == "~":
                continue
            if ns not in ("*", namespace):
                continue
            if hosts.matches(pattern, host):
                return True
    return False


def outbound_policy(objects: Objects, sidecar: dict[str, Any] | None) -> str:
    mode = d(spec_of(sidecar or {}).get("outboundTrafficPolicy")).get("mode")
    return str(mode or objects.settings.outbound_policy)


def _addressed(spec: dict[str, Any], host: str) -> bool:
    """An IP destination inside the entry's `addresses` (an IP or CIDR): pilot builds the
    outbound listeners and virtual hosts of a ServiceEntry on its addresses too
    (pilot/pkg/serviceregistry/serviceentry/conversion.go `convertServices`)."""
    if not hosts.is_ip(host):
        return False
    for address in items(spec.get("addresses")):
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(str(address), strict=False):
                return True
        except ValueError:
            continue
    return False


def _visible_entry(objects: Objects, source: Workload, sidecar, host: str, port: int):
    for entry in objects.kind("ServiceEntry"):
        spec = spec_of(entry)
        entry_ns = namespace_of(entry)
        if not exported_to(entry, source.namespace):
            continue
        for pattern in items(spec.get("hosts")):
            if (hosts.matches(str(pattern), host) or _addressed(spec, host)) and egress_admits(
                sidecar, source.namespace, entry_ns, str(pattern)
            ):
                for entry_port in items(spec.get("ports")):
                    if d(entry_port).get("number") == port:
                        return entry, d(entry_port)
    return None


def _resolve(objects: Objects, source: Workload, host: str) -> tuple[str, dict[str, Any] | None]:
    """The name a proxy or kube-DNS makes of `host` from the source's namespace, and the
    Service it names, if any."""
    fqdn = (
        host
        if hosts.is_ip(host)
        else hosts.expand_in_mesh(host, source.namespace, objects.services)
    )
    return fqdn, objects.services.get(fqdn)


def outbound(objects: Objects, source: Workload, request: Request, steps: list[Step]) -> Trace:
    """A request captured by the source's sidecar."""
    sidecar = _sidecar_resource(objects, source)
    policy = outbound_policy(objects, sidecar)
    scope = f"Sidecar {namespace_of(sidecar)}/{name_of(sidecar)}" if sidecar else "no Sidecar"
    steps = [*steps, Step("sidecar", f"outbound through istio-proxy ({scope}, {policy})")]
    host = request.authority()
    fqdn, service = _resolve(objects, source, host)
    if service is not None:
        service_ns = namespace_of(service)
        if not egress_admits(sidecar, source.namespace, service_ns, fqdn):
            steps.append(Step("sidecar", f"{fqdn} is not in the {scope} egress hosts"))
            return _unknown(objects, source, request, steps, policy, fqdn)
        ports = {d(p).get("port"): d(p) for p in items(spec_of(service).get("ports"))}
        if request.port not in ports:
            return _unknown(objects, source, request, steps, policy, fqdn)
        from mesh.trace import apiroutes, gatewayapi

        routes = gatewayapi.mesh_routes(objects, service, request.port)
        if routes:
            names = ", ".join(gatewayapi.describe(r) for r in routes)
            steps.append(Step("virtualhost", f"{fqdn} routed by {names} (GAMMA) on the mesh"))
            return apiroutes.finish(objects, source, request, routes, steps, f"of {fqdn}")
        listener = Listener(gateway=None, port=request.port, source=source)

        def visible(vs: dict[str, Any]) -> bool:
            return any(
                egress_admits(sidecar, source.namespace, namespace_of(vs), str(h))
                for h in items(spec_of(vs).get("hosts"))
            )

        found = virtual_services_for(objects, listener, fqdn, visible=visible)
        if found is not None:
            vs, pattern = found
            steps.append(Step("virtualhost", f"{describe(vs)} host {pattern} on the mesh"))
            return finish_http(objects, source, request, listener, vs, steps)
        steps.append(Step("route", f"no VirtualService for {fqdn}: the Service's default route"))
        branches = to_destinations(
            objects, source, request, Destination(fqdn, None, request.port, 100.0)
        )
        return Trace(source, request, tuple(steps), Outcome("served", "routed"), tuple(branches))
    found_entry = _visible_entry(objects, source, sidecar, fqdn, request.port)
    if found_entry is not None:
        entry, entry_port = found_entry
        cluster = f"outbound|{request.port}||{fqdn}"
        protocol = str(entry_port.get("protocol", "")).upper()
        what = "SNI" if request.tls and protocol in ("TLS", "HTTPS") else "host"
        steps.append(
            Step(
                "egress",
                f"ServiceEntry {namespace_of(entry)}/{name_of(entry)} "
                f"{protocol}:{request.port}, {what} {fqdn} → cluster {cluster}",
            )
        )
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("egress", f"leaves the mesh to {fqdn}:{request.port} through {cluster}"),
        )
    return _unknown(objects, source, request, steps, policy, fqdn)


def _unknown(
    objects: Objects, source: Workload, request: Request, steps: list[Step], policy: str, host: str
) -> Trace:
    if policy == "REGISTRY_ONLY":
        status = 502 if request.protocol != "tcp" and not request.tls else None
        answer = "502" if status else "connection reset"
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "blackholed",
                f"{host}:{request.port} is not in the registry this proxy sees; REGISTRY_ONLY "
                f"sends it to the BlackHoleCluster ({answer})",
                status,
            ),
        )
    steps.append(Step("egress", f"{host}:{request.port} unknown to the proxy: PassthroughCluster"))
    if host in objects.services:
        # ALLOW_ANY: the original destination (the Service's cluster IP), unrouted, plaintext.
        return direct(objects, source, request, steps, via="PassthroughCluster")
    return Trace(
        source,
        request,
        tuple(steps),
        Outcome("passthrough", f"ALLOW_ANY: straight to {host}:{request.port}, no mesh policy"),
    )


def direct(
    objects: Objects,
    source: Workload,
    request: Request,
    steps: list[Step],
    via: str = "kube-proxy",
    mtls: bool = False,
) -> Trace:
    """Not through the source's proxy: an in-cluster Service through kube-proxy (any pod it
    selects, plaintext), anything else straight to its address."""
    host = request.authority()
    fqdn, service = _resolve(objects, source, host)
    if service is None:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("direct", f"straight to {host}:{request.port}, bypassing every mesh rule"),
        )
    ports = {d(p).get("port"): d(p) for p in items(spec_of(service).get("ports"))}
    service_port = ports.get(request.port)
    if service_port is None:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("refused", f"Service {fqdn} has no port {request.port}"),
        )
    pods = [p for p in objects.endpoints(service) if p.ready]
    if not pods:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("refused", f"Service {fqdn} has no ready endpoints"),
        )
    steps = [
        *steps,
        Step(
            "kube-proxy",
            f"{via}: Service {fqdn}:{request.port} → any of "
            f"{len(pods)} workloads, no VirtualService, no subsets, "
            f"{'HBONE (mTLS)' if mtls else 'plaintext'}",
        ),
    ]
    branches = []
    total = sum(p.replicas or 1 for p in pods)
    for pod in pods:
        hbone = mtls and objects.sidecar_mode(pod) == "ambient"  # ztunnel to ztunnel
        left = _egress_to_pod(objects, source, pod, service_port, hbone)
        if left is None:
            outcome, container, number, more = deliver(
                objects, source, pod, service_port, request, hbone
            )
        else:
            outcome, container, number, more = left
        branches.append(
            Branch(
                kind="route",
                share=(pod.replicas or 1) * 100 / total,
                outcome=outcome,
                steps=tuple(more),
                cluster=None,
                host=fqdn,
                subset=pod.labels.get("version"),
                port=request.port,
                workload=pod.workload,
                container=container,
                container_port=number,
            )
        )
    return Trace(source, request, tuple(steps), Outcome("served", via), tuple(branches))


def _egress_to_pod(
    objects: Objects, source: Workload, pod, service_port: dict[str, Any], hbone: bool
) -> tuple[Outcome, str | None, int | None, list[Step]] | None:
    """An ambient source's connection to one pod, as its egress NetworkPolicy sees it: HBONE
    to 15008, else the target port (when a number). None when it may leave."""
    if source.sidecar != "ambient":
        return None
    target = service_port.get("targetPort", service_port.get("port"))
    port = 15008 if hbone else target
    if not isinstance(port, int):
        return None
    verdict = netpol.egress_admits(
        objects,
        netpol.Peer(source.namespace, source.label_map),
        port,
        to=netpol.Peer(pod.namespace, pod.labels),
        what=f"{pod.workload}",
    )
    if verdict.allowed:
        return None
    step = Step("networkpolicy", f"egress: {verdict.reason}")
    return Outcome("dropped", f"egress: {verdict.reason}"), None, None, [step]


def ztunnel_outbound(
    objects: Objects, source: Workload, request: Request, steps: list[Step]
) -> Trace:
    """A request from an ambient pod (mesh.trace.ambient): ztunnel takes the connection. A
    Service bound to a waypoint goes through the waypoint (L7 policy and routes there);
    any other Service is balanced over its pods at L4 (no routes, no subsets) over HBONE to
    ambient pods; a ServiceEntry host leaves through ztunnel; any other destination is
    forwarded unchanged (ztunnel enforces no outboundTrafficPolicy: only a sidecar does)."""
    from mesh.trace import ambient
    from mesh.trace.waypoint import through_waypoint

    steps = [*steps, Step("ztunnel", "outbound captured by ztunnel (Istio CNI in-pod redirection)")]
    host = request.authority()
    fqdn, service = _resolve(objects, source, host)
    if service is None:
        found = _visible_entry(objects, source, None, fqdn, request.port)
        if found is not None:
            entry = found[0]
            what = f"ServiceEntry {namespace_of(entry)}/{name_of(entry)}"
            via = "through ztunnel"
            bound = ambient.waypoint_for(objects, entry)
            if bound is not None:
                gateway, why = bound
                via = f"through the waypoint {namespace_of(gateway)}/{name_of(gateway)}"
                steps.append(Step("waypoint", f"{why}: HBONE to the waypoint ({what})"))
                ok, step = ambient.enter_waypoint(objects, source, gateway)
                steps.append(step)
                if not ok:
                    return Trace(
                        source,
                        request,
                        tuple(steps),
                        Outcome("dropped", f"the waypoint is unreachable: {step.detail}"),
                    )
            else:
                dropped = _leaves_pod(objects, source, request, steps, _entry_address(entry, fqdn))
                if dropped is not None:
                    return dropped
            return Trace(
                source,
                request,
                tuple(steps),
                Outcome("egress", f"leaves the mesh to {fqdn}:{request.port} ({what}, {via})"),
            )
        dropped = _leaves_pod(objects, source, request, steps, fqdn if hosts.is_ip(fqdn) else None)
        if dropped is not None:
            return dropped
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "passthrough",
                f"ztunnel forwards {fqdn}:{request.port} unchanged: no outbound traffic policy "
                f"applies at ztunnel ({steps[-1].detail})",
            ),
        )
    ports = {d(p).get("port") for p in items(spec_of(service).get("ports"))}
    bound = ambient.waypoint_for(objects, service)
    if bound is not None and request.port in ports:
        gateway, why = bound
        return through_waypoint(
            objects, source, request, service, request.port, gateway, why, steps
        )
    return direct(objects, source, request, steps, via="ztunnel (L4, no waypoint)", mtls=True)


def _entry_address(entry: dict[str, Any], host: str) -> str | None:
    """The address ztunnel dials for a ServiceEntry host it forwards itself: the host when it
    is an address, else the entry's first endpoint address when that is one (the IMDS entry),
    else unknown offline (DNS resolution)."""
    if hosts.is_ip(host):
        return host
    for endpoint in items(spec_of(entry).get("endpoints")):
        address = str(d(endpoint).get("address", ""))
        if hosts.is_ip(address):
            return address
    return None


def _leaves_pod(
    objects: Objects,
    source: Workload,
    request: Request,
    steps: list[Step],
    address: str | None,
) -> Trace | None:
    """ztunnel's connection out of the cluster as the source pod's egress NetworkPolicy sees
    it (ambient never bypasses NetworkPolicy: Istio's "Ambient and Kubernetes NetworkPolicy"):
    the destination's address and original port. None when it may leave."""
    verdict = netpol.egress_admits(
        objects,
        netpol.Peer(source.namespace, source.label_map),
        int(request.port),
        address=address,
        what=f"{address or request.authority()} (outside the cluster)",
    )
    steps.append(Step("networkpolicy", f"egress: {verdict.reason}"))
    if verdict.allowed:
        return None
    return Trace(source, request, tuple(steps), Outcome("dropped", f"egress: {verdict.reason}"))


# --- processes inside a pod ---------------------------------------------------------------

PROXY_UID = 1337
PROXY_CONTAINER = "istio-proxy"


def pod_source(objects: Objects, pod: Pod) -> Workload:
    return Workload(
        namespace=pod.namespace,
        service_account=pod.service_account,
        labels=tuple(sorted(pod.labels.items())),
        sidecar=objects.sidecar_mode(pod),
        name=pod.workload.split("/", 1)[1],
    )


EXCLUDE_IPS = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
INCLUDE_IPS = "traffic.sidecar.istio.io/includeOutboundIPRanges"
EXCLUDE_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"


def _excluded(pod: Pod, request: Request | None) -> str | None:
    """Why the pod's iptables rules let this connection past the proxy, if they do: the
    injector's outbound exclusion annotations (run.go: RETURN for excluded ports and CIDRs,
    redirect only for the included ranges). A host name's address is not known offline, so
    the IP ranges apply only to a request addressed by IP."""
    if request is None:
        return None
    ports = [p.strip() for p in pod.annotations.get(EXCLUDE_PORTS, "").split(",")]
    if str(request.port) in ports:
        return f"port {request.port} is in {EXCLUDE_PORTS}"
    host = request.authority()
    if not hosts.is_ip(host):
        return None
    address = ipaddress.ip_address(host)

    def within(annotation: str) -> bool:
        ranges = [r.strip() for r in pod.annotations.get(annotation, "").split(",") if r.strip()]
        return any(r == "*" or address in ipaddress.ip_network(r, strict=False) for r in ranges)

    if within(EXCLUDE_IPS):
        return f"{host} is in {EXCLUDE_IPS}"
    if INCLUDE_IPS in pod.annotations and not within(INCLUDE_IPS):
        return f"{host} is outside {INCLUDE_IPS}"
    return None


def capture(
    objects: Objects, pod: Pod, container: str, request: Request | None = None
) -> tuple[str, str]:
    """How a container's outbound connections leave the pod: "proxy", "none" (not captured)
    or "no-proxy" (captured into a proxy that is not running yet), and why.

    The iptables rules redirect every outbound TCP connection to 15001 except those of
    UID/GID 1337, the proxy's own (tools/istio-iptables/pkg/capture/run.go, `--uid-owner 1337
    -j RETURN`). Where they come from decides what an init container meets
    (pkg/kube/inject/webhook.go `reorderPod`):

    - classic sidecar, no CNI: the injector moves `istio-init` to the end of the init
      containers ("so we do not blackhole init containers"), so earlier init containers run
      before any rule exists: not captured, no mTLS, no REGISTRY_ONLY;
    - classic sidecar with Istio CNI: the rules exist before any container runs
      (cni/pkg/plugin/plugin.go `CmdAdd`), the proxy starts only with the app containers: an
      init container's connections land on 15001 where nothing listens (istio/istio#11130);
    - native sidecar: istio-proxy is an init container with restartPolicy Always, ordered
      before the user's init containers: they are proxied.
    """
    mode = objects.sidecar_mode(pod)
    if mode == "ambient":
        # cni/pkg/iptables/iptables.go: in-pod rules set up before any container runs, and
        # only ztunnel's packet mark escapes them (no UID exception).
        return (
            "ztunnel",
            f"container {container} is captured by ztunnel (ambient, in-pod redirection)",
        )
    if container == PROXY_CONTAINER:
        return "none", "istio-proxy runs as UID 1337, whose traffic is never captured"
    if mode == "none":
        return "none", "the pod has no sidecar"
    spec = next(
        (c for c in (*pod.init_containers(), *pod.containers()) if c.get("name") == container), None
    )
    if spec is None:
        raise KeyError(container)
    if pod.run_as_user(spec) == PROXY_UID or pod.run_as_group(spec) == PROXY_UID:
        return "none", f"container {container} runs as UID or GID {PROXY_UID}: not captured"
    excluded = _excluded(pod, request)
    if excluded:
        return "none", f"not captured: {excluded}"
    is_init = any(c.get("name") == container for c in pod.init_containers())
    if is_init and mode == "classic" and not objects.settings.cni:
        return "none", (
            f"init container {container} runs before istio-init sets up capture (classic "
            "sidecar without Istio CNI): not captured"
        )
    if is_init and mode == "classic":
        return "no-proxy", (
            f"init container {container} runs before the classic sidecar starts, under the "
            "Istio CNI's rules: its connections go to 15001, where nothing listens yet"
        )
    if is_init:
        return "proxy", f"init container {container} starts after the native sidecar"
    return "proxy", f"container {container} is captured by the {mode} sidecar"


def trace_process(objects: Objects, pod: Pod, container: str, request: Request) -> Trace:
    """Where a connection made by one container of a pod goes."""
    source = pod_source(objects, pod)
    how, why = capture(objects, pod, container, request)
    steps = [Step("capture", why)]
    if how == "ztunnel":
        return ztunnel_outbound(objects, source, request, steps)
    if how == "none":
        return direct(objects, source, request, steps)
    if how == "no-proxy":
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome("refused", "connection refused: the sidecar is not running yet"),
        )
    return outbound(objects, source, request, steps)


def proxy_cluster(objects: Objects, pod: Pod, host: str, port: int) -> Trace:
    """A connection the proxy itself opens through one of its own clusters (a tracing or
    access-log provider): the cluster exists only if the proxy's Sidecar scope imports the
    host (istio/istio#53701: providers outside the egress hosts get no cluster)."""
    source = pod_source(objects, pod)
    sidecar = _sidecar_resource(objects, source)
    request = Request(port=port, host=host, protocol="grpc")
    fqdn = hosts.expand_in_mesh(host, pod.namespace)
    namespace = fqdn.split(".")[1] if fqdn.endswith(".svc.cluster.local") else pod.namespace
    scope = f"Sidecar {namespace_of(sidecar)}/{name_of(sidecar)}" if sidecar else "no Sidecar"
    steps = [Step("provider", f"istio-proxy's provider cluster outbound|{port}||{fqdn} ({scope})")]
    if not egress_admits(sidecar, pod.namespace, namespace, fqdn):
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "no-cluster",
                f"{fqdn} is not in the {scope} egress hosts: the proxy has no cluster "
                "for the provider and drops what it would send",
            ),
        )
    service = objects.services.get(fqdn)
    known = "" if service is not None else " (its Service is not among the traced objects)"
    return Trace(
        source, request, tuple(steps), Outcome("egress", f"the proxy reaches {fqdn}:{port}{known}")
    )
