"""Gateway API routes followed to their destinations: the ingress Gateway (class `istio`), and
the HTTPRoutes of a Service (GAMMA) at a sidecar or a waypoint. The Gateway API semantics
themselves (listeners, attachment, rule order, weights) are in mesh.trace.gatewayapi."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mesh.trace import gatewayapi, pools
from mesh.trace.model import Branch, Outcome, Request, Step, Trace, Workload
from mesh.trace.objects import name_of, namespace_of, svc_fqdn
from mesh.trace.routes import Destination, cluster_name
from mesh.trace.upstream import _tls_mode, destination_rule, to_destination, to_destinations

EXT_PROC_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


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
    entries = []
    for entry in gatewayapi.ordered(routes):
        why = gatewayapi.rejected(entry)
        if why:
            steps = [*steps, Step("route", f"{entry.name} not translated: {why}")]
        else:
            entries.append(entry)
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
    targets, answer = gatewayapi.backends(chosen, objects)
    if answer is not None:
        return Trace(source, request, tuple(steps), answer, route=chosen.name)
    branches = [
        b
        for t in targets
        for b in (
            pool_branches(objects, source, request, t)
            if isinstance(t, gatewayapi.PoolDestination)
            else to_destinations(objects, source, request, _port(objects, t))
        )
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


def ext_proc_trace(objects, source: Workload, picker: pools.Picker) -> Trace:
    """The Gateway's ext_proc call to a pool's endpoint picker: gRPC to the picker Service's
    port through the Gateway's cluster for it (its DestinationRule's TLS applies: the chart's
    is SIMPLE, the picker serving its own certificate), down to the picker pod."""
    request = Request(
        port=picker.port, host=picker.host, protocol="grpc", method="POST", path=EXT_PROC_PATH
    )
    destination = Destination(picker.host, None, picker.port, 100)
    rule = destination_rule(objects, picker.host, source.namespace)
    mode = _tls_mode(rule, None, picker.port)
    how = (
        f"TLS {mode} (DestinationRule {namespace_of(rule)}/{name_of(rule)})"
        if rule is not None and mode
        else "no DestinationRule TLS mode: auto mTLS"
    )
    steps = (Step("ext_proc", f"cluster {cluster_name(destination)}, {how}"),)
    branch = to_destination(objects, source, request, destination)
    return Trace(source, request, steps, Outcome("served", "ext_proc"), (branch,), None)


def _answered(
    target: gatewayapi.PoolDestination,
    destination: Destination,
    steps: list[Step],
    outcome: Outcome,
) -> Branch:
    """The branch of a pool backend that the gateway's ext_proc step answers itself."""
    return Branch(
        kind="route",
        share=target.weight,
        outcome=outcome,
        steps=tuple(steps),
        cluster=cluster_name(destination),
        host=target.host,
        port=target.port,
    )


def pool_branches(
    objects, source: Workload, request: Request, target: gatewayapi.PoolDestination
) -> list[Branch]:
    """One InferencePool backend (mesh.trace.pools): a missing pool answers 500; at a Gateway
    the picker is called first (FailOpen goes on when the call fails, FailClose answers 500);
    then the shadow Service's cluster down to a pod of the pool, on its targetPort."""
    if target.missing:
        return [
            Branch(
                kind="route",
                share=target.weight,
                outcome=Outcome(
                    "no-cluster",
                    f"{target.missing}: cluster UnknownService, and a Gateway API route answers "
                    "a missing cluster with 500",
                    500,
                ),
                cluster="UnknownService",
            )
        ]
    picker = target.picker
    steps: list[Step] = []
    destination = Destination(target.host, None, target.port, target.weight)
    if source.gateway and picker is None:
        steps.append(
            Step(
                "picker",
                "none: Istio gives a rule the picker of its last backendRef with a weight "
                "(conversion.go buildHTTPDestination), and that one is no InferencePool it "
                f"resolves: the gateway balances {target.host}'s endpoints itself",
            )
        )
    elif not source.gateway:
        steps.append(
            Step(
                "picker",
                f"none: a sidecar builds no ext_proc filter (Gateway pods only: listener_builder.go "
                f"HasInferencePool); it routes to the shadow Service {target.host} without a picker",
            )
        )
    else:
        label = (
            f"Service {picker.namespace}/{picker.service}:{picker.port} (ext_proc, {picker.mode})"
        )
        call = ext_proc_trace(objects, source, picker)
        final = call.final()
        if call.ok:
            workload = call.branches[0].workload if call.branches else "-"
            steps.append(Step("picker", f"{label}: {call.steps[0].detail}, answered by {workload}"))
            own = svc_fqdn(pools.shadow_name(picker.pool), picker.namespace)
            service = objects.services.get(own)
            if service is None or not objects.endpoints(service):
                outcome = Outcome(
                    "picker-503",
                    f"the rule's picker serves pool {picker.pool}, which has no ready pod: it "
                    "answers 503 (ImmediateResponse) for every request of the rule, whichever "
                    "pool its weight sends it to (istio/istio#61594)",
                    503,
                )
                return [_answered(target, destination, steps, outcome)]
            if picker.pool != target.pool:
                steps.append(
                    Step(
                        "picker",
                        f"the pod it names is in pool {picker.pool}, not in {target.pool}'s "
                        "cluster: override_host falls back to the cluster's own load balancing "
                        "(Istio gives a rule one picker, its last backendRef's: "
                        "istio/istio#61594, fixed after 1.31.0-rc.0)",
                    )
                )
        elif picker.fail_open:
            steps.append(
                Step(
                    "picker",
                    f"{label}: the call fails ({final.verdict}: {final.detail}); FailOpen: the "
                    "request goes on to a pod of the pool the picker did not choose",
                )
            )
        else:
            steps.append(
                Step("picker", f"{label}: the call fails ({final.verdict}: {final.detail})")
            )
            outcome = Outcome(
                "picker-failed",
                f"FailClose: the endpoint picker {picker.host}:{picker.port} does not answer, "
                "Envoy's ext_proc filter (failure_mode_allow false) answers 500",
                500,
            )
            return [_answered(target, destination, steps, outcome)]
    return [
        replace(branch, steps=(*steps, *branch.steps))
        for branch in to_destinations(objects, source, request, destination)
    ]
