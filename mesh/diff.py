"""`python -m mesh diff`: what a change does to a stack, as Markdown for a pull request, and
whether it is safe.

Both sides are rendered objects (the base by the base's own code, see `mesh.gitbase`), so the
report shows exactly what `pulumi up` would change. The gates refuse the changes that drop
requests, move too much traffic at once or loosen the protections they are checked by; each
can be overridden on purpose by name. A head whose mesh checks (the policy pack's rules
included) have errors is refused too, and that cannot be overridden: `pulumi preview` and
`pulumi up` refuse the same plan (the program gates on the checks, the pack is mandatory), so an
`--allow` would only hide what the deploy will refuse.

A base that does not render (a pull request that repairs a broken main) still gets a report:
the head's traffic, journeys, checks and objects, the base's error at the top, and the gates
that need no base objects (`policy-change`, the head's checks); the others cannot run.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from mesh.charts import modelled_objects, release
from mesh.checks import Finding, errors
from mesh.config import StackConfig
from mesh.gitbase import SAFE_LOADER
from mesh.graph import gateway_name, mermaid
from mesh.journeys import Journey, journeys, mesh_settings
from mesh.protections import Protections, loosened, of_side
from mesh.render import to_yaml
from mesh.routing import (
    FLAGGER,
    ModelRouting,
    VersionRouting,
    describe_analysis,
    has_conditions,
    http_route_rules,
    is_model_route,
    largest_flagger_step,
    routing_from_objects,
    rule_label,
    version_of,
    version_services,
)
from mesh.trace import Objects, pools
from mesh.trace.flagger import expand
from policy.rules import (
    REQUEST_CONDITIONS,
    is_weighted_route,
    pack_loosenings,
    stricter_pack_config,
)

REMOVE_ROUTED_VERSION = "remove-routed-version"
WEIGHT_STEP = "weight-step"
MATCH_CHANGE = "match-change"
SELECTOR_CHANGE = "selector-change"
OWNERSHIP_SWITCH = "ownership-switch"
JOURNEY_BROKEN = "journey-broken"
POLICY_CHANGE = "policy-change"
# Not a gate: the head's own check errors, refused whatever `--allow` says.
HEAD_CHECKS = "checks"
GATES = {
    REMOVE_ROUTED_VERSION: "a version that receives traffic at the base is removed",
    WEIGHT_STEP: "protected stack: a canary weight step above maxWeightStep, or 0 -> 100",
    MATCH_CHANGE: "protected stack: a match rule is added, or its version, conditions or order "
    "change (the share of requests it takes cannot be known offline)",
    SELECTOR_CHANGE: "a Deployment's selector changes (Kubernetes replaces it: downtime)",
    OWNERSHIP_SWITCH: "a model's routing moves between ml-mesh and Flagger",
    JOURNEY_BROKEN: "a journey the config promises (mesh trace) works at the base and fails after",
    POLICY_CHANGE: "the change loosens a protection of the base (protected, maxWeightStep, "
    "images.requireDigests, security.*) or its policy pack config (policy/config.json: an "
    "enforcement level lowered, maxWeight raised)",
}
# The gates that compare the base's objects with the head's: they cannot run when the base
# does not render.
OBJECT_GATES = (
    REMOVE_ROUTED_VERSION,
    WEIGHT_STEP,
    MATCH_CHANGE,
    SELECTOR_CHANGE,
    OWNERSHIP_SWITCH,
    JOURNEY_BROKEN,
)
MAX_LISTED_FIELDS = 12


@dataclass(frozen=True)
class Side:
    """One side of the diff: its objects and routing, its config where it can be read, and
    the protections it applies (`exists` False: a base without the stack, which has none)."""

    objects: list[dict]
    routing: dict[str, ModelRouting]
    config: StackConfig | None
    raw: dict[str, Any] | None  # None: the stack file does not read (strictest protections)
    protections: Protections
    exists: bool = True
    # The policy pack's config (policy/config.json) of this side; None: not known (not read,
    # or `pack_error` says why it does not read).
    pack: dict[str, Any] | None = None
    pack_error: str | None = None
    # The Helm releases as objects (mesh.charts `HelmChart.as_object`), compared with the
    # objects; None: not known (a base whose code cannot list them).
    charts: list[dict] | None = None


def side(
    objects: list[dict],
    config: StackConfig | None,
    raw: dict[str, Any] | None,
    exists: bool = True,
    pack: dict[str, Any] | None = None,
    pack_error: str | None = None,
    charts: list[dict] | None = None,
) -> Side:
    routing = routing_from_objects(objects, config)
    protections = of_side(config, raw)
    return Side(objects, routing, config, raw, protections, exists, pack, pack_error, charts)


def compared_objects(base: Side, head: Side) -> tuple[list[dict], list[dict]]:
    """The objects of both sides with their Helm releases, where both sides know them."""
    if base.charts is None or head.charts is None:
        return base.objects, head.objects
    return (
        [*base.objects, *(release(c) for c in base.charts)],
        [*head.objects, *(release(c) for c in head.charts)],
    )


def charts_unknown_section(base: Side, head: Side) -> list[str]:
    """A note where the base's code cannot list its Helm releases and the head has some."""
    if base.charts is not None or not head.charts:
        return []
    names = ", ".join(f"`Chart/{c['metadata']['name']}`" for c in head.charts)
    return [
        f"> [!NOTE]\n> The base's code cannot list its Helm releases (`mesh render --charts`): "
        f"{names} not compared.",
        "",
    ]


