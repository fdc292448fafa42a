"""VirtualService HTTP routes as a proxy tries them: which VirtualService serves a host on a
listener, which route fires for a request, and where its destinations and mirror point.

Follows pilot/pkg/networking/core/route/route.go (Istio 1.30):

- pilot/pkg/model/push_context.go `VirtualServicesForGateway` / `getGatewayNames`: a
  VirtualService applies to the mesh's sidecars when `gateways` is empty or lists `mesh`, and
  to a gateway when it lists `<namespace>/<name>` of its Gateway (a bare name means the
  VirtualService's namespace; config.go `resolveGatewayName`).
- `TranslateRoute` drops, while building the proxy's config, every match whose `port` differs
  from the listener's port: the Service port on a sidecar, **the Gateway server's port (80,
  443) on a gateway**; likewise a match whose `gateways` does not name this proxy's gateway (or
  `mesh`), and `sourceLabels`/`sourceNamespace` that do not fit the proxy. A route whose matches
  are all dropped is dropped as a whole.
- At request time the remaining routes are tried in order; the first whose match (any of its
  match blocks: ORed) fits the request wins. A match block ANDs its conditions: `uri`,
  `method`, `authority`, `scheme`, `headers` (exact, prefix, RE2 regex over the whole value;
  `{}` for presence), `withoutHeaders`, `queryParams`. No route fits: 404 (NR).
- Weights are relative; a single destination takes everything (RULES.md 18). A destination
  without `port` takes the Service's only port, else the listener's port
  (route.go `GetDestinationCluster`). The Envoy cluster is `outbound|<port>|<subset>|<host>`
  (pilot/pkg/model/service.go `BuildSubsetKey`).
- `mirror` copies `mirrorPercentage` (default 100%) of the route's requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2

from mesh.trace import hosts
from mesh.trace.model import Request, Workload
from mesh.trace.objects import Objects, d, items, name_of, namespace_of, qualify, selects, spec_of

MESH = "mesh"


@dataclass(frozen=True)
class Listener:
    """The proxy and port a request arrived on: a gateway (`namespace/name` of the Gateway
    object whose server took it) or the mesh's sidecar listener for a Service port."""

    gateway: str | None  # None: the sidecar (the `mesh` gateway)
    port: int
    source: Workload

    @property
    def label(self) -> str:
        return self.gateway or MESH


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None
    port: int | None
    weight: float  # percent of the route's requests


@dataclass(frozen=True)
class RouteChoice:
    virtual_service: dict[str, Any]
    index: int
    route: dict[str, Any]
    notes: tuple[str, ...]  # why earlier routes did not fire

    @property
    def name(self) -> str:
        return str(self.route.get("name") or f"http[{self.index}]")


def gateway_key(name: str, namespace: str) -> str:
    """A gateway reference as istiod resolves it (pilot/pkg/model/config.go
    `resolveGatewayName`): `mesh`; `ns/name`; `./name` and a bare `name` in the referring
    object's namespace; the legacy `name.ns.svc.cluster.local` form."""
    if name == MESH:
        return name
    if name.startswith("./"):
        return f"{namespace}/{name[2:]}"
    if "/" in name:
        return name
    parts = name.split(".")
    if len(parts) > 1:
        return f"{parts[1]}/{parts[0]}"
    return f"{namespace}/{name}"


def bound_gateways(vs: dict[str, Any]) -> list[str]:
    """The gateways a VirtualService binds (none listed: `mesh`; push_context.go
    `getGatewayNames`)."""
    namespace = namespace_of(vs)
    names = [str(g) for g in items(spec_of(vs).get("gateways"))] or [MESH]
    return [gateway_key(g, namespace) for g in names]


