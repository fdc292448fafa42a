"""Gateway API routes: what istiod does with an HTTPRoute's (or GRPCRoute's) references.

Istio has no analyzer that resolves Gateway API references offline: istiod resolves them when
it translates the routes (pilot/pkg/config/kube/gateway/conversion.go, 1.30.3) and writes the
outcome to the route's status, and `istioctl analyze` then reports a negative condition as
IST0171 (conditions.ConditionAnalyzer, pkg/config/analysis/analyzers/conditions/conditions.go).
Before `pulumi up` there is no status, so these rules predict those conditions from the objects
(the stack's, laid over a cluster snapshot with `--with`) by the same logic, and name the
condition istiod will set. They are ml-mesh's own codes (MESH0020-MESH0024, MESH0026): a route that does
not attach, or a backend that does not resolve, leaves a model unreachable, so the stack's own
are errors where the traffic fails and warnings where istiod picks one of two routes.

- parentRefs (MESH0020): the parent's group/kind is one Istio serves (`toInternalParentReference`
  answers "unsupported parent" and `extractParentReferenceInfo` drops the reference silently;
  a mesh parent is `group: ""`, `kind: Service`); the Gateway or Service exists; `sectionName`
  (and the experimental `port`) names a listener; the listener's `allowedRoutes` admits the
  route's namespace (`namespacesFromSelector`) and kind (`referenceAllowed`).
- hostnames (MESH0021): a listener with a hostname admits a route only if one of the route's
  hostnames matches it (`referenceAllowed`, `host.Name.Matches`); otherwise
  Accepted=False, NoMatchingListenerHostname.
- backendRefs (MESH0022): the Service exists (`buildDestination`: ResolvedRefs=False,
  BackendNotFound), a `port` is given and is one of the Service's ports (istiod builds the
  destination `host:port` as written; a port the Service lacks has no cluster: 503), a
  backendRef into another namespace has a ReferenceGrant (`BackendAllowed`), and the kind is
  one Istio routes to (Service, InferencePool, ServiceEntry Hostname, ServiceImport).
- weights (MESH0023): a rule whose backendRefs all weigh 0 gets a direct response 500
  (`convertHTTPRoute`: "Backends exist but all have zero weight; per the Gateway API spec
  return 500").
- conflicts (MESH0024): two routes on one parent (a Gateway listener and hostname, or a mesh
  Service) with the same match: the Gateway API gives the request to the older route, then to
  the first by namespace, then name (HTTPRoute spec, rule precedence; Istio orders the routes
  so in `sortRoutesByCreationTime` before `sortHTTPRoutes` sorts by match specificity, which
  keeps that order for equal matches), so the other route's rule never sees it.
- pool split (MESH0026): a model with inference pools has two routes (mesh/gatewayapi/routes.py):
  `<m>` on the model Service for mesh callers, `<m>-pools` on the Gateway to the versions'
  InferencePools. The builders give both one split; routes that split differently (a hand
  edit, a bad base) send the ingress and the mesh callers different canary shares, and a
  routing view (mesh.routing `routing_from_objects`, which reads the ingress's) would hide the
  mesh's. Not istiod's condition: both routes are valid; ml-mesh's own consistency error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mesh.checks.findings import (
    GATEWAY_API_BACKEND_UNRESOLVED,
    GATEWAY_API_CONFLICTING_ROUTES,
    GATEWAY_API_HOSTNAME_NOT_ATTACHED,
    GATEWAY_API_PARENT_NOT_ACCEPTED,
    GATEWAY_API_POOL_SPLIT,
    GATEWAY_API_ZERO_WEIGHTS,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.kinds import GATEWAY_API
from mesh.checks.objects import _dict, _labels, _list, _name, _spec, fqdn, hosts_overlap
from mesh.checks.paths import _finding, _model_path
from mesh.routing import (
    ModelRouting,
    _http_route_routing,
    is_model_route,
    pool_backends,
    pool_route_model,
)
from mesh.trace.objects import selects

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")
GATEWAY_KEY = f"Gateway.{GATEWAY_API}"
# The label the API server puts on every Namespace (NamespaceDefaultLabelName, Kubernetes 1.21+);
# Istio adds it too when it matches a selector (conversion.go `toNamespaceSet`).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Route kinds a listener supports per protocol (Istio gateway/conditions.go
# `generateSupportedKinds`: HTTP and HTTPS take HTTPRoute and GRPCRoute; the route kinds
# checked here need one of them).
_DEFAULT_KINDS = {"HTTP": ("HTTPRoute", "GRPCRoute"), "HTTPS": ("HTTPRoute", "GRPCRoute")}
# backendRef kinds Istio routes to (`buildDestination`), (group, kind).
_BACKEND_KINDS = {
    ("", "Service"),
    ("networking.istio.io", "Hostname"),
    ("multicluster.x-k8s.io", "ServiceImport"),
    ("inference.networking.k8s.io", "InferencePool"),
}
# Parent kinds Istio attaches routes to (`allowedParentReferences`), (group, kind).
_PARENT_KINDS = {
    (GATEWAY_API, "Gateway"),
    ("", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    (GATEWAY_API, "ListenerSet"),
}


@dataclass(frozen=True)
class ParentRef:
    """A parentRef with the schema's defaults (group gateway.networking.k8s.io, kind Gateway,
    namespace the route's): what the API server stores and istiod reads."""

    group: str
    kind: str
    namespace: str
    name: str
    section: str
    port: int | None
    position: int

    @classmethod
    def read(cls, ref: dict[str, Any], namespace: str, position: int) -> ParentRef:
        port = ref.get("port")
        return cls(
            str(ref.get("group", GATEWAY_API)),
            str(ref.get("kind", "Gateway")),
            str(ref.get("namespace") or namespace),
            str(ref.get("name", "")),
            str(ref.get("sectionName") or ""),
            port if isinstance(port, int) else None,
            position,
        )

    def describe(self) -> str:
        section = f" sectionName {self.section!r}" if self.section else ""
        return f"{self.kind} {self.namespace}/{self.name}{section}"