PLAIN = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Whether `value` is made of dicts, lists, strings, numbers, booleans and None only, of
    exactly those types: what YAML reads back unchanged (render quotes every string that would
    read back as something else; tests/test_render.py pins that). A loop over a stack of
    containers, leaves checked in place: a plan has some 200,000 values, most of them leaves."""
    pending = [value]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                if type(key) not in PLAIN:
                    return False
                kind = type(item)
                if kind is dict or kind is list:
                    pending.append(item)
                elif kind not in PLAIN:
                    return False
        elif kind is list:
            for item in value:
                kind = type(item)
                if kind is dict or kind is list:
                    pending.append(item)
                elif kind not in PLAIN:
                    return False
        elif kind not in PLAIN:
            return False
    return True


def normalized(objects: list[dict]) -> list[dict]:
    """Objects as their YAML reads back, so both sides compare with the same types. A plan's
    objects are plain data, which reads back as it is, so only other objects (tuples, string
    subclasses) take the round trip through YAML."""
    return [
        doc
        for obj in objects
        for doc in ([obj] if _plain(obj) else yaml.load_all(to_yaml([obj]), Loader=SAFE_LOADER))
        if doc
    ]


@dataclass(frozen=True)
class JourneyPair:
    """One journey traced through the base's objects and the head's; `promised` when the
    head's config asks it (a question only the base asks shows, but gates nothing)."""

    before: Journey
    after: Journey
    promised: bool


@dataclass(frozen=True)
class Refusal:
    gate: str
    reason: str


def policy(base: Side, head: Side) -> Protections:
    """The stricter of both sides' effective protections (a base without the stack has none):
    a change cannot loosen the rules it is checked by."""
    return base.protections.stricter(head.protections) if base.exists else head.protections


def _base_pack(pack: dict[str, Any] | None, error: str | None) -> dict[str, Any] | None:
    """The base's pack config to hold a change to (`Side.pack`, `Side.pack_error`): its own,
    or where it does not read the pack's defaults (every policy mandatory, maxWeight 50: no
    config loosens a policy further, and a cap of 0 would refuse every canary without a way to
    override it)."""
    if pack is not None:
        return pack
    return {} if error is not None else None


def pack_policy(base: Side, head: Side) -> dict[str, Any] | None:
    """The pack config the head's plan is checked with: the stricter of the base's and the
    head's (`rules.stricter_pack_config`), so a change cannot loosen the pack it is checked by;
    None (the working tree's file) where the head's is not known."""
    return stricter_pack(base.pack, base.pack_error, head.pack)


def stricter_pack(
    base_pack: dict[str, Any] | None, base_error: str | None, head_pack: dict[str, Any] | None
) -> dict[str, Any] | None:
    """`pack_policy` of the pack configs alone: `mesh diff` checks the head's plan while the
    base renders, with the base's pack config read from its exported tree."""
    before = _base_pack(base_pack, base_error)
    if head_pack is None or before is None:
        return head_pack
    return stricter_pack_config(before, head_pack)


def pack_changes(base: Side, head: Side) -> list[Refusal]:
    """Each setting of the base's policy pack config that the head loosens (the pack config is
    the repository's, so this holds for a new stack too)."""
    before = _base_pack(base.pack, base.pack_error)
    if head.pack is None or before is None:
        return []
    return [
        Refusal(
            POLICY_CHANGE,
            f"policy/config.json: {key}: {was} -> {now} loosens the policy pack of the base "
            "(this change is still checked by the stricter value); loosen it in a change of "
            "its own, on purpose",
        )
        for key, was, now in pack_loosenings(before, head.pack)
    ]


def policy_changes(base: Side, head: Side) -> list[Refusal]:
    """Each protection of the base the head loosens, before -> after (tightening is free), the
    policy pack's config included."""
    if not base.exists:
        return pack_changes(base, head)
    unreadable = set(base.protections.unreadable)
    return [
        Refusal(
            POLICY_CHANGE,
            f"{change.path}: {change.before} -> {change.after} loosens a protection of the "
            "base (this change is still checked by the stricter value); loosen it in a change "
            "of its own, on purpose"
            if change.path not in unreadable
            else f"{change.path}: the base's value cannot be read and counts as its strictest, "
            f"{change.before}; the head's {change.after} may loosen it: allow it on purpose "
            "once you know the base's value (`git show <base>:<stack file>`)",
        )
        for change in loosened(base.protections, head.protections)
    ] + pack_changes(base, head)


def check_refusals(findings: list[Finding]) -> list[Refusal]:
    """The head's mesh check errors (the policy pack's rules included): never overridable."""
    return [Refusal(HEAD_CHECKS, f"the head fails mesh checks: {f}") for f in errors(findings)]


# --- gates ---------------------------------------------------------------------------------


def removed_routed_versions(base: Side, head: Side) -> list[Refusal]:
    """Istio drops a subset before the routes stop using it (RULES.md 76): move the traffic
    away in one deploy, remove the version in the next."""
    found = []
    for name, before in base.routing.items():
        after = head.routing.get(name)
        if after is not None and after.owner != before.owner:
            continue  # OWNERSHIP_SWITCH says it better
        if after is not None and before.owner == after.owner == FLAGGER:
            # A new target version is how a Flagger rollout starts: the primary Deployment,
            # Flagger's copy of the last promoted spec, keeps serving the old version until the
            # analysis promotes the new one (flagger pkg/controller/scheduler.go: advanceCanary
            # detects the change with HasTargetChanged; the template is copied to the primary
            # by canaryController.Promote only in the promotion steps after the analysis).
            continue
        for version, reason in before.routed().items():
            if after is not None and version in after.versions:
                continue
            what = (
                f"model {name!r} is removed while its version {version} {reason}"
                if after is None
                else f"{name}: version {version} is removed while it {reason}"
            )
            found.append(
                Refusal(
                    REMOVE_ROUTED_VERSION,
                    f"{what} at the base; requests to it would fail. "
                    "Deploy twice: first route no traffic to it (weight 0, no match, no "
                    "mirror), then remove it.",
                )
            )
    return found


def _incumbent(routing: ModelRouting) -> str:
    """The version traffic returns to on a rollback: stable where known, else the largest."""
    for version, role in routing.roles.items():
        if role == "stable":
            return version
    return max(routing.versions.items(), key=lambda item: (item[1].weight, item[0]))[0]