def _bound_hosts(objects: Objects, label: str) -> tuple[dict[str, list], list]:
    """The host patterns of every VirtualService bound to `label`, each as (position in object
    order, pattern qualified in the VirtualService's namespace, VirtualService): exact ones by
    lower-cased name, wildcards in a list. Built once per set of objects: every trace through
    the same listener asks again, and a host's exact patterns are then one lookup."""
    key = ("bound_hosts", label)
    if key not in objects.memo:
        exact: dict[str, list] = {}
        wildcards: list = []
        bound = (vs for vs in objects.kind("VirtualService") if label in bound_gateways(vs))
        patterns = (
            (qualify(str(p), namespace_of(vs)), vs)
            for vs in bound
            for p in items(spec_of(vs).get("hosts"))
        )
        for position, (pattern, vs) in enumerate(patterns):
            entry = (position, pattern, vs)
            if pattern.startswith("*"):
                wildcards.append(entry)
            else:
                exact.setdefault(pattern.lower(), []).append(entry)
        objects.memo[key] = exact, wildcards
    return objects.memo[key]


def virtual_services_for(
    objects: Objects, listener: Listener, host: str, visible=None
) -> tuple[dict[str, Any], str] | None:
    """The VirtualService whose host Envoy picks for `host` on this listener (exact before
    wildcard), and the host pattern that matched. Several VirtualServices for one host are
    merged by istiod on gateways only; this trace takes the first (documented limit).

    Only patterns that match `host` can be picked, so only their VirtualServices are asked
    whether they are `visible`: the same answer as asking all of them, without the cost."""
    exact, wildcards = _bound_hosts(objects, listener.label)
    matching = sorted(
        [*exact.get(host.lower(), []), *(w for w in wildcards if hosts.matches(w[1], host))],
        key=lambda entry: entry[0],
    )
    seen: dict[int, bool] = {}
    candidates: list[tuple[str, dict[str, Any]]] = []
    for _, pattern, vs in matching:
        if id(vs) not in seen:
            seen[id(vs)] = visible is None or bool(visible(vs))
        if seen[id(vs)]:
            candidates.append((pattern, vs))
    chosen = hosts.best([p for p, _ in candidates], host)
    if chosen is None:
        return None
    return next(vs for p, vs in candidates if p == chosen), chosen


def _string_match(match: Mapping[str, Any], value: str | None) -> bool:
    if value is None:
        return False
    if not match:
        return True  # presence
    if "exact" in match:
        return value == str(match["exact"])
    if "prefix" in match:
        return value.startswith(str(match["prefix"]))
    if "regex" in match:
        if str(match["regex"]) == "*":
            return True  # route.go `canBeConvertedToPresentMatch`: a presence match
        try:
            return re2.fullmatch(str(match["regex"]), value) is not None
        except re2.error:
            return False  # istiod's validation rejects it; nothing matches
    return True


def _static_drop(block: dict[str, Any], listener: Listener, vs_namespace: str) -> str | None:
    """Why istiod leaves a match block out of this proxy's config, if it does. Short gateway
    names in a match resolve in the VirtualService's namespace (pilot/pkg/model/config.go
    `resolveGatewayName`)."""
    port = block.get("port")
    if port is not None and int(port) != listener.port:
        where = "Gateway server port" if listener.gateway else "Service port"
        return f"match port {port} is not the {where} {listener.port}"
    gateways = items(block.get("gateways"))
    if gateways and listener.label not in [gateway_key(str(g), vs_namespace) for g in gateways]:
        return f"match gateways {gateways} do not name {listener.label}"
    labels = block.get("sourceLabels")
    if labels and not selects(labels, listener.source.label_map):
        return f"sourceLabels {labels} do not fit the source"
    namespace = block.get("sourceNamespace")
    if namespace and namespace != listener.source.namespace:
        return f"sourceNamespace {namespace} is not {listener.source.namespace}"
    return None