def _routes(index: _Index) -> Iterator[dict[str, Any]]:
    for kind in ROUTE_KINDS:
        yield from index.by_kind[kind]


def _route_path(index: _Index, route: dict[str, Any]) -> str | None:
    """A model's route points at the model; the gateway's own routes (the https redirect) at
    `gateway`."""
    return _model_path(index, route) or ("gateway" if index.is_stack(route) else None)


def _namespace_labels(index: _Index) -> dict[str, dict[str, str]]:
    """Labels of every Namespace the check knows, each with the name label the API server sets."""
    out = {}
    for namespace in index.by_kind["Namespace"]:
        name = _name(namespace)
        out[name] = {**{str(k): str(v) for k, v in _labels(namespace).items()}}
        out[name][NAMESPACE_NAME_LABEL] = name
    return out


def _namespace_admitted(
    allowed: dict[str, Any],
    gateway_namespace: str,
    route_namespace: str,
    namespaces: dict[str, dict[str, str]],
) -> bool | None:
    """Whether a listener's allowedRoutes.namespaces admits a route of `route_namespace`
    (conversion.go `namespacesFromSelector`: default Same; All; Selector over the Namespaces'
    labels). None: a selector on labels of a Namespace the check has not seen."""
    spec = _dict(allowed.get("namespaces"))
    origin = spec.get("from", "Same")
    if origin == "All":
        return True
    if origin == "Selector":
        selector = _dict(spec.get("selector"))
        labels = namespaces.get(route_namespace)
        if labels is None:
            labels = {NAMESPACE_NAME_LABEL: route_namespace}
            wanted = set(_dict(selector.get("matchLabels"))) | {
                str(_dict(e).get("key")) for e in _list(selector.get("matchExpressions"))
            }
            if wanted - {NAMESPACE_NAME_LABEL}:
                return None  # judged on labels we cannot see
        return selects(selector, labels)  # metav1 LabelSelectorAsSelector(...).Matches
    return route_namespace == gateway_namespace


def _kind_admitted(listener: dict[str, Any], route_kind: str) -> bool:
    """Istio `referenceAllowed` over `generateSupportedKinds` (gateway/conditions.go): the kinds
    the listener's protocol supports, narrowed to its allowedRoutes.kinds when it lists any
    (group defaulting to gateway.networking.k8s.io)."""
    if route_kind not in _DEFAULT_KINDS.get(str(listener.get("protocol")), ()):
        return False
    kinds = _list(_dict(listener.get("allowedRoutes")).get("kinds"))
    return not kinds or any(
        str(_dict(k).get("kind")) == route_kind
        and str(_dict(k).get("group", GATEWAY_API)) == GATEWAY_API
        for k in kinds
    )