def weight_steps(base: Side, head: Side, rules: Protections) -> list[Refusal]:
    if not rules.protected:
        return []
    found = []
    for name, after in head.routing.items():
        before = base.routing.get(name)
        if before is None or before.owner != after.owner:
            continue
        if after.owner == FLAGGER:
            found += _flagger_steps(name, before, after, rules)
            continue
        incumbent = _incumbent(before)
        for version, now in after.versions.items():
            was = before.versions.get(version, VersionRouting()).weight
            rise = now.weight - was
            if was == 0 and now.weight == 100:
                found.append(
                    Refusal(
                        WEIGHT_STEP,
                        f"{name}: {version} jumps from 0% to 100% of traffic in one change; "
                        f"shift it in steps of at most {rules.max_weight_step} points",
                    )
                )
            elif rise > rules.max_weight_step and version != incumbent:
                found.append(
                    Refusal(
                        WEIGHT_STEP,
                        f"{name}: {version} goes from {was:g}% to {now.weight:g}% "
                        f"(+{rise:g} points), more than maxWeightStep {rules.max_weight_step} "
                        "of this protected stack",
                    )
                )
    return found


@dataclass(frozen=True)
class MatchRoute:
    """One match rule as a side renders it: the versions it sends to and its conditions."""

    versions: tuple[str, ...]
    conditions: str  # the match entries as canonical JSON, for comparing
    shown: str  # the conditions as a reviewer reads them


def _conditions_text(entries: list[dict]) -> str:
    parts = []
    for entry in entries:
        for header, match in sorted((entry.get("headers") or {}).items()):
            parts += [f"{header} {kind} {value!r}" for kind, value in sorted(match.items())]
        parts += [
            f"{k} {json.dumps(entry[k], sort_keys=True)}"
            for k in sorted(entry)
            if k in REQUEST_CONDITIONS and k != "headers"
        ]
    return " and ".join(parts) or "no condition"


def match_routes(objects: list[dict]) -> dict[str, dict[str, MatchRoute]]:
    """Per VirtualService, its match rules in the order Istio tries them, read from the routes
    every request can reach whatever its port (no `port` in a match: the REST port's, where
    mesh/traffic.py puts every rule; the gateway's gRPC blocks repeat the same rules). A match
    route is one whose every entry carries a request condition (`rules.is_weighted_route`),
    whatever its name."""
    found: dict[str, dict[str, MatchRoute]] = {}
    for obj in objects:
        if obj.get("kind") == "HTTPRoute" and is_model_route(obj):
            found[obj["metadata"]["name"]] = http_route_matches(obj, objects)
        if obj.get("kind") != "VirtualService":
            continue
        rules: dict[str, MatchRoute] = {}
        for route in obj.get("spec", {}).get("http", []):
            entries = [m for m in route.get("match") or [] if isinstance(m, dict)]
            if is_weighted_route(route) or any("port" in m for m in entries):
                continue
            name = entries[0].get("name") or route.get("name") or f"route {len(rules)}"
            versions = tuple(
                sorted({d.get("destination", {}).get("subset", "") for d in route.get("route", [])})
            )
            plain = [{k: v for k, v in m.items() if k != "name"} for m in entries]
            rules[name] = MatchRoute(
                versions, json.dumps(plain, sort_keys=True), _conditions_text(entries)
            )
        found[obj["metadata"]["name"]] = rules
    return found


def _header_text(headers: list[dict]) -> str:
    kinds = {"Exact": "exact", "RegularExpression": "regex"}
    parts = [
        f"{h.get('name')} {kinds.get(h.get('type', 'Exact'), h.get('type'))} {h.get('value')!r}"
        for h in sorted(headers, key=lambda h: str(h.get("name")))
    ]
    return " and ".join(parts) or "no condition"


def http_route_matches(route: dict, objects: list[dict]) -> dict[str, MatchRoute]:
    """An HTTPRoute's match rules in the order Istio tries them (the config keeps it the
    written order: mesh/config/gateway_api.py), from their REST forms (the gRPC forms repeat
    them), named as `routing_from_objects` names them."""
    name = route["metadata"]["name"]
    services = version_services(objects, name)
    rules: dict[str, MatchRoute] = {}
    for index, rule in enumerate(http_route_rules(route)):
        if not has_conditions(rule):
            continue
        label = rule_label(route, rule, index)
        versions = tuple(
            sorted(
                {
                    version_of(services, name, r.get("name", ""))
                    for r in rule.get("backendRefs") or []
                }
            )
        )
        headers = [h for m in rule.get("matches") or [] for h in m.get("headers") or []]
        rules[label] = MatchRoute(
            versions, json.dumps(rule.get("matches"), sort_keys=True), _header_text(headers)
        )
    return rules


_UNKNOWN_SHARE = (
    "what share of the traffic that is cannot be known offline, so no weight step bounds it; "
    "check the share the clients send (the model's dashboard, request rate by header) and "
    "allow it on purpose"
)


def match_changes(base: Side, head: Side, rules: Protections) -> list[Refusal]:
    """Protected stacks: a match rule takes every request its conditions select, before the
    weighted split, so adding one (`user-agent` regex `.+` would be all traffic) or changing
    its version or conditions moves an unknown share of the traffic in one change. Removing a
    rule is not gated: its requests return to the weighted split, bounded by `weight-step`
    (and a version left without traffic and removed with it is `remove-routed-version`)."""
    if not rules.protected:
        return []
    before_all, after_all = match_routes(base.objects), match_routes(head.objects)
    found = []
    for name, after in after_all.items():
        was, now = base.routing.get(name), head.routing.get(name)
        if name not in before_all or was is None or now is None or was.owner != now.owner:
            continue
        before = before_all[name]
        for rule, route in after.items():
            old = before.get(rule)
            to = ", ".join(route.versions)
            if old is None:
                what = f"match rule {rule!r} is added: requests with {route.shown} go to {to}"
            elif old.versions != route.versions:
                what = (
                    f"match rule {rule!r} sends its requests ({route.shown}) to {to} instead "
                    f"of {', '.join(old.versions)}"
                )
            elif old.conditions != route.conditions:
                what = f"match rule {rule!r} now takes {route.shown} (was {old.shown}), to {to}"
            else:
                continue
            found.append(Refusal(MATCH_CHANGE, f"{name}: {what}; {_UNKNOWN_SHARE}"))
        kept = [rule for rule in before if rule in after]
        order = [rule for rule in after if rule in before]
        if kept != order:
            found.append(
                Refusal(
                    MATCH_CHANGE,
                    f"{name}: match rules are tried in a new order ({', '.join(kept)} -> "
                    f"{', '.join(order)}): a request that several match goes to another "
                    f"version; {_UNKNOWN_SHARE}",
                )
            )
    return found