def _dynamic_miss(block: dict[str, Any], request: Request) -> str | None:
    """Why a request does not fit a match block, checked as Envoy checks it at request time."""
    headers = request.header_map
    path = request.path.split("?", 1)[0]
    uri = d(block.get("uri"))
    if uri and not _string_match(uri, path):
        return f"uri {uri} does not match {path}"
    method = d(block.get("method"))
    if method and not _string_match(method, request.method):
        return f"method {method} does not match {request.method}"
    authority = d(block.get("authority"))
    if authority and not _string_match(authority, request.authority()):
        return f"authority {authority} does not match {request.authority()}"
    scheme = d(block.get("scheme"))
    if scheme and not _string_match(scheme, "https" if request.tls else "http"):
        return f"scheme {scheme} does not match"
    for name, condition in d(block.get("headers")).items():
        if not _string_match(d(condition), headers.get(str(name).lower())):
            return f"header {name} {condition or 'present'} does not match"
    for name, condition in d(block.get("withoutHeaders")).items():
        if _string_match(d(condition), headers.get(str(name).lower())):
            return f"withoutHeaders {name} matches"
    if d(block.get("queryParams")) and "?" not in request.path:
        return "queryParams need a query string"
    return None


def choose_route(vs: dict[str, Any], listener: Listener, request: Request) -> RouteChoice | None:
    notes: list[str] = []
    for index, route in enumerate(items(spec_of(vs).get("http"))):
        route = d(route)
        label = str(route.get("name") or f"http[{index}]")
        blocks = [d(b) for b in items(route.get("match"))]
        if not blocks:
            return RouteChoice(vs, index, route, tuple(notes))
        kept = []
        for block in blocks:
            dropped = _static_drop(block, listener, namespace_of(vs))
            if dropped:
                notes.append(f"{label}: {dropped} (not in this proxy's routes)")
            else:
                kept.append(block)
        for block in kept:
            missed = _dynamic_miss(block, request)
            if missed is None:
                return RouteChoice(vs, index, route, tuple(notes))
            notes.append(f"{label}: {missed}")
    return None


def destinations(objects: Objects, choice: RouteChoice, listener: Listener) -> list[Destination]:
    """The weighted destinations of a route, each with its share of the requests."""
    namespace = namespace_of(choice.virtual_service)
    targets = [d(t) for t in items(choice.route.get("route"))]
    if len(targets) == 1:
        weights = [100.0]
    else:
        raw = [float(t.get("weight", 0) or 0) for t in targets]
        total = sum(raw) or 1.0
        weights = [w * 100 / total for w in raw]
    return [
        _destination(objects, d(t.get("destination")), namespace, listener.port, w)
        for t, w in zip(targets, weights, strict=True)
    ]


def mirror(objects: Objects, choice: RouteChoice, listener: Listener) -> list[Destination]:
    namespace = namespace_of(choice.virtual_service)
    found = []
    if "mirror" in choice.route:
        percent = d(choice.route.get("mirrorPercentage")).get("value", 100.0)
        found.append(
            _destination(objects, d(choice.route["mirror"]), namespace, listener.port, percent)
        )
    for entry in items(choice.route.get("mirrors")):
        entry = d(entry)
        percent = d(entry.get("percentage")).get("value", 100.0)
        found.append(
            _destination(objects, d(entry.get("destination")), namespace, listener.port, percent)
        )
    return found


def _destination(
    objects: Objects, target: dict[str, Any], namespace: str, listener_port: int, weight: Any
) -> Destination:
    host = qualify(str(target.get("host", "")), namespace)
    port = d(target.get("port")).get("number")
    if port is None:
        service = objects.services.get(host)
        ports = items(spec_of(service).get("ports")) if service else []
        port = d(ports[0]).get("port") if len(ports) == 1 else listener_port
    subset = target.get("subset")
    return Destination(host, str(subset) if subset else None, int(port), float(weight))


def cluster_name(destination: Destination) -> str:
    return f"outbound|{destination.port}|{destination.subset or ''}|{destination.host}"


def describe(vs: dict[str, Any]) -> str:
    return f"VirtualService {namespace_of(vs)}/{name_of(vs)}"