def _hostname_admitted(listener: dict[str, Any], hostnames: list[str]) -> bool:
    """A listener hostname admits a route with a matching hostname (none on the route: `*`)."""
    wanted = listener.get("hostname")
    if not wanted:
        return True
    return any(hosts_overlap(str(wanted), h) for h in hostnames or ["*"])


def _listener_verdict(
    listener: dict[str, Any],
    route: dict[str, Any],
    ref: ParentRef,
    gateway_namespace: str,
    route_namespace: str,
    namespaces: dict[str, dict[str, str]],
) -> tuple[str, str] | None:
    """Why `listener` refuses the route (the condition reason and message istiod sets), or None
    if it admits it. Order as `referenceAllowed`: port, section, hostname, then namespace and
    kind (namespaces are part of the listener's host match, `buildHostnameMatch`)."""
    if ref.port is not None and ref.port != listener.get("port"):
        return "NoMatchingParent", f"port {ref.port} not found"
    name = str(listener.get("name", ""))
    if ref.section and ref.section != name:
        return "NoMatchingParent", f"sectionName {ref.section!r} not found"
    hostnames = [str(h) for h in _list(_spec(route).get("hostnames"))]
    if not _hostname_admitted(listener, hostnames):
        return (
            "NoMatchingListenerHostname",
            f"no hostnames matched parent hostname {listener.get('hostname')!r}",
        )
    allowed = _dict(listener.get("allowedRoutes"))
    admitted = _namespace_admitted(allowed, gateway_namespace, route_namespace, namespaces)
    if admitted is False:
        return (
            "NotAllowedByListeners",
            f"listener {name!r} does not admit routes of namespace {route_namespace!r} "
            f"(allowedRoutes.namespaces {_dict(allowed.get('namespaces')) or {'from': 'Same'}})",
        )
    if not _kind_admitted(listener, str(route.get("kind"))):
        return "NotAllowedByListeners", f"kind {route.get('kind')} is not allowed"
    return None


def gateway_api_parents(index: _Index) -> Iterator[Finding]:
    """MESH0020 (a parentRef istiod does not attach the route to) and MESH0021 (no route
    hostname matches the listener's): see the module docstring."""
    gateways = {f"{index.ns(g)}/{_name(g)}": g for g in index.by_kind[GATEWAY_KEY]}
    namespaces = _namespace_labels(index)
    for route in _routes(index):
        namespace = index.ns(route)
        path = _route_path(index, route)
        for i, raw in enumerate(_list(_spec(route).get("parentRefs"))):
            ref = ParentRef.read(_dict(raw), namespace, i)
            where = f"parentRefs[{i}] {ref.describe()}"
            if (ref.group, ref.kind) not in _PARENT_KINDS:
                hint = (
                    ' (a mesh parent is group: "", kind: Service; without `group` the API '
                    "server defaults it to gateway.networking.k8s.io)"
                    if ref.kind == "Service"
                    else ""
                )
                message = (
                    f"{where}: unsupported parent {ref.group}/{ref.kind}; istiod ignores the "
                    f"reference and the route gets no traffic from it{hint}"
                )
                yield _finding(
                    index, route, GATEWAY_API_PARENT_NOT_ACCEPTED, "error", path, message
                )
                continue
            if ref.kind == "Service":
                if fqdn(ref.name, ref.namespace) not in index.services:
                    message = (
                        f"{where}: Accepted=False, parent service {ref.name!r} not found in "
                        f"namespace {ref.namespace!r}"
                    )
                    yield _finding(
                        index, route, GATEWAY_API_PARENT_NOT_ACCEPTED, "error", path, message
                    )
                continue
            if ref.kind != "Gateway":
                continue  # ServiceEntry and ListenerSet parents: not rendered by ml-mesh
            gateway = gateways.get(f"{ref.namespace}/{ref.name}")
            if gateway is None:
                message = f"{where}: Accepted=False, NoMatchingParent: the Gateway does not exist"
                yield _finding(
                    index, route, GATEWAY_API_PARENT_NOT_ACCEPTED, "error", path, message
                )
                continue
            listeners = [_dict(x) for x in _list(_spec(gateway).get("listeners"))]
            refusals = [
                _listener_verdict(listener, route, ref, ref.namespace, namespace, namespaces)
                for listener in listeners
            ]
            if not listeners or any(r is None for r in refusals):
                continue
            reasons = [r for r in refusals if r is not None]
            # The most telling refusal: past the section/port match, as conditions.go ranks
            # (a NoMatchingParent of the other listeners says nothing about the named one).
            named = [r for r in reasons if r[0] != "NoMatchingParent"] or reasons
            reason, detail = named[0]
            code = (
                GATEWAY_API_HOSTNAME_NOT_ATTACHED
                if reason == "NoMatchingListenerHostname"
                else GATEWAY_API_PARENT_NOT_ACCEPTED
            )
            message = f"{where}: Accepted=False, {reason}: {detail}"
            yield _finding(index, route, code, "error", path, message)


