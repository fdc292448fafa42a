"""The waypoint hop of the ambient data plane (mesh.trace.ambient): HBONE from the client to
the waypoint, the L7 policies there, the Service's routes at the waypoint, then HBONE from
the waypoint to the chosen pods, whose ztunnel sees the waypoint's identity.

A waypoint routes a Service's traffic with the HTTPRoutes whose parentRef is the Service
(GAMMA) and, where there are none, the VirtualServices bound to the mesh for its host (Alpha
on waypoints in Istio 1.30); without either, the Service's default route to any of its pods
(pilot/pkg/networking/core/listener_waypoint.go `buildWaypointInboundVIP`,
`findServiceWaypoint` and the per-Service HTTP route configuration).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mesh.trace import ambient, authz
from mesh.trace.model import Branch, Outcome, Request, Step, Trace, Workload
from mesh.trace.objects import Objects, d, items, name_of, namespace_of, spec_of, svc_fqdn
from mesh.trace.routes import Destination, Listener, describe, virtual_services_for


def through_waypoint(
    objects: Objects,
    client: Workload,
    request: Request,
    service: dict[str, Any],
    port: int,
    gateway: dict[str, Any],
    why: str,
    steps: list[Step],
) -> Trace:
    """`client` (a ztunnel-captured pod or an ingress gateway) sending a request for a
    Service bound to `gateway` (a waypoint): the trace from the client's point of view."""
    from mesh.trace import apiroutes, gatewayapi
    from mesh.trace.simulate import finish_http
    from mesh.trace.upstream import to_destinations

    waypoint = ambient.waypoint_workload(objects, gateway)
    where = f"{namespace_of(gateway)}/{name_of(gateway)}"
    steps = [
        *steps,
        Step("waypoint", f"{why}: HBONE to waypoint {where} (sa {waypoint.service_account})"),
    ]
    ok, step = ambient.enter_waypoint(objects, client, gateway)
    steps.append(step)
    if not ok:
        return Trace(
            client,
            request,
            tuple(steps),
            Outcome("dropped", f"the waypoint {where} is unreachable: {step.detail}"),
        )
    principal = client.principal(objects.settings.trust_domain)
    decision = authz.decide_policies(
        ambient.waypoint_policies(objects, gateway, service),
        authz.AuthzRequest(
            principal=principal,
            namespace=client.namespace,
            port=port,
            method="POST" if request.protocol == "grpc" else request.method,
            path=request.path,
            host=request.authority(),
            headers=request.header_map,
        ),
        what="waypoint",
    )
    steps.append(
        Step("authz", f"{decision.policy or '-'}: waypoint, peer {principal}: {decision.reason}")
    )
    if not decision.allowed:
        return Trace(client, request, tuple(steps), Outcome("denied", decision.reason, 403))
    fqdn = svc_fqdn(name_of(service), namespace_of(service))
    routes = gatewayapi.mesh_routes(objects, service, port)
    if routes:
        names = ", ".join(gatewayapi.describe(r) for r in routes)
        steps.append(Step("virtualhost", f"waypoint: {fqdn} routed by {names} (GAMMA)"))
        found = apiroutes.finish(objects, waypoint, request, routes, steps, f"of {fqdn}")
        return replace(found, source=client)
    listener = Listener(gateway=None, port=port, source=waypoint)
    vs = virtual_services_for(objects, listener, fqdn)
    if vs is not None:
        steps.append(Step("virtualhost", f"waypoint: {describe(vs[0])} host {vs[1]} on the mesh"))
        return replace(
            finish_http(objects, waypoint, request, listener, vs[0], steps), source=client
        )
    steps.append(Step("route", f"waypoint: no route for {fqdn}: the Service's default route"))
    branches = to_destinations(objects, waypoint, request, Destination(fqdn, None, port, 100.0))
    return Trace(client, request, tuple(steps), Outcome("served", "routed"), tuple(branches))


def via_waypoint_branches(
    objects: Objects,
    client: Workload,
    request: Request,
    destination: Destination,
    service: dict[str, Any],
    gateway: dict[str, Any],
    why: str,
    kind: str,
) -> list[Branch]:
    """An ingress gateway's destination whose Service says `istio.io/ingress-use-waypoint`:
    the gateway's share of the requests, split again as the waypoint routes them."""
    ports = {d(p).get("port") for p in items(spec_of(service).get("ports"))}
    base = {
        "kind": kind,
        "cluster": f"outbound|{destination.port}||{destination.host}",
        "host": destination.host,
        "subset": destination.subset,
        "port": destination.port,
    }
    if destination.port not in ports:
        return [
            Branch(
                share=destination.weight,
                outcome=Outcome(
                    "no-cluster",
                    f"Service {destination.host} has no port {destination.port}: 503 NC",
                    503,
                ),
                **base,
            )
        ]
    hop = through_waypoint(
        objects,
        client,
        request,
        service,
        int(destination.port),
        gateway,
        f"{why} and {ambient.INGRESS_USE_WAYPOINT}",
        [],
    )
    if not hop.branches or not hop.outcome.ok:
        return [Branch(share=destination.weight, outcome=hop.outcome, steps=hop.steps, **base)]
    return [
        replace(
            branch,
            kind=kind if branch.kind == "route" else branch.kind,
            share=destination.weight * branch.share / 100
            if branch.kind == "route"
            else branch.share,
            steps=(*hop.steps, *branch.steps),
        )
        for branch in hop.branches
    ]
