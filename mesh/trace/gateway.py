"""A request arriving at an ingress gateway: which Gateway server takes it, TLS and the HTTPS
redirect, and the VirtualService that binds the host there.

Follows pilot/pkg/networking/core/gateway.go (Istio 1.30):

- A Gateway applies to the gateway pods its `selector` matches, in any namespace
  (PILOT_SCOPE_GATEWAY_TO_NAMESPACE is off by default; pilot/pkg/model/gateway.go
  `mergeGateways`). Its servers become listeners on `port.number` (the gateway Service port the
  client dials; istiod maps it to the pod's target port).
- HTTP servers of one port share a route configuration; an HTTPS server terminates TLS for the
  SNI names in its `hosts` (`buildGatewayListeners`, filter chains by server name; a client
  whose SNI matches no server is closed). `tls.httpsRedirect` sets `require_tls: ALL` on the
  server's virtual hosts: a 301 to https before any route (`buildGatewayHTTPRouteConfig`).
- A VirtualService binds a host on the server only if the server's `hosts` entry admits its
  namespace and host (`./host`: the Gateway's namespace only).
- Routes are translated with the server's port: a route match on another `port` is dropped
  (see mesh.trace.routes).
"""

from __future__ import annotations

from typing import Any

from mesh.trace import hosts
from mesh.trace.model import Outcome, Request, Step, Trace, Workload
from mesh.trace.objects import Objects, d, items, name_of, namespace_of, selects, spec_of
from mesh.trace.routes import Listener, describe, virtual_services_for


def servers(
    objects: Objects, source: Workload, port: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    found = []
    for gateway in objects.kind("Gateway"):
        if not selects(d(spec_of(gateway).get("selector")), source.label_map):
            continue
        for server in items(spec_of(gateway).get("servers")):
            if d(d(server).get("port")).get("number") == port:
                found.append((gateway, d(server)))
    return found


def _host_patterns(server: dict[str, Any]) -> list[str]:
    return [str(h).rpartition("/")[2] for h in items(server.get("hosts"))]


def pick_server(
    candidates: list[tuple[dict[str, Any], dict[str, Any]]], request: Request
) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, str]:
    """The server that takes the connection, or why none does."""
    tls_servers = [
        c
        for c in candidates
        if str(d(c[1].get("port")).get("protocol", "")).upper() in ("HTTPS", "TLS")
    ]
    plain = [c for c in candidates if c not in tls_servers]
    if request.tls:
        if not tls_servers:
            return None, "the client starts TLS on a plaintext HTTP server: the handshake fails"
        host = request.authority()
        by_sni = [c for c in tls_servers if hosts.best(_host_patterns(c[1]), host)]
        if not by_sni:
            return None, f"no HTTPS server's hosts match SNI {host}: connection closed"
        by_sni.sort(key=lambda c: hosts.specificity(hosts.best(_host_patterns(c[1]), host) or "*"))
        return by_sni[0], ""
    if not plain:
        return None, "plaintext on an HTTPS server: no TLS ClientHello, connection closed"
    host = request.authority()
    admitting = [c for c in plain if hosts.best(_host_patterns(c[1]), host)]
    return (admitting or plain)[0], ""


def _redirect_vhost(server: dict[str, Any], host: str) -> bool:
    """istiod gives every host of an httpsRedirect server that is not bound to one namespace
    (a bare host, or `*/host`) a redirecting virtual host even when no VirtualService binds it
    (gateway.go `buildGatewayHTTPRouteConfig`)."""
    for entry in items(server.get("hosts")):
        namespace, _, pattern = str(entry).rpartition("/")
        if namespace in ("", "*") and hosts.matches(pattern, host):
            return True
    return False


def _redirected(request: Request, host: str) -> Outcome:
    """`require_tls: ALL` answers 301 to https. A browser or REST client follows it; a gRPC
    client does not, so for gRPC the call fails."""
    location = f"301 to https://{host}{request.path}"
    if request.protocol == "grpc":
        return Outcome(
            "unfollowed-redirect",
            f"httpsRedirect: {location}; gRPC clients do not follow redirects, the call fails",
            301,
        )
    return Outcome("redirected", f"httpsRedirect: {location}", 301)


def ingress(objects: Objects, source: Workload, request: Request):
    """The gateway part of a trace; returns (listener, vs, steps) to continue with, or a
    finished Trace when the gateway itself answers."""
    from mesh.trace.simulate import finish_http  # the shared route-to-destination part

    steps: list[Step] = []
    candidates = servers(objects, source, request.port)
    if not candidates:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "refused",
                f"no Gateway server on port {request.port} selects "
                f"{source.describe()}: nothing listens",
            ),
        )
    chosen, why = pick_server(candidates, request)
    if chosen is None:
        return Trace(source, request, tuple(steps), Outcome("reset", why))
    gateway, server = chosen
    key = f"{namespace_of(gateway)}/{name_of(gateway)}"
    port = d(server.get("port"))
    tls = d(server.get("tls"))
    mode = (
        f", TLS {tls.get('mode', 'PASSTHROUGH')} ({tls.get('credentialName', '-')})"
        if (request.tls)
        else ""
    )
    steps.append(
        Step(
            "gateway",
            f"Gateway {key} server {port.get('name', '')} "
            f"{port.get('protocol')}:{port.get('number')}{mode}",
        )
    )
    host = request.authority()
    listener = Listener(gateway=key, port=request.port, source=source)

    def admitted(vs: dict[str, Any]) -> bool:
        return any(  # the VirtualService's hosts for this request first: few match it
            hosts.server_host_admits(str(entry), namespace_of(gateway), namespace_of(vs), str(h))
            for h in items(spec_of(vs).get("hosts"))
            if hosts.matches(str(h), host) or hosts.matches(host, str(h))
            for entry in items(server.get("hosts"))
        )

    if str(port.get("protocol", "")).upper() == "TLS":
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "unmodelled",
                "a TLS (passthrough) server routes by VirtualService `tls` routes, "
                "which this trace does not model",
            ),
        )
    redirect = bool(tls.get("httpsRedirect")) and not request.tls
    found = virtual_services_for(objects, listener, host, visible=admitted)
    if redirect and (found is not None or _redirect_vhost(server, host)):
        if found is not None:
            steps.append(Step("virtualhost", f"{describe(found[0])} host {found[1]}"))
        return Trace(source, request, tuple(steps), _redirected(request, host))
    if found is None:
        return Trace(
            source,
            request,
            tuple(steps),
            Outcome(
                "no-route",
                f"no VirtualService bound to {key} serves host {host} on this server: 404 NR",
                404,
            ),
        )
    vs, pattern = found
    steps.append(Step("virtualhost", f"{describe(vs)} host {pattern}"))
    return finish_http(objects, source, request, listener, vs, steps)