def _backend_refs(route: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, backendRef) of every rule's backendRefs and RequestMirror filters (rule-level
    and per-backend)."""
    for r, rule in enumerate(map(_dict, _list(_spec(route).get("rules")))):
        for b, backend in enumerate(map(_dict, _list(rule.get("backendRefs")))):
            yield f"rules[{r}].backendRefs[{b}]", backend
            for f, filt in enumerate(map(_dict, _list(backend.get("filters")))):
                mirror = _dict(filt.get("requestMirror")).get("backendRef")
                if mirror is not None:
                    where = f"rules[{r}].backendRefs[{b}].filters[{f}].requestMirror.backendRef"
                    yield where, _dict(mirror)
        for f, filt in enumerate(map(_dict, _list(rule.get("filters")))):
            mirror = _dict(filt.get("requestMirror")).get("backendRef")
            if mirror is not None:
                yield f"rules[{r}].filters[{f}].requestMirror.backendRef", _dict(mirror)


def _grant_allows(
    index: _Index, route: dict[str, Any], target_ns: str, kind: tuple[str, str], name: str
) -> bool:
    """A ReferenceGrant in `target_ns` lets routes of the route's kind in `namespace` reach
    the target (Istio `ReferenceGrants.BackendAllowed`)."""
    for grant in index.by_kind["ReferenceGrant"]:
        if index.ns(grant) != target_ns:
            continue
        spec = _spec(grant)
        sources = any(
            _dict(f).get("group") == GATEWAY_API
            and _dict(f).get("kind") == route.get("kind")
            and _dict(f).get("namespace") == index.ns(route)
            for f in _list(spec.get("from"))
        )
        targets = any(
            (str(_dict(t).get("group", "")), str(_dict(t).get("kind"))) == kind
            and _dict(t).get("name") in (None, "", name)
            for t in _list(spec.get("to"))
        )
        if sources and targets:
            return True
    return False


def _service_ports(service: dict[str, Any]) -> set[int]:
    return {p.get("port") for p in map(_dict, _list(_spec(service).get("ports"))) if "port" in p}


def gateway_api_backends(index: _Index) -> Iterator[Finding]:
    """MESH0022: backendRefs (and mirror backendRefs) that istiod cannot route to."""
    for route in _routes(index):
        path = _route_path(index, route)
        for where, ref in _backend_refs(route):
            problem = _backend_problem(index, route, ref)
            if problem is not None:
                message = f"{where} {problem}"
                yield _finding(index, route, GATEWAY_API_BACKEND_UNRESOLVED, "error", path, message)


def _backend_problem(index: _Index, route: dict[str, Any], ref: dict[str, Any]) -> str | None:
    """What istiod's `buildDestination` answers for one backendRef, or None if it resolves."""
    namespace = index.ns(route)
    group, kind = str(ref.get("group", "")), str(ref.get("kind", "Service"))
    name = str(ref.get("name", ""))
    target_ns = str(ref.get("namespace") or namespace)
    label = f"{kind} {target_ns}/{name}"
    if (group, kind) not in _BACKEND_KINDS:
        return (
            f"{label}: ResolvedRefs=False, InvalidKind: referencing unsupported backendRef: "
            f"group {group!r} kind {kind!r}"
        )
    if target_ns != namespace and not _grant_allows(index, route, target_ns, (group, kind), name):
        return (
            f"{label}: ResolvedRefs=False, RefNotPermitted: not accessible to a "
            f"{route.get('kind')} in namespace {namespace!r} (missing a ReferenceGrant in "
            f"{target_ns!r})"
        )
    if (group, kind) != ("", "Service"):
        return None  # InferencePool, Hostname, ServiceImport: not rendered by ml-mesh
    service = index.services.get(fqdn(name, target_ns))
    if service is None:
        return f"{label}: ResolvedRefs=False, BackendNotFound: backend({fqdn(name, target_ns)}) not found"
    port = ref.get("port")
    if port is None:
        return f"{label}: ResolvedRefs=False: port is required in backendRef"
    if port not in (ports := _service_ports(service)):
        return (
            f"{label}: port {port} is not a port of the Service ({sorted(ports)}): istiod "
            "routes to a cluster that does not exist and requests fail with 503"
        )
    return None