def _flagger_steps(name: str, before: ModelRouting, after: ModelRouting, rules: Protections):
    step = largest_flagger_step(after.analysis)
    if before.analysis == after.analysis or step <= rules.max_weight_step:
        return []
    return [
        Refusal(
            WEIGHT_STEP,
            f"{name}: Flagger would shift up to {step} points per interval, more than "
            f"maxWeightStep {rules.max_weight_step} of this protected stack",
        )
    ]


def selector_changes(base: Side, head: Side) -> list[Refusal]:
    before = {_key(o): o for o in base.objects if o.get("kind") == "Deployment"}
    found = []
    for obj in head.objects:
        old = before.get(_key(obj))
        if old is None or obj.get("kind") != "Deployment":
            continue
        if old["spec"].get("selector") != obj["spec"].get("selector"):
            found.append(
                Refusal(
                    SELECTOR_CHANGE,
                    f"Deployment/{obj['metadata']['name']}: spec.selector changes "
                    f"({_short(old['spec'].get('selector'))} -> "
                    f"{_short(obj['spec'].get('selector'))}); the field is immutable, so it is "
                    "deleted and recreated: its pods are gone until the new ones are ready",
                )
            )
    return found


def ownership_switches(base: Side, head: Side) -> list[Refusal]:
    found = []
    for name, after in head.routing.items():
        before = base.routing.get(name)
        if before is not None and before.owner != after.owner:
            found.append(
                Refusal(
                    OWNERSHIP_SWITCH,
                    f"{name}: routing moves from {before.owner} to {after.owner}; the two hand "
                    "over Service/VirtualService/DestinationRule and requests fail until the new "
                    "owner's objects are ready (see docs/flagger.md#switching-a-model-between-modes)",
                )
            )
    return found


def check(
    base: Side,
    head: Side,
    pairs: dict[tuple[str, str], JourneyPair],
    head_findings: list[Finding] | None = None,
) -> list[Refusal]:
    return [
        *check_refusals(head_findings or []),
        *policy_changes(base, head),
        *removed_routed_versions(base, head),
        *weight_steps(base, head, policy(base, head)),
        *match_changes(base, head, policy(base, head)),
        *selector_changes(base, head),
        *ownership_switches(base, head),
        *broken_journeys(pairs),
    ]


# --- journeys ------------------------------------------------------------------------------


