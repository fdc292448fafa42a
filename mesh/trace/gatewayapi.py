"""Gateway API routing as Istio 1.30 runs it: which listener of a `Gateway` (class `istio`)
takes a request, which `HTTPRoute`s attach there or to a Service (GAMMA, mesh traffic), which
rule fires, and where its backendRefs and mirrors point.

Istio does not run HTTPRoutes itself: istiod converts them into VirtualServices and the
proxies follow those (pilot/pkg/config/kube/gateway/, tag 1.30.3). This module follows the
conversion, so a trace answers as a proxy would:

- Objects as the API server stores them: the CRD defaults apply (one rule matching PathPrefix
  `/` when `rules`/`matches` are empty, a match's `path` PathPrefix `/`, header and query
  matches `Exact`, backendRef `group: ""`/`kind: Service`/`weight: 1`, parentRef
  `group: gateway.networking.k8s.io`/`kind: Gateway`, listener `allowedRoutes.namespaces.from:
  Same`; Gateway API v1.6.1 standard CRDs).
- Listener: by port; HTTPS needs the client's TLS (tls.mode Terminate) and HTTP plaintext; a
  listener `hostname` must match the Host or SNI. A route attaches to a listener when its
  parentRef names the Gateway (namespace defaults to the route's), its `sectionName` (if set)
  names the listener and its `port` (if set) is the listener's, and the listener's
  `allowedRoutes` admits the route's namespace (Same, All, Selector on the namespace's labels)
  and kind (route_collections.go / conversion.go `referenceAllowed`).
- Hostnames: one virtual host per route hostname (route_collections.go `HTTPRouteCollection`,
  "Create one VS per hostname"); no hostnames means `*`. Envoy picks the exact host before the
  longest wildcard; routes of the same parent and hostname are merged, oldest first
  (creationTimestamp, then namespace, then name: conversion.go `sortRoutesByCreationTime`,
  route_collections.go `mergeHTTPRoutes`).
- Rules: every match of a rule becomes its own route ("split the rule to make sure each rule
  has up to one match", route_collections.go), then `sortHTTPRoutes` (conversion.go) orders
  them, stably: Exact path before PathPrefix before RegularExpression, a longer path first,
  a method match first, more header matches first, more query matches first; routes without
  a match last. The first that fits the request fires; none: 404 (NR).
- A PathPrefix matches whole path segments (`/v1` matches `/v1` and `/v1/x`, not `/v1x`):
  Envoy's `path_separated_prefix` for gateway semantics (route/route.go `translateRouteMatch`).
  Regular expressions are RE2, matched against the whole value.
- backendRefs: weights are relative; weight 0 backends are dropped, a single remaining backend
  takes everything; all weights 0 answers 500, no backendRefs 404 (conversion.go
  `convertHTTPRoute`, `buildHTTPDestination`). A `RequestRedirect` filter answers the redirect
  (default 302) before any backend. `RequestMirror` copies `percent` (or `fraction`) of the
  requests (`createMirrorFilter`).
- Mesh (GAMMA): a parentRef `{group: "", kind: Service, name}` makes the route the Service's
  routes for every port of it (a `port` in the parentRef narrows it: `augmentPortMatch`), with
  the Service's own name as the only host (the route's `hostnames` do not apply). Only
  producer routes are modelled (in the Service's namespace); consumer routes (in the client's
  namespace) are not.

GRPCRoute, TLSRoute, TCPRoute, URLRewrite and header filters are not followed (a trace does
not rewrite the request); ReferenceGrant is not checked (a cross-namespace backendRef is taken
as granted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2

from mesh.trace import hosts, pools
from mesh.trace.model import Outcome, Request
from mesh.trace.objects import Objects, d, items, meta, name_of, namespace_of, selects, spec_of
from mesh.trace.routes import Destination

GROUP = "gateway.networking.k8s.io"
WAYPOINT_CLASS = "istio-waypoint"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


def is_gateway_api(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).startswith(f"{GROUP}/")


def gateways(objects: Objects) -> list[dict[str, Any]]:
    """The Gateway API Gateways among the objects (an Istio `Gateway` shares the kind)."""
    return [g for g in objects.kind("Gateway") if is_gateway_api(g)]


def gateway_for_pod(objects: Objects, namespace: str, labels: Mapping[str, str]):
    """The Gateway whose pods these are: Istio deploys a Gateway's pods in its namespace,
    labelled `gateway.networking.k8s.io/gateway-name: <name>` (pilot/pkg/config/kube/
    gatewaycommon/deploymentcontroller.go, the deployment template's labels)."""
    name = labels.get(GATEWAY_NAME_LABEL)
    for gateway in gateways(objects):
        if name_of(gateway) == name and namespace_of(gateway) == namespace:
            return gateway
    return None


def describe(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')} {namespace_of(obj)}/{name_of(obj)}"


# --- listeners -----------------------------------------------------------------------------


def pick_listener(
    gateway: dict[str, Any], request: Request
) -> tuple[dict[str, Any] | None, Outcome | None]:
    """The listener that takes the connection, or the outcome when none does."""
    on_port = [d(entry) for entry in items(spec_of(gateway).get("listeners"))]
    on_port = [entry for entry in on_port if entry.get("port") == request.port]
    if not on_port:
        return None, Outcome(
            "refused",
            f"{describe(gateway)} has no listener on port {request.port}: nothing listens",
        )
    wanted = ("HTTPS", "TLS") if request.tls else ("HTTP",)
    fitting = [entry for entry in on_port if str(entry.get("protocol")).upper() in wanted]
    if not fitting:
        why = (
            "the client starts TLS on a plaintext HTTP listener: the handshake fails"
            if request.tls
            else "plaintext on an HTTPS listener: no TLS ClientHello, connection closed"
        )
        return None, Outcome("reset", why)
    host = request.authority()
    named = [
        (entry, str(entry["hostname"]))
        for entry in fitting
        if entry.get("hostname") and hosts.matches(str(entry["hostname"]), host)
    ]
    if named:
        named.sort(key=lambda pair: hosts.specificity(pair[1]))
        return named[0][0], None
    open_ = [entry for entry in fitting if not entry.get("hostname")]
    if open_:
        return open_[0], None
    what = "SNI" if request.tls else "host"
    return None, Outcome(
        "reset" if request.tls else "no-route",
        f"no listener hostname of {describe(gateway)} matches {what} {host}",
        None if request.tls else 404,
    )


def _parent_refs(route: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for ref in items(spec_of(route).get("parentRefs")):
        ref = d(ref)
        found.append(
            {
                "group": ref.get("group", GROUP),
                "kind": ref.get("kind", "Gateway"),
                "namespace": ref.get("namespace") or namespace_of(route),
                "name": ref.get("name"),
                "sectionName": ref.get("sectionName"),
                "port": ref.get("port"),
            }
        )
    return found


def allowed(objects: Objects, gateway: dict[str, Any], listener: dict[str, Any], route) -> str:
    """'' when the listener's allowedRoutes admits the route, else why not."""
    rules = d(listener.get("allowedRoutes"))
    namespaces = d(rules.get("namespaces"))
    origin = str(namespaces.get("from", "Same"))
    route_ns = namespace_of(route)
    if origin == "Same" and route_ns != namespace_of(gateway):
        return f"allowedRoutes admits only namespace {namespace_of(gateway)} (from: Same)"
    if origin == "Selector" and not selects(
        d(namespaces.get("selector")), objects.namespace_labels(route_ns)
    ):
        return f"allowedRoutes' namespace selector does not select namespace {route_ns}"
    if origin not in ("Same", "All", "Selector"):
        return f"allowedRoutes from {origin!r} admits nothing this trace knows"
    kinds = [d(k) for k in items(rules.get("kinds"))]
    if kinds and not any(
        k.get("kind") == route.get("kind") and k.get("group", GROUP) == GROUP for k in kinds
    ):
        return f"allowedRoutes kinds {[k.get('kind') for k in kinds]} exclude {route.get('kind')}"
    return ""


def attached_to_listener(
    objects: Objects, gateway: dict[str, Any], listener: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The HTTPRoutes attached to a listener, and why others that name the Gateway are not."""
    found, notes = [], []
    for route in objects.kind("HTTPRoute"):
        for ref in _parent_refs(route):
            if (ref["group"], ref["kind"]) != (GROUP, "Gateway"):
                continue
            if (ref["namespace"], ref["name"]) != (namespace_of(gateway), name_of(gateway)):
                continue
            if ref["sectionName"] and ref["sectionName"] != listener.get("name"):
                continue
            if ref["port"] is not None and ref["port"] != listener.get("port"):
                continue
            why = allowed(objects, gateway, listener, route)
            if why:
                notes.append(f"{describe(route)} not attached: {why}")
                continue
            found.append(route)
            break
    return found, notes


def mesh_routes(objects: Objects, service: dict[str, Any], port: int) -> list[dict[str, Any]]:
    """The HTTPRoutes (GAMMA) whose parentRef is this Service, in the Service's namespace, on
    this port (a parentRef without `port` covers every port)."""
    found = []
    for route in objects.kind("HTTPRoute", namespace_of(service)):
        for ref in _parent_refs(route):
            if (ref["group"], ref["kind"]) != ("", "Service"):
                continue
            if (ref["namespace"], ref["name"]) != (namespace_of(service), name_of(service)):
                continue
            if ref["port"] is not None and ref["port"] != port:
                continue
            found.append(route)
            break
    return found


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One route Istio generates: a rule with (at most) one of its matches."""

    route: dict[str, Any]
    index: int  # the rule's position in the HTTPRoute
    rule: dict[str, Any]
    match: dict[str, Any] | None

    @property
    def name(self) -> str:
        given = self.rule.get("name")
        return (
            str(given)
            if given
            else f"{namespace_of(self.route)}.{name_of(self.route)}.{self.index}"
        )


def _rules(route: dict[str, Any]) -> list[dict[str, Any]]:
    rules = [d(r) for r in items(spec_of(route).get("rules"))]
    return rules or [{}]


def _matches(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A rule's matches with the CRD defaults: none given means one PathPrefix `/` match, and
    a match without a path matches PathPrefix `/`."""
    given = [d(m) for m in items(rule.get("matches"))] or [{}]
    return [{**m, "path": {"type": "PathPrefix", "value": "/", **d(m.get("path"))}} for m in given]


def _creation_key(route: dict[str, Any]) -> tuple[str, str, str]:
    stamp = str(meta(route).get("creationTimestamp") or "")
    return (stamp, namespace_of(route), name_of(route))


_PATH_RANK = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}


def _prefix_value(value: str) -> str:
    return value if value == "/" else value.rstrip("/") or "/"


def _sort_key(entry: Entry) -> tuple:
    """conversion.go `sortHTTPRoutes`, as a key for a stable ascending sort."""
    match = entry.match
    if match is None:
        return (1,)
    path = d(match.get("path"))
    kind = str(path.get("type", "PathPrefix"))
    value = str(path.get("value", "/"))
    length = len(_prefix_value(value)) if kind == "PathPrefix" else len(value)
    return (
        0,
        -_PATH_RANK.get(kind, 0),
        -length,
        0 if match.get("method") else 1,
        -len(items(match.get("headers"))),
        -len(items(match.get("queryParams"))),
    )


def ordered(routes: list[dict[str, Any]]) -> list[Entry]:
    """The routes' rules as Istio orders them in one virtual host."""
    entries = [
        Entry(route, index, rule, match)
        for route in sorted(routes, key=_creation_key)
        for index, rule in enumerate(_rules(route))
        for match in _matches(rule)
    ]
    return sorted(entries, key=_sort_key)


def _value_matches(kind: str, wanted: str, value: str | None) -> bool:
    if value is None:
        return False
    if kind == "RegularExpression":
        try:
            return re2.fullmatch(wanted, value) is not None
        except re2.error:
            return False
    return value == wanted


def _path_matches(path: dict[str, Any], value: str) -> bool:
    kind = str(path.get("type", "PathPrefix"))
    wanted = str(path.get("value", "/"))
    if kind == "Exact":
        return value == wanted
    if kind == "RegularExpression":
        return _value_matches(kind, wanted, value)
    prefix = _prefix_value(wanted)
    return prefix == "/" or value == prefix or value.startswith(prefix + "/")


def miss(match: dict[str, Any] | None, request: Request) -> str | None:
    """Why the request does not fit a match, or None when it does."""
    if match is None:
        return None
    path, _, query = request.path.partition("?")
    if not _path_matches(d(match.get("path")), path):
        return f"path {d(match.get('path'))} does not match {path}"
    method = match.get("method")
    if method and str(method) != ("POST" if request.protocol == "grpc" else request.method):
        return f"method {method} does not match {request.method}"
    headers = request.header_map
    for header in items(match.get("headers")):
        header = d(header)
        kind = str(header.get("type", "Exact"))
        value = headers.get(str(header.get("name", "")).lower())
        if not _value_matches(kind, str(header.get("value", "")), value):
            return f"header {header.get('name')} {kind} {header.get('value')!r} does not match"
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    for param in items(match.get("queryParams")):
        param = d(param)
        kind = str(param.get("type", "Exact"))
        if not _value_matches(
            kind, str(param.get("value", "")), params.get(str(param.get("name")))
        ):
            return f"query {param.get('name')} does not match"
    return None


def show_match(match: dict[str, Any]) -> str:
    """`PathPrefix / header content-type~application/grpc.*`: a match, compact."""
    path = d(match.get("path"))
    parts = [f"{path.get('type', 'PathPrefix')} {path.get('value', '/')}"]
    if match.get("method"):
        parts.append(f"method {match['method']}")
    for header in (d(h) for h in items(match.get("headers"))):
        sign = "~" if header.get("type") == "RegularExpression" else "="
        parts.append(f"header {header.get('name')}{sign}{header.get('value')}")
    for param in (d(p) for p in items(match.get("queryParams"))):
        parts.append(f"query {param.get('name')}={param.get('value')}")
    return " ".join(parts)


def choose(entries: list[Entry], request: Request) -> tuple[Entry | None, list[str]]:
    notes = []
    for entry in entries:
        why = miss(entry.match, request)
        if why is None:
            return entry, notes
        notes.append(f"{entry.name}: {why}")
    return None, notes


def _filters(entry: Entry, kind: str) -> list[dict[str, Any]]:
    return [
        d(f.get(kind[0].lower() + kind[1:]))
        for f in (d(f) for f in items(entry.rule.get("filters")))
        if f.get("type") == kind
    ]


def redirect(entry: Entry) -> dict[str, Any] | None:
    found = _filters(entry, "RequestRedirect")
    return found[0] if found else None


def _backend_host(ref: dict[str, Any], namespace: str) -> str:
    return f"{ref.get('name')}.{ref.get('namespace') or namespace}.svc.cluster.local"


@dataclass(frozen=True)
class PoolDestination(Destination):
    """A backendRef to an InferencePool (mesh.trace.pools): the shadow Service's host and first
    port with the pool's endpoint picker, or no host when the pool is not found (`missing`)."""

    picker: pools.Picker | None = None
    missing: str = ""
    pool: str = ""


def rejected(entry: Entry) -> str | None:
    """Why istiod drops the rule from the translation, if it does: an InferencePool backendRef
    named by host (conversion.go `buildDestination`: InvalidDestination, not an invalid
    backend, so `convertHTTPRoute` returns the error and the rule makes no route)."""
    for ref in (d(r) for r in items(entry.rule.get("backendRefs"))):
        if pools.dotted(ref):
            return (
                f"backendRef InferencePool {ref.get('name')!r}: InferencePool.Name invalid; the "
                "name of the InferencePool must be used, not the hostname (the rule is dropped)"
            )
    return None


def backends(
    entry: Entry, objects: Objects | None = None
) -> tuple[list[Destination], Outcome | None]:
    """The rule's weighted destinations (share in percent), or the answer Istio generates
    instead: 404 without backendRefs, 500 when every weight is 0. An InferencePool backendRef
    becomes a `PoolDestination` (mesh.trace.pools `resolve`)."""
    namespace = namespace_of(entry.route)
    refs = [d(r) for r in items(entry.rule.get("backendRefs"))]
    if not refs:
        return [], Outcome("aborted", "the rule has no backendRefs: Istio answers 404", 404)
    live = [(r, int(r.get("weight", 1))) for r in refs if int(r.get("weight", 1)) > 0]
    if not live:
        return [], Outcome("aborted", "every backendRef has weight 0: Istio answers 500", 500)
    total = sum(w for _, w in live)
    found: list[Destination] = []
    resolved = {
        id(ref): pools.resolve(objects, ref, namespace)
        for ref, _ in live
        if pools.is_pool_ref(ref) and objects is not None
    }
    # One picker for the whole rule: that of the last backend with a weight (conversion.go
    # `buildHTTPDestination` keeps `ipCfg = ipconfig` of each backend in turn; none when that
    # backend is a Service or a pool that does not resolve). istio/istio#61594.
    last = resolved.get(id(live[-1][0]), (None, ""))[0]
    picker = last.picker if last is not None else None
    for ref, weight in live:
        share = weight * 100 / total
        if id(ref) in resolved:
            target, why = resolved[id(ref)]
            if target is None:
                found.append(PoolDestination("", None, None, share, missing=why))
            else:
                found.append(
                    PoolDestination(
                        target.host,
                        None,
                        target.port,
                        share,
                        picker=picker,
                        pool=target.picker.pool,
                    )
                )
            continue
        if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
            return [], Outcome(
                "unmodelled", f"backendRef kind {ref.get('kind')} is not followed by this trace"
            )
        found.append(Destination(_backend_host(ref, namespace), None, ref.get("port"), share))
    return found, None


def mirrors(entry: Entry) -> list[Destination]:
    found = []
    for mirror in _filters(entry, "RequestMirror"):
        ref = d(mirror.get("backendRef"))
        fraction = d(mirror.get("fraction"))
        if fraction:
            percent = (
                100
                * float(fraction.get("numerator", 0))
                / float(fraction.get("denominator", 100) or 100)
            )
        else:
            percent = float(mirror.get("percent", 100))
        found.append(
            Destination(
                _backend_host(ref, namespace_of(entry.route)), None, ref.get("port"), percent
            )
        )
    return found


def virtual_host(
    routes: list[dict[str, Any]], host: str
) -> tuple[str | None, list[dict[str, Any]]]:
    """The hostname pattern Envoy picks for `host` among the routes' hostnames (`*` for a
    route without any), and the routes that carry it."""
    patterns: dict[str, list[dict[str, Any]]] = {}
    for route in routes:
        for pattern in [str(h) for h in items(spec_of(route).get("hostnames"))] or ["*"]:
            patterns.setdefault(pattern.lower(), []).append(route)
    chosen = hosts.best(list(patterns), host)
    return chosen, patterns.get(chosen, []) if chosen else []