def gateway_api_weights(index: _Index) -> Iterator[Finding]:
    """MESH0023: a rule with backendRefs that all weigh 0 answers every request with 500
    (conversion.go `convertHTTPRoute`, `weightSum` with weight defaulting to 1)."""
    for route in _routes(index):
        for r, rule in enumerate(map(_dict, _list(_spec(route).get("rules")))):
            backends = [_dict(b) for b in _list(rule.get("backendRefs"))]
            if backends and sum(int(b.get("weight", 1) or 0) for b in backends) == 0:
                names = ", ".join(str(b.get("name")) for b in backends)
                message = (
                    f"rules[{r}]: every backendRef weighs 0 ({names}): istiod answers each "
                    "request of the rule with a direct response 500"
                )
                yield _finding(
                    index, route, GATEWAY_API_ZERO_WEIGHTS, "error", _route_path(index, route),
                    message,
                )  # fmt: skip


def _match_keys(rule: dict[str, Any]) -> list[str]:
    """Each match of an HTTPRoute rule in a canonical form (schema defaults filled: path
    PathPrefix `/`, header and query types Exact), so equal matches compare equal."""
    matches = _list(rule.get("matches")) or [{}]
    out = []
    for match in map(_dict, matches):
        path = {"type": "PathPrefix", "value": "/", **_dict(match.get("path"))}
        headers = sorted(
            (str(h.get("name", "")).lower(), h.get("type", "Exact"), h.get("value"))
            for h in map(_dict, _list(match.get("headers")))
        )
        query = sorted(
            (str(q.get("name", "")), q.get("type", "Exact"), q.get("value"))
            for q in map(_dict, _list(match.get("queryParams")))
        )
        key = {"path": path, "headers": headers, "query": query, "method": match.get("method")}
        out.append(json.dumps(key, sort_keys=True))
    return out


def _attachments(
    index: _Index, route: dict[str, Any], gateways: dict[str, dict[str, Any]]
) -> Iterator[tuple[str, str]]:
    """(parent, hostname) the route is attached under: a Gateway listener (`ns/gw/listener`)
    with each route hostname (or `*`), or a mesh Service (`Service ns/name`; hostnames do not
    apply to mesh parents, GAMMA)."""
    namespace = index.ns(route)
    hostnames = [str(h) for h in _list(_spec(route).get("hostnames"))] or ["*"]
    for i, raw in enumerate(_list(_spec(route).get("parentRefs"))):
        ref = ParentRef.read(_dict(raw), namespace, i)
        if (ref.group, ref.kind) == ("", "Service"):
            yield f"Service {ref.namespace}/{ref.name}", "*"
        elif (ref.group, ref.kind) == (GATEWAY_API, "Gateway"):
            gateway = gateways.get(f"{ref.namespace}/{ref.name}")
            for listener in map(_dict, _list(_spec(gateway or {}).get("listeners"))):
                name = str(listener.get("name", ""))
                if ref.section and ref.section != name:
                    continue
                for host in hostnames:
                    if _hostname_admitted(listener, [host]):
                        yield f"Gateway {ref.namespace}/{ref.name} listener {name}", host


