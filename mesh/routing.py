"""Who gets which requests, read back from rendered objects.

`mesh diff` compares a base rendered by the base's own code with the working tree, so the
routing of both sides is read from what they render (VirtualServices, DestinationRules,
HTTPRoutes and their version Services and InferencePools, Canaries), never from config that
the other side's code might read differently. Roles (stable, canary) are not in the objects;
they come from the stack config where it can be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.config import StackConfig

ML_MESH = "ml-mesh"
FLAGGER = "flagger"


@dataclass(frozen=True)
class VersionRouting:
    weight: float = 0.0  # percent of the weighted route
    matches: tuple[str, ...] = ()  # names of the match rules that send requests here
    mirror: float = 0.0  # percent of the weighted route copied here

    def reasons(self) -> list[str]:
        found = [f"receives {self.weight:g}% of traffic"] if self.weight > 0 else []
        found += [f"receives the requests of match rule {rule!r}" for rule in self.matches]
        if self.mirror > 0:
            found.append(f"receives {self.mirror:g}% mirrored traffic")
        return found


@dataclass(frozen=True)
class ModelRouting:
    name: str
    owner: str  # ML_MESH or FLAGGER
    hosts: tuple[str, ...]
    versions: dict[str, VersionRouting]  # every deployed version, routed or not
    roles: dict[str, str] = field(default_factory=dict)  # version -> stable/canary/target
    analysis: dict | None = None  # Flagger's analysis block

    def routed(self) -> dict[str, str]:
        """Versions that receive requests, with the first reason why."""
        if self.owner == FLAGGER:
            return {v: "is the Flagger target" for v in self.versions}
        return {v: r.reasons()[0] for v, r in self.versions.items() if r.reasons()}


def _by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == kind}


def _shares(destinations: list[dict]) -> dict[str, float]:
    """Istio weights are relative (RULES.md 18); a lone destination takes everything."""
    if len(destinations) == 1:
        return {destinations[0]["destination"].get("subset", ""): 100.0}
    total = sum(d.get("weight", 0) for d in destinations) or 1
    return {
        d["destination"].get("subset", ""): d.get("weight", 0) * 100 / total for d in destinations
    }


def _gateway_routes(vs: dict) -> list[dict]:
    """The routes that requests through the gateway (and the REST port) can take: those whose
    matches do not select another Service port."""
    routes = vs.get("spec", {}).get("http", [])
    return [r for r in routes if not any("port" in m for m in r.get("match", []))]


def _ml_mesh_routing(vs: dict, rule: dict | None) -> ModelRouting:
    subsets = [s["name"] for s in (rule or {}).get("spec", {}).get("subsets", [])]
    weights: dict[str, float] = {}
    matches: dict[str, list[str]] = {}
    mirrored: dict[str, float] = {}
    for route in _gateway_routes(vs):
        if route.get("match"):
            for destination in route.get("route", []):
                subset = destination["destination"].get("subset", "")
                matches.setdefault(subset, []).append(
                    route["match"][0].get("name") or route.get("name", "unnamed")
                )
            continue
        weights = _shares(route.get("route", []))
        if "mirror" in route:
            percent = route.get("mirrorPercentage", {}).get("value", 100.0)
            mirrored[route["mirror"].get("subset", "")] = float(percent)
    names = sorted(set(subsets) | set(weights) | set(matches) | set(mirrored))
    versions = {
        v: VersionRouting(weights.get(v, 0.0), tuple(matches.get(v, ())), mirrored.get(v, 0.0))
        for v in names
    }
    hosts = tuple(h for h in vs["spec"].get("hosts", []) if not h.endswith(".svc.cluster.local"))
    return ModelRouting(vs["metadata"]["name"], ML_MESH, hosts, versions)


def is_grpc_form(rule: dict) -> bool:
    """A rule that repeats another for gRPC requests (mesh/gatewayapi/routes.py): every match
    requires content-type application/grpc. Requests through the gateway's REST handling and
    the REST port never take it, like the port-selected routes of a VirtualService."""
    matches = rule.get("matches") or []
    return bool(matches) and all(
        any(
            h.get("name", "").lower() == "content-type" and "application/grpc" in h.get("value", "")
            for h in m.get("headers") or []
        )
        for m in matches
    )


def http_route_rules(route: dict) -> list[dict]:
    """The rules REST requests can take, in written order (the gRPC forms left out)."""
    return [r for r in route.get("spec", {}).get("rules", []) if not is_grpc_form(r)]


def default_rule(route: dict) -> dict | None:
    """The weighted rule: the first without conditions takes every request no match rule
    took (Istio's sort is stable and keeps equal rules in written order, conversion.go
    `sortHTTPRoutes`)."""
    rules = http_route_rules(route)
    return next((r for r in rules if not has_conditions(r) and r.get("backendRefs")), None)


def rule_label(route: dict, rule: dict, index: int) -> str:
    """A match rule's config name: its rule name without the `-<REST port>` suffix
    mesh/gatewayapi/routes.py adds (the weighted rule is named after that port)."""
    default = default_rule(route)
    suffix = f"-{default['name']}" if default is not None and default.get("name") else ""
    return (rule.get("name") or f"rule {index}").removesuffix(suffix)


def has_conditions(rule: dict) -> bool:
    """Whether a rule selects requests by more than the path `/` (a match rule)."""
    return any(
        m.get("headers")
        or m.get("queryParams")
        or m.get("method")
        or (m.get("path") or {}).get("value", "/") != "/"
        for m in rule.get("matches") or []
    )


def _backend_shares(refs: list[dict]) -> dict[str, float]:
    """HTTPRoute weights are relative (default 1) and a 0 weight gets nothing; a lone
    backend with weight takes everything (Istio conversion.go `buildHTTPDestination`). All
    at 0: Istio answers 500, no version gets traffic."""
    weights = {r.get("name", ""): float(r.get("weight", 1)) for r in refs}
    total = sum(weights.values())
    if total == 0:
        return dict.fromkeys(weights, 0.0)
    return {name: weight * 100 / total for name, weight in weights.items()}


def _mirror_percent(mirror: dict) -> float:
    """`percent`, or `fraction` (denominator default 100), else everything (Gateway API)."""
    if "percent" in mirror:
        return float(mirror["percent"])
    fraction = mirror.get("fraction")
    if fraction is not None:
        return 100 * fraction.get("numerator", 0) / fraction.get("denominator", 100)
    return 100.0


def version_services(objects: list[dict], model: str) -> dict[str, str]:
    """Service name -> version, for the Services that select one version of `model`."""
    found = {}
    for obj in objects:
        selector = obj.get("spec", {}).get("selector") or {}
        if obj.get("kind") == "Service" and selector.get("app") == model and "version" in selector:
            found[obj["metadata"]["name"]] = selector["version"]
    return found


def version_pools(objects: list[dict], model: str) -> dict[str, str]:
    """InferencePool name -> version, for the pools whose `selector.matchLabels` select one
    version of `model` (the chart's InferencePool, mesh/gatewayapi/pools.py; render's
    objects do not hold it, `Plan.cluster_objects()` does)."""
    found = {}
    for obj in objects:
        labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        if (
            obj.get("kind") == "InferencePool"
            and labels.get("app") == model
            and "version" in labels
        ):
            found[obj["metadata"]["name"]] = labels["version"]
    return found


def version_of(services: dict[str, str], model: str, service: str) -> str:
    return services.get(service) or service.removeprefix(f"{model}-")


def pool_backends(route: dict) -> bool:
    """Whether a route sends to InferencePools (the `<model>-pools` route of
    mesh/gatewayapi/routes.py `pool_route`)."""
    return any(
        ref.get("kind") == "InferencePool"
        for rule in route.get("spec", {}).get("rules", [])
        for ref in rule.get("backendRefs") or []
    )


def pool_route_model(route: dict) -> str:
    """The model of a pool route: its `app` label, else its name without `-pools`."""
    metadata = route.get("metadata", {})
    return (metadata.get("labels") or {}).get("app") or metadata["name"].removesuffix("-pools")


def _http_route_routing(route: dict, objects: list[dict], model: str | None = None) -> ModelRouting:
    """The routing of a model's HTTPRoute: the weighted rule's relative weights, the match
    rules (named without the `-<port>` suffix mesh/gatewayapi/routes.py gives them) and the
    mirror, from the REST forms of the rules (the gRPC forms repeat them). A backendRef of
    kind InferencePool names its version by the pool (`version_pools`, else the `<model>-`
    prefix: `pool_name`), any other by its Service (`version_services`)."""
    name = model or route["metadata"]["name"]
    services = version_services(objects, name)
    pools = version_pools(objects, name)

    def version(ref: dict) -> str:
        known = pools if ref.get("kind") == "InferencePool" else services
        return version_of(known, name, ref.get("name", ""))

    rules = http_route_rules(route)
    default = default_rule(route)
    weights: dict[str, float] = {}
    matches: dict[str, list[str]] = {}
    mirrored: dict[str, float] = {}
    for index, rule in enumerate(rules):
        refs = rule.get("backendRefs") or []
        if has_conditions(rule):
            label = rule_label(route, rule, index)
            for ref in refs:
                matches.setdefault(version(ref), []).append(label)
            continue
        if rule is not default:
            continue  # after the default rule: never reached
        shares = _backend_shares(refs)
        weights = {version(ref): shares[ref.get("name", "")] for ref in refs}
        for item in rule.get("filters") or []:
            mirror = item.get("requestMirror")
            if item.get("type") == "RequestMirror" and mirror:
                mirrored[version(mirror.get("backendRef", {}))] = _mirror_percent(mirror)
    deployed = set(services.values()) | set(pools.values())
    names = sorted(deployed | set(weights) | set(matches) | set(mirrored))
    versions = {
        v: VersionRouting(weights.get(v, 0.0), tuple(matches.get(v, ())), mirrored.get(v, 0.0))
        for v in names
    }
    return ModelRouting(name, ML_MESH, tuple(route["spec"].get("hostnames", [])), versions)


def is_model_route(route: dict) -> bool:
    """A model's HTTPRoute: it binds a Service parent (GAMMA) and has backends; the HTTPS
    redirect route has neither."""
    spec = route.get("spec", {})
    return any(p.get("kind") == "Service" for p in spec.get("parentRefs", [])) and any(
        r.get("backendRefs") for r in spec.get("rules", [])
    )


def _flagger_routing(canary: dict, target: dict | None) -> ModelRouting:
    labels = (
        (target or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    )
    version = labels.get("version", "?")
    spec = canary.get("spec", {})
    return ModelRouting(
        canary["metadata"]["name"],
        FLAGGER,
        tuple(spec.get("service", {}).get("hosts", [])),
        {version: VersionRouting()},
        {version: "target"},
        spec.get("analysis", {}),
    )


def routing_from_objects(
    objects: list[dict], config: StackConfig | None = None
) -> dict[str, ModelRouting]:
    """Per model, the routing the objects set up; with roles when `config` is given.

    A model with pools has two HTTPRoutes (mesh/gatewayapi/routes.py): `<m>` on the model
    Service (mesh callers, to the version Services) and `<m>-pools` on the Gateway (to the
    versions' InferencePools). Its routing is the ingress's: the pool route's weights, match
    rules, mirror and hostnames, versions named by their pools; the versions the mesh route
    or the version Services know are listed too (unrouted where the pool route sends them
    nothing). The builders give both routes the same split; where they differ (a hand edit,
    a bad base) this does not pick one silently: `mesh check` reports MESH0026
    (mesh.checks.gateway_api `gateway_api_pool_split`), and `mesh diff` refuses a head that
    fails it."""
    rules = _by_kind(objects, "DestinationRule")
    deployments = _by_kind(objects, "Deployment")
    found = {
        name: _ml_mesh_routing(vs, rules.get(name))
        for name, vs in _by_kind(objects, "VirtualService").items()
    }
    routes = _by_kind(objects, "HTTPRoute")
    for name, route in routes.items():
        if is_model_route(route):
            found[name] = _http_route_routing(route, objects)
    for route in routes.values():
        if pool_backends(route) and not is_model_route(route):
            model = pool_route_model(route)
            ingress = _http_route_routing(route, objects, model)
            mesh = found.get(model)
            versions = dict(ingress.versions)
            for version in mesh.versions if mesh is not None else ():
                versions.setdefault(version, VersionRouting())
            found[model] = ModelRouting(
                model, ML_MESH, ingress.hosts, dict(sorted(versions.items()))
            )
    for name, canary in _by_kind(objects, "Canary").items():
        found[name] = _flagger_routing(canary, deployments.get(name))
    if config is not None:
        found = {name: _with_roles(routing, config) for name, routing in found.items()}
    return dict(sorted(found.items()))


def _with_roles(routing: ModelRouting, config: StackConfig) -> ModelRouting:
    model = config.models.get(routing.name)
    if model is None or routing.owner == FLAGGER:
        return routing
    roles = {model.stable: "stable"}
    if model.canary is not None:
        roles[model.canary.version] = "canary"
    return ModelRouting(routing.name, routing.owner, routing.hosts, routing.versions, roles)


def largest_flagger_step(analysis: dict | None) -> int:
    """The largest weight increase Flagger makes in one interval, from a Canary's analysis."""
    analysis = analysis or {}
    steps = analysis.get("stepWeights")
    if steps:
        return max(b - a for a, b in zip([0, *steps], steps, strict=False))
    return int(analysis.get("stepWeight", 0))


def describe_analysis(analysis: dict | None) -> str:
    analysis = analysis or {}
    every = analysis.get("interval", "?")
    if analysis.get("stepWeights"):
        steps = "/".join(f"{s}" for s in analysis["stepWeights"])
        return f"Flagger analysis: {steps}% every {every}"
    step, top = analysis.get("stepWeight", "?"), analysis.get("maxWeight", "?")
    return f"Flagger analysis: +{step}% every {every} up to {top}%"
