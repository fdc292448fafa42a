"""Gateway API routes followed to their destinations: the ingress Gateway (class `istio`), and
the HTTPRoutes of a Service (GAMMA) at a sidecar or a waypoint. The Gateway API semantics
themselves (listeners, attachment, rule order, weights) are in mesh.trace.gatewayapi."""

from __future__ import annotations

from typing import Any

from mesh.trace import gatewayapi
from mesh.trace.model import Outcome, Request, Step, Trace, Workload
from mesh.trace.routes import Destination
from mesh.trace.upstream import to_destinations


def _port(objects, destination: Destination) -> Destination:
    """A backendRef without `port` (not a Service, or rejected by CEL for one) takes the
    Service's only port, as istiod's conversion leaves the port unset then."""
    if destination.port is not None:
        return destination
    service = objects.services.get(destination.host)
    ports = (service or {}).get("spec", {}).get("ports") or []
    port = ports[0].get("port") if len(ports) == 1 else 0
    return Destination(destination.host, None, port, destination.weight)


def finish(
    objects,
    source: Workload,
    request: Request,
    routes: list[dict[str, Any]],
    steps: list[Step],
    where: str,
) -> Trace:
    """Rule selection among `routes` (one virtual host), then the redirect, the direct answer
    or every backend and mirror followed down."""
    entries = gatewayapi.ordered(routes)
    chosen, notes = gatewayapi.choose(entries, request)
    if chosen is None:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "no-route",
                f"no rule of the HTTPRoutes {where} matches ({'; '.join(notes)}): 404 NR",
                404,
            ),
        )
    steps = [*steps, *(Step("route", f"skipped {note}") for note in notes)]
    match = f" match {gatewayapi.show_match(chosen.match)}" if chosen.match else ""
    steps.append(
        Step(
            "route",
            f"{gatewayapi.describe(chosen.route)} rule {chosen.index}{match} ({chosen.name})",
        )
    )
    redirect = gatewayapi.redirect(chosen)
    if redirect is not None:
        status = int(redirect.get("statusCode", 302))
        scheme = redirect.get("scheme") or ("https" if request.tls else "http")
        host = redirect.get("hostname") or request.authority()
        location = f"{status} to {scheme}://{host}{request.path}"
        if request.protocol == "grpc":
            outcome = Outcome(
                "unfollowed-redirect",
                f"RequestRedirect: {location}; gRPC clients do not follow redirects, the call fails",
                status,
            )
        else:
            outcome = Outcome("redirected", f"RequestRedirect: {location}", status)
        return Trace(source, request, tuple(steps), outcome, route=chosen.name)
    targets, answer = gatewayapi.backends(chosen)
    if answer is not None:
        return Trace(source, request, tuple(steps), answer, route=chosen.name)
    branches = [
        b for t in targets for b in to_destinations(objects, source, request, _port(objects, t))
    ]
    branches += [
        b
        for t in gatewayapi.mirrors(chosen)
        for b in to_destinations(objects, source, request, _port(objects, t), kind="mirror")
    ]
    return Trace(
        source, request, tuple(steps), Outcome("served", "routed"), tuple(branches), chosen.name
    )


def ingress(objects, source: Workload, request: Request, gateway: dict[str, Any]) -> Trace:
    """A request at the pods of a Gateway API Gateway: its listener, the routes attached to
    it, the virtual host of the request's host, then the rules."""
    steps: list[Step] = []
    listener, refusal = gatewayapi.pick_listener(gateway, request)
    if listener is None:
        assert refusal is not None
        return Trace(source, request, (), refusal)
    tls = listener.get("tls") or {}
    mode = f", TLS {tls.get('mode', 'Terminate')}" if request.tls else ""
    steps.append(
        Step(
            "gateway",
            f"{gatewayapi.describe(gateway)} listener {listener.get('name')} "
            f"{listener.get('protocol')}:{listener.get('port')}{mode}",
        )
    )
    attached, notes = gatewayapi.attached_to_listener(objects, gateway, listener)
    steps += [Step("gateway", note) for note in notes]
    host = request.authority()
    pattern, routes = gatewayapi.virtual_host(attached, host)
    if not routes:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "no-route",
                f"no HTTPRoute attached to listener {listener.get('name')} serves host {host}: "
                "404 NR",
                404,
            ),
        )
    names = ", ".join(gatewayapi.describe(r) for r in routes)
    steps.append(Step("virtualhost", f"hostname {pattern}: {names}"))
    return finish(objects, source, request, routes, steps, f"for {pattern}")