def _age(index: _Index, route: dict[str, Any]) -> tuple[str, str]:
    """The Gateway API's tie-break: the oldest creationTimestamp (a stack object not yet
    created is the newest), then `namespace/name` alphabetically."""
    stamp = str(_dict(route.get("metadata")).get("creationTimestamp") or "~")
    return stamp, f"{index.ns(route)}/{_name(route)}"


def gateway_api_conflicts(index: _Index) -> Iterator[Finding]:
    """MESH0024: two HTTPRoutes on one parent and hostname with an equal match: the older
    one (then the first by namespace/name) takes the requests; the other's rule never does."""
    gateways = {f"{index.ns(g)}/{_name(g)}": g for g in index.by_kind[GATEWAY_KEY]}
    seen: dict[tuple[str, str, str], list[tuple[dict[str, Any], int]]] = defaultdict(list)
    for route in index.by_kind["HTTPRoute"]:
        attached = set(_attachments(index, route, gateways))
        for r, rule in enumerate(map(_dict, _list(_spec(route).get("rules")))):
            for key in set(_match_keys(rule)):
                for parent, host in attached:
                    seen[(parent, host, key)].append((route, r))
    reported: set[tuple[int, int, str]] = set()
    for (parent, host, key), rules in sorted(seen.items(), key=lambda item: item[0]):
        routes = {id(route): route for route, _ in rules}
        if len(routes) < 2:
            continue
        winner = min(routes.values(), key=lambda route: _age(index, route))
        for route, r in rules:
            if route is winner or (id(route), r, parent) in reported:
                continue
            reported.add((id(route), r, parent))
            where = f"{parent}" + (f" hostname {host}" if host != "*" else "")
            message = (
                f"rules[{r}]: on {where} the match {json.loads(key)} is also HTTPRoute "
                f"{index.ns(winner)}/{_name(winner)}'s, which is older or first by name: it "
                "takes those requests and this rule never does"
            )
            yield _finding(
                index, route, GATEWAY_API_CONFLICTING_ROUTES, "warning",
                _route_path(index, route), message,
            )  # fmt: skip


def _split(routing: ModelRouting) -> str:
    """A route's weighted split and match rules as a reviewer reads them."""
    parts = [f"{v} {r.weight:g}%" for v, r in routing.versions.items() if r.weight > 0]
    split = " / ".join(parts) or "nothing weighted"
    rules = sorted((rule, v) for v, r in routing.versions.items() for rule in r.matches)
    return split + "".join(f", match {rule!r} -> {v}" for rule, v in rules)


def _routed(routing: ModelRouting) -> dict[str, tuple[float, tuple[str, ...]]]:
    return {
        v: (r.weight, tuple(sorted(r.matches)))
        for v, r in routing.versions.items()
        if r.weight or r.matches
    }


def gateway_api_pool_split(index: _Index) -> Iterator[Finding]:
    """MESH0026: a model's Gateway route to its InferencePools (`<m>-pools`) and its mesh
    route (`<m>`, on the model Service) send the versions different shares or match rules.
    Versions are named as mesh.routing names them (the pool's or Service's selector, else the
    `<m>-` prefix), weights compared as the relative shares Istio gives them."""
    routes = index.by_kind["HTTPRoute"]
    known = [*index.by_kind["Service"], *index.by_kind["InferencePool"]]
    mesh_routes = {(index.ns(r), _name(r)): r for r in routes if is_model_route(r)}
    for route in routes:
        if not pool_backends(route) or is_model_route(route):
            continue
        model = pool_route_model(route)
        mesh = mesh_routes.get((index.ns(route), model))
        if mesh is None:
            continue
        ingress = _http_route_routing(route, known, model)
        callers = _http_route_routing(mesh, known, model)
        if _routed(ingress) == _routed(callers):
            continue
        message = (
            f"the Gateway's requests go {_split(ingress)} (InferencePools) but the mesh "
            f"callers' go {_split(callers)} (HTTPRoute {index.ns(mesh)}/{_name(mesh)}): the "
            "two routes of a model with pools split alike (mesh/gatewayapi/routes.py); set "
            "the split in the stack config and render both again"
        )
        yield _finding(
            index, route, GATEWAY_API_POOL_SPLIT, "error", _route_path(index, route), message
        )
