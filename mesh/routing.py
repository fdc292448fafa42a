"""Who gets which requests, read back from rendered objects.

`mesh diff` compares a base rendered by the base's own code with the working tree, so the
routing of both sides is read from what they render (VirtualServices, DestinationRules,
Canaries), never from config that the other side's code might read differently. Roles (stable,
canary) are not in the objects; they come from the stack config where it can be read.
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
    """Per model, the routing the objects set up; with roles when `config` is given."""
    rules = _by_kind(objects, "DestinationRule")
    deployments = _by_kind(objects, "Deployment")
    found = {
        name: _ml_mesh_routing(vs, rules.get(name))
        for name, vs in _by_kind(objects, "VirtualService").items()
    }
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