# Kinds the trace never reads (mesh/trace/objects.py `Objects` reads workloads, Namespaces,
# Services and the Istio and NetworkPolicy kinds; mesh/trace/flagger.py `expand` Canaries and
# Deployments): their changes reach no journey.
UNTRACED_KINDS = frozenset(
    {"ConfigMap", "PrometheusRule", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
)
# Kinds whose change, in an object owned by one model, reaches only that model's journeys, when
# the conditions of `touched_models` hold; any other changed kind may reach every journey.
OWN_KINDS = frozenset({"VirtualService", "DestinationRule", "Deployment"})


def _hosts(value: Any) -> set[str]:
    """Every string under a `host` or `hosts` key, at any depth (route destinations, mirrors,
    the scope of a VirtualService or DestinationRule)."""
    found: set[str] = set()
    # A loop over a stack of containers, not a call per value: `touched_models` reads every
    # object's spec, and most values are strings and numbers, which hold no host.
    pending = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("host", "hosts"):
                    found.update(v for v in (item if isinstance(item, list) else [item]) if v)
                if isinstance(item, (dict, list)):
                    pending.append(item)
        elif isinstance(value, list):
            pending += [item for item in value if isinstance(item, (dict, list))]
    return found


def _owner(obj: dict, models: set[str]) -> str | None:
    """The model an object belongs to (its `app` label names a model), else None (shared)."""
    app = ((obj.get("metadata") or {}).get("labels") or {}).get("app")
    return app if app in models else None


def _scope(obj: dict) -> tuple:
    """What decides which requests a VirtualService or DestinationRule applies to."""
    spec = obj.get("spec") or {}
    return spec.get("hosts"), spec.get("host"), spec.get("gateways"), spec.get("exportTo")


def _own_hosts(config: StackConfig, name: str) -> set[str]:
    return (
        {*config.model_hosts(name), config.service_host(name)} if name in config.models else set()
    )


def touched_models(base: Side, head: Side) -> set[str] | None:
    """The models whose journeys a change can reach, or None for all of them. Conservative:
    anything this cannot prove confined to its models reaches every journey.

    A journey depends on the config (its model's section, and everything outside `models`:
    gateway, namespace, security, egress, telemetry, platform, through `mesh_settings` too) and
    on the objects. So every model is touched when the config outside `models` differs, or an
    object changes (added, removed, modified; not of a kind the trace never reads,
    UNTRACED_KINDS) that is not owned by exactly one model, or is not of a kind in OWN_KINDS, or is not in the models' namespace (or that namespace is the
    gateway's, whose pods are the ingress source). A model is touched when its section differs
    or it owns a changed object. A changed VirtualService or DestinationRule must keep its
    scope (hosts, host, gateways, exportTo), all of them the owner's own hosts (its external
    hosts and its service host); a changed Deployment's pods must carry the owner's `app`
    label. The owner's hosts must not be named by any object the owner does not own (except
    the Gateway, which only admits hosts): another model routing or mirroring to them, a
    ServiceEntry or a policy naming them, would carry the change into that model's journeys."""
    if base.config is None or head.config is None:
        return None
    if base.config.model_dump(exclude={"models"}) != head.config.model_dump(exclude={"models"}):
        return None
    names = set(base.config.models) | set(head.config.models)
    touched = {m for m in names if base.config.models.get(m) != head.config.models.get(m)}
    before, after = ({_key(o): o for o in s.objects} for s in (base, head))
    if len(before) != len(base.objects) or len(after) != len(head.objects):
        return None
    namespace = head.config.namespace
    if namespace == head.config.gateway.namespace:
        return None
    by_objects: set[str] = set()
    changed_in_base = []  # the base's side of each changed object, for the hosts below
    for key in before.keys() | after.keys():
        if key[0] in UNTRACED_KINDS or before.get(key) == after.get(key):
            continue
        if key in before:
            changed_in_base.append(before[key])
        changed = [o for o in (before.get(key), after.get(key)) if o is not None]
        owners = {_owner(o, names) for o in changed}
        if len(owners) != 1 or None in owners or key[0] not in OWN_KINDS or key[1] != namespace:
            return None
        owner = next(iter(owners))
        own = _own_hosts(base.config, owner) | _own_hosts(head.config, owner)
        if key[0] in ("VirtualService", "DestinationRule"):
            if len(changed) != 2 or _scope(changed[0]) != _scope(changed[1]):
                return None
            spec = changed[0].get("spec") or {}
            if not set(spec.get("hosts") or [spec.get("host")]) <= own:
                return None
        if key[0] == "Deployment":
            for obj in changed:
                template = (obj.get("spec") or {}).get("template") or {}
                if ((template.get("metadata") or {}).get("labels") or {}).get("app") != owner:
                    return None
        by_objects.add(owner)
    if not by_objects:
        return touched
    # Each object once: the head's, and the base's where it differs (the rest are equal; a
    # changed object of a kind in UNTRACED_KINDS is left out below in any case).
    named = [
        (_owner(obj, names), hosts)
        for obj in (*head.objects, *changed_in_base)
        if obj.get("kind") not in ("Gateway", *UNTRACED_KINDS)
        and (hosts := _hosts(obj.get("spec")))
    ]
    for owner in by_objects:
        own = _own_hosts(base.config, owner) | _own_hosts(head.config, owner)
        if any(holder != owner and hosts & own for holder, hosts in named):
            return None
    return touched | by_objects


def journey_pairs(base: Side, head: Side, prune: bool = True) -> dict[tuple[str, str], JourneyPair]:
    """The same questions asked of both sides: every journey either side's config promises,
    traced through the base's objects and through the head's (mesh.journeys). A side whose
    config cannot be read asks nothing, but still answers the other side's questions. The
    head's questions come first, so a pair's journeys are the head's wherever it asks.

    With `prune`, only the journeys of the models a change can reach (`touched_models`) are
    traced on both sides; every other model's journeys are asked once, of the head, their
    traces deferred, and paired with themselves (the same answer on both sides: they count,
    and cannot change). `prune=False` traces everything (tests/test_diff_pruning.py pins that
    both give the same report)."""
    touched = touched_models(base, head) if prune else None
    # Each side as the cluster would hold it: with what its charts create (as its own code
    # models them, `render --charts`) and the shadow Services istiod derives from the pools.
    sides = tuple(
        Objects(
            pools.expand(expand([*side.objects, *modelled_objects(side.charts)])),
            mesh_settings(side.config),
        )
        for side in (base, head)
    )
    pairs: dict[tuple[str, str], JourneyPair] = {}
    for config in (head.config, base.config):
        if config is None:
            continue
        before, after = (
            {(j.model, j.name): j for j in journeys(config, objects=objects, models=touched)}
            for objects in sides
        )
        # A pod journey exists on a side only where the pod does (a version added or removed).
        for key in before.keys() & after.keys():
            if key not in pairs:
                pairs[key] = JourneyPair(before[key], after[key], config is head.config)
    if touched is not None and head.config is not None:
        untouched = set(head.config.models) - touched
        for journey in journeys(head.config, objects=sides[1], models=untouched, traced=False):
            pairs[(journey.model, journey.name)] = JourneyPair(journey, journey, True)
    return dict(sorted(pairs.items()))


def _summary(journey: Journey) -> str:
    final = journey.trace.final()
    status = f" {final.status}" if final.status else ""
    split = journey.trace.split()
    ports = sorted({b.container_port for b in journey.trace.branches if b.container_port})
    where = f" ({split} :{','.join(map(str, ports))})" if split and ports else ""
    return f"{final.verdict}{status}{where}"


def broken_journeys(pairs: dict[tuple[str, str], JourneyPair]) -> list[Refusal]:
    return [
        Refusal(JOURNEY_BROKEN, f"{model}: {pair.after.problem()}")
        for (model, _), pair in pairs.items()
        if pair.before is not pair.after  # one journey on both sides: unchanged
        and pair.promised
        and pair.after.expect
        and pair.before.passed
        and not pair.after.passed
    ]


def journeys_section(pairs: dict[tuple[str, str], JourneyPair]) -> list[str]:
    lines = ["### Journeys", ""]
    changed = [
        (key, pair)
        for key, pair in pairs.items()
        if pair.before is not pair.after and _summary(pair.before) != _summary(pair.after)
    ]
    if not changed:
        return [*lines, f"No journey changes ({len(pairs)} journeys traced on both sides).", ""]
    lines += [
        f"{len(changed)} of {len(pairs)} journeys change (`python -m mesh trace` shows every step):",
        "",
        "| model | journey | before | after |",
        "| --- | --- | --- | --- |",
    ]
    for (model, name), pair in changed:
        mark = " ⚠" if pair.promised and not pair.after.passed else ""
        lines.append(
            f"| {model} | {name} | {_summary(pair.before)} | {_summary(pair.after)}{mark} |"
        )
    return [*lines, ""]


# --- object changes ------------------------------------------------------------------------


def _key(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _around_difference(before: Any, after: Any, limit: int = 60) -> tuple[str, str]:
    """Both values cut to the same window around where they first differ, with `…` where text
    is left out on either side: two long strings that differ at character 200 show that part,
    not twice the same first 60 characters."""
    old, new = _text(before), _text(after)
    if len(old) <= limit and len(new) <= limit:
        return old, new
    first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), None)
    if first is None:
        first = min(len(old), len(new))  # one is the other's prefix
    start = max(0, first - limit // 3)

    def cut(text: str) -> str:
        window = text[start : start + limit]
        return ("…" if start else "") + window + ("…" if start + limit < len(text) else "")

    return cut(old), cut(new)


def _named(items: list) -> bool:
    names = [i.get("name") for i in items if isinstance(i, dict)]
    return len(names) == len(items) and None not in names and len(set(names)) == len(names)


class PromQL(str):
    """A PromQL expression: compared whole and shown whole, never line by line or cut."""


# Lists whose order means nothing to Istio: compared by value (`added: x`, `removed: y`), so a
# host inserted at the front is one change, not every index after it. Paths as changed_fields
# writes them, with list positions as `[]`.
ANY_OF = (
    "an AuthorizationPolicy rule field matches when any of its values does: istiod turns each "
    "into one OR of Envoy matchers (pilot/pkg/security/authz/model/model.go, "
    "`rule.principal`/`rule.permission` and `principalOr`/`permissionOr`)"
)
EXPORT_TO = (
    "exportTo is the set of namespaces that see the object (pilot/pkg/model/push_context.go, "
    "the exportTo indexes; mesh/trace/objects.py `exported_to`)"
)
SET_FIELDS: dict[tuple[str, str], str] = {
    ("Gateway", "spec.servers[].hosts"): (
        "a server admits a VirtualService when any entry matches its host; the virtual host "
        "is then picked by domain, exact before the longest wildcard, not by position "
        "(pilot/pkg/networking/core/gateway.go `buildGatewayHTTPRouteConfig`; envoy "
        "source/common/router/config_impl.cc `findVirtualHost`)"
    ),
    ("VirtualService", "spec.hosts"): (
        "each host becomes a domain of the route's virtual host; Envoy matches a request's "
        "authority by domain, not by position (config_impl.cc `findVirtualHost`)"
    ),
    ("VirtualService", "spec.gateways"): (
        "the set of gateways the routes bind to (pilot/pkg/model/push_context.go "
        "`getGatewayNames`); a route's own `match[].gateways` narrows it"
    ),
    ("VirtualService", "spec.exportTo"): EXPORT_TO,
    ("DestinationRule", "spec.exportTo"): EXPORT_TO,
    ("ServiceEntry", "spec.exportTo"): EXPORT_TO,
    ("ServiceEntry", "spec.hosts"): (
        "each host is one service in the registry (pilot/pkg/serviceregistry/serviceentry/"
        "conversion.go `convertServices`, one model.Service per host)"
    ),
    ("Sidecar", "spec.egress[].hosts"): (
        "a listener's egress hosts are a set a service or VirtualService must match one of "
        "(pilot/pkg/model/sidecar.go, `hostClassification.Matches`/`VSMatches`)"
    ),
    **{
        ("AuthorizationPolicy", f"spec.rules[].from[].source.{field}"): ANY_OF
        for field in (
            "principals",
            "notPrincipals",
            "requestPrincipals",
            "notRequestPrincipals",
            "namespaces",
            "notNamespaces",
            "ipBlocks",
            "notIpBlocks",
            "remoteIpBlocks",
            "notRemoteIpBlocks",
        )
    },
    **{
        ("AuthorizationPolicy", f"spec.rules[].to[].operation.{field}"): ANY_OF
        for field in ("hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths")
    },
    **{
        ("NetworkPolicy", path): (
            "a rule admits traffic that matches at least one peer and one port of its lists "
            "(kubernetes staging/src/k8s.io/api/networking/v1/types.go, "
            "`NetworkPolicyIngressRule`/`NetworkPolicyEgressRule`: 'matches at least one item')"
        )
        for path in (
            "spec.ingress[].from",
            "spec.ingress[].ports",
            "spec.egress[].to",
            "spec.egress[].ports",
        )
    },
    ("AuthorizationPolicy", "spec.rules[].to[].operation.notPaths"): ANY_OF,
    ("AuthorizationPolicy", "spec.rules[].when[].values"): ANY_OF,
    ("AuthorizationPolicy", "spec.rules[].when[].notValues"): ANY_OF,
}


def _generic(path: str) -> str:
    """`spec.servers[0].hosts` -> `spec.servers[].hosts`: the path with list positions and
    item names left out, as SET_FIELDS names it."""
    return re.sub(r"\[[^\]]*\]", "[]", path)


def _is_promql(kind: str, path: str) -> bool:
    """PrometheusRule `spec.groups[].rules[].expr`, a Grafana panel's `targets[].expr` (in a
    dashboard ConfigMap), and a Flagger MetricTemplate's `spec.query`: what mesh/promql.py
    builds."""
    return path.endswith(".expr") or (kind == "MetricTemplate" and path == "spec.query")


def _set_changes(before: list, after: list, path: str) -> list[tuple[str, Any, Any]]:
    """What left the set and what joined it; a new order alone is still a change to the object
    (`pulumi up` updates it), said as such, though Istio does nothing differently."""
    removed = [(path, item, None) for item in before if item not in after]
    added = [(path, None, item) for item in after if item not in before]
    if not (removed or added) and before != after:
        return [(f"{path} (reordered, same values)", before, after)]
    return removed + added


def changed_fields(
    before: Any, after: Any, path: str = "", kind: str = ""
) -> list[tuple[str, Any, Any]]:
    """(path, before, after) of every leaf that differs; lists of named items are aligned by
    name (`http[http-rest]`), lists that are sets in meaning (SET_FIELDS, for `kind`) by value,
    other lists by index. A missing side is None. PromQL comes back whole, as `PromQL`."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(before) + [k for k in after if k not in before]
        return [
            change
            for k in keys
            for change in changed_fields(
                before.get(k), after.get(k), f"{path}.{k}" if path else k, kind
            )
        ]
    if isinstance(before, list) and isinstance(after, list):
        if (kind, _generic(path)) in SET_FIELDS:
            return _set_changes(before, after, path)
        if _named(before) and _named(after):
            old = {i["name"]: i for i in before}
            new = {i["name"]: i for i in after}
            names = list(old) + [n for n in new if n not in old]
            return [
                c
                for n in names
                for c in changed_fields(old.get(n), new.get(n), f"{path}[{n}]", kind)
            ]
        size = max(len(before), len(after))
        pad = lambda items, i: items[i] if i < len(items) else None  # noqa: E731
        return [
            c
            for i in range(size)
            for c in changed_fields(pad(before, i), pad(after, i), f"{path}[{i}]", kind)
        ]
    if before == after:
        return []
    if _is_promql(kind, path) and isinstance(before or after, str):
        whole = [PromQL(v) if isinstance(v, str) else v for v in (before, after)]
        return [(path, *whole)]
    if isinstance(before, str) and isinstance(after, str):
        parsed = _json_container(before), _json_container(after)
        if parsed[0] is not None and parsed[1] is not None:
            # e.g. a dashboard in a ConfigMap
            return changed_fields(parsed[0], parsed[1], path, kind)
        if "\n" in before or "\n" in after:
            return _changed_lines(before, after, path)
    return [(path, before, after)]


def _json_container(text: str) -> dict | list | None:
    """`text` parsed, when it is a JSON object or array (embedded documents diff by field)."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def _changed_lines(before: str, after: str, path: str) -> list[tuple[str, Any, Any]]:
    """A multi-line text, line by line: a reviewer sees the line that changed, not two blobs."""
    old, new = before.splitlines(), after.splitlines()
    changes: list[tuple[str, Any, Any]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for offset in range(max(i2 - i1, j2 - j1)):
            was = old[i1 + offset] if i1 + offset < i2 else None
            now = new[j1 + offset] if j1 + offset < j2 else None
            line = (j1 if now is not None else i1) + offset + 1
            changes.append((f"{path} (line {line})", was, now))
    return changes


@dataclass(frozen=True)
class ObjectChanges:
    added: list[tuple[str, str, str]]
    removed: list[tuple[str, str, str]]
    changed: dict[tuple[str, str, str], list[tuple[str, Any, Any]]]


def object_changes(base: list[dict], head: list[dict]) -> ObjectChanges:
    old = {_key(o): o for o in base}
    new = {_key(o): o for o in head}
    changed = {
        k: changed_fields(old[k], new[k], kind=k[0]) for k in new if k in old and old[k] != new[k]
    }
    return ObjectChanges(
        added=[k for k in new if k not in old],
        removed=[k for k in old if k not in new],
        changed=changed,
    )


# --- Markdown ------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value:g}%" if value else "0%"


def _before_after(before: str, after: str) -> str:
    if before == after:
        return after
    return f"{before or 'none'} → {after or 'none'}"


def traffic_rows(before: ModelRouting | None, after: ModelRouting | None) -> list[str]:
    either = after or before
    assert either is not None
    old = before.versions if before else {}
    new = after.versions if after else {}
    rows = ["| version | role | weight | match | mirror |", "| --- | --- | --- | --- | --- |"]
    for version in sorted(set(old) | set(new)):
        was, now = old.get(version), new.get(version)

        def cell(part, was=was, now=now):
            shown = [part(v) if v is not None else "—" for v in (was, now)]
            if set(shown) <= {"", "—"}:  # nothing on either side, e.g. no match before or after
                return ""
            return _before_after(*shown)

        role = _before_after(
            before.roles.get(version, "") if before and was else "—",
            after.roles.get(version, "") if after and now else "—",
        )
        if either.owner == FLAGGER and (now or was):
            weight = "Flagger"
        else:
            weight = cell(lambda v: _percent(v.weight))
        match = cell(lambda v: ", ".join(v.matches))
        mirror = cell(lambda v: _percent(v.mirror) if v.mirror else "")
        rows.append(f"| {version} | {role} | {weight} | {match} | {mirror} |")
    return rows


def traffic_section(base: Side, head: Side) -> list[str]:
    lines = ["### Traffic", ""]
    for name in sorted(set(base.routing) | set(head.routing)):
        before, after = base.routing.get(name), head.routing.get(name)
        status = "added" if before is None else "removed" if after is None else "changed"
        status = "unchanged" if before == after else status
        owner = (after or before).owner
        title = f"**{name}** ({status}, routing by {owner})"
        lines += [title, "", *traffic_rows(before, after), ""]
        if owner == FLAGGER:
            analyses = [describe_analysis(r.analysis) if r else "none" for r in (before, after)]
            lines += [_before_after(*analyses), ""]
    return lines


def _ref(key: tuple[str, str, str]) -> str:
    return f"`{key[0]}/{key[2]}`"


def _code(text: str) -> str:
    """Inline code that survives backticks in the value (Markdown's double-backtick form)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _fenced(text: str, indent: str = "    ") -> list[str]:
    """A PromQL block, indented under its list item; the fence outgrows any backticks inside."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return [
        f"{indent}{fence}promql",
        *(f"{indent}{line}" for line in text.splitlines()),
        f"{indent}{fence}",
    ]


def field_line(path: str, before: Any, after: Any) -> str:
    """One changed field as Markdown. Long values are cut around where they differ; PromQL is
    shown whole, before and after, as fenced blocks under the field (continuation lines are
    indented for a list item)."""
    if isinstance(before, PromQL) or isinstance(after, PromQL):
        if before is None:
            return "\n".join([f"{_code(path)} added:", *_fenced(after)])
        if after is None:
            return "\n".join([f"{_code(path)} removed, was:", *_fenced(before)])
        return "\n".join(
            [f"{_code(path)} changed, before:", *_fenced(before), "    after:", *_fenced(after)]
        )
    if before is None:
        return f"{_code(path)} added: {_code(_short(after))}"
    if after is None:
        return f"{_code(path)} removed (was {_code(_short(before))})"
    shown = _around_difference(before, after)
    return f"{_code(path)}: {_code(shown[0])} → {_code(shown[1])}"


def objects_section(changes: ObjectChanges) -> list[str]:
    lines = ["### Objects", ""]
    if not (changes.added or changes.removed or changes.changed):
        return [*lines, "No object changes.", ""]
    for title, keys in (("Added", changes.added), ("Removed", changes.removed)):
        if keys:
            lines += [f"**{title}** ({len(keys)}): " + ", ".join(_ref(k) for k in keys), ""]
    if changes.changed:
        lines += [f"**Changed** ({len(changes.changed)}):", ""]
        for key, fields in changes.changed.items():
            lines.append(f"- {_ref(key)}")
            lines += [f"  - {field_line(*f)}" for f in fields[:MAX_LISTED_FIELDS]]
            if len(fields) > MAX_LISTED_FIELDS:
                lines.append(f"  - … and {len(fields) - MAX_LISTED_FIELDS} more fields")
        lines.append("")
    return lines


def verdict_section(refusals: list[Refusal], allowed: set[str]) -> list[str]:
    blocking = [r for r in refusals if r.gate not in allowed]
    overridden = [r for r in refusals if r.gate in allowed]
    if blocking:
        lines = [f"> [!CAUTION]\n> **Refused: {len(blocking)} unsafe change(s).** "]
        lines[0] += "Override a gate on purpose with `--allow <gate>`"
        if any(r.gate not in GATES for r in blocking):
            lines[0] += " (check errors cannot be overridden: `pulumi preview` refuses them too)"
        lines[0] += "."
        lines += [f"> - `{r.gate}`: {r.reason}" for r in blocking]
    else:
        lines = ["> [!NOTE]\n> No unsafe change found."]
    lines += [f"> - allowed on purpose, `{r.gate}`: {r.reason}" for r in overridden]
    return [*lines, ""]


def unreadable_section(base: Side) -> list[str]:
    """The base's policy keys this code could not read, and the value they count as."""
    keys = base.protections.unreadable if base.exists else ()
    if not keys:
        return []
    named = ", ".join(f"`{k}`" for k in keys)
    if base.raw is None:
        return [
            "> [!WARNING]\n> The base's stack file cannot be read (a YAML error, a duplicate key "
            f"or not a mapping), so none of its protections could be read: {named} count as "
            "their strictest value (protected, maxWeightStep 1, requireDigests, mTLS STRICT, "
            "every security switch on).",
            "",
        ]
    return [
        f"> [!WARNING]\n> The base's stack file does not parse with this code; its {named} "
        "could not be read and count as their strictest value (protected, maxWeightStep 1, "
        "requireDigests, mTLS STRICT, every security switch on).",
        "",
    ]


def pack_error_section(base: Side) -> list[str]:
    """The base's policy/config.json that does not read, and what it counts as."""
    if base.pack_error is None:
        return []
    return [
        f"> [!WARNING]\n> {base.pack_error}. The change is checked with the pack's defaults "
        "as the base's config (every policy mandatory, canary maxWeight 50), or the head's "
        "where stricter.",
        "",
    ]


def base_error_section(base_label: str, error: str) -> list[str]:
    quoted = "\n".join(f"> {line}" if line else ">" for line in error.splitlines())
    skipped = ", ".join(f"`{gate}`" for gate in OBJECT_GATES)
    return [
        f"> [!WARNING]\n> **The base does not render**, so this change cannot be compared with "
        f"it: {base_label} failed with the error below. Shown: the head alone (its traffic, "
        f"journeys, checks and objects). Not run, as they need the base's objects: {skipped}; "
        "run `mesh diff` again once the base renders.\n>\n> ```",
        quoted,
        "> ```",
        "",
    ]


def head_traffic_section(head: Side) -> list[str]:
    lines = ["### Traffic (head)", ""]
    for name, routing in sorted(head.routing.items()):
        lines += [f"**{name}** (routing by {routing.owner})", "", *traffic_rows(routing, routing)]
        lines.append("")
        if routing.owner == FLAGGER:
            lines += [describe_analysis(routing.analysis), ""]
    return lines


def head_journeys_section(head: Side) -> list[str]:
    """Every journey of the head, traced through the head's objects (no base to compare)."""
    if head.config is None:
        return []
    objects = Objects(expand(head.objects), mesh_settings(head.config))
    found = journeys(head.config, objects=objects)
    failed = [j for j in found if j.expect is not None and not j.passed]
    lines = [
        "### Journeys (head)",
        "",
        f"{len(found)} journeys traced, {len(failed)} promised and failing "
        "(`python -m mesh trace` shows every step).",
        "",
        "<details><summary>Every journey of the head</summary>",
        "",
        "| model | journey | outcome |",
        "| --- | --- | --- |",
    ]
    for journey in found:
        mark = " ⚠" if journey in failed else ""
        lines.append(f"| {journey.model} | {journey.name} | {_summary(journey)}{mark} |")
    return [*lines, "", "</details>", ""]


def checks_section(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["### Checks (head)", "", "No findings.", ""]
    return ["### Checks (head)", "", *[f"- {_code(str(f))}" for f in findings], ""]


def report(
    stack: str,
    base_label: str,
    base: Side,
    head: Side,
    allowed: set[str],
    head_findings: list[Finding] | None = None,
    base_error: str | None = None,
    prune: bool = True,
) -> tuple[str, list[Refusal]]:
    """The Markdown report and the refusals that `allowed` does not override. With
    `base_error` (the base does not render), the head alone and the gates that need no base
    objects."""
    lines = [f"## ml-mesh diff: stack `{stack}` ({base_label} → working tree)", ""]
    if base_error is not None:
        refusals = [*check_refusals(head_findings or []), *policy_changes(base, head)]
        lines += base_error_section(base_label, base_error)
        lines += verdict_section(refusals, allowed)
        lines += unreadable_section(base)
        lines += pack_error_section(base)
        lines += head_traffic_section(head)
        lines += head_journeys_section(head)
        lines += checks_section(head_findings or [])
        releases = [release(c) for c in head.charts or []]
        lines += objects_section(object_changes([], [*head.objects, *releases]))
        lines += ["### Routing (head)", "", mermaid(head.routing, gateway_name(head.objects))]
        return "\n".join(lines), [r for r in refusals if r.gate not in allowed]
    pairs = journey_pairs(base, head, prune)
    refusals = check(base, head, pairs, head_findings)
    lines += verdict_section(refusals, allowed)
    lines += unreadable_section(base)
    lines += pack_error_section(base)
    lines += traffic_section(base, head)
    lines += journeys_section(pairs)
    lines += charts_unknown_section(base, head)
    lines += objects_section(object_changes(*compared_objects(base, head)))
    lines += ["### Routing after the change", "", mermaid(head.routing, gateway_name(head.objects))]
    return "\n".join(lines), [r for r in refusals if r.gate not in allowed]
