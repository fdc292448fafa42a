"""A canary weight shift changes exactly one object: the model's VirtualService, or with
`routing: gateway-api` its HTTPRoute (both routing modes are pinned); a model with inference
pools has two HTTPRoutes with one split, `<m>` (mesh callers) and `<m>-pools` (the Gateway, to
the InferencePools), and a shift changes exactly those two.

Reviewers read `pulumi preview` and `mesh diff` for a shift; anything else that moved with the
weight (a dashboard printing it, an alert rule created or dropped at 0, a label, an
annotation) would be noise at best and a rollout of something unrelated at worst. Pinned over
every stack file the project ships, with the optional telemetry (alerts, dashboards) turned on
so that every builder takes part, for the shifts a canary goes through: 0 -> 10 (first
traffic), 10 -> 30 (a step), 30 -> 0 (rollback), 90 -> 100 (promotion) and back. The weight
stays visible where a reviewer looks for it: the stack outputs and `mesh render`'s table.

A weight the schema refuses is skipped (named); one only a check refuses (a protected stack's
cap on the canary share) is still pinned here, on the builders: the objects must not depend
on the weight whatever the checks then say of it.
"""

from __future__ import annotations

import copy
import re
import shutil
from typing import Any

import pytest
import yaml

from mesh.config import ConfigError, StackConfig, parse_config
from mesh.diff import changed_fields, normalized, object_changes
from mesh.gatewayapi.common import has_pools
from mesh.gatewayapi.routes import pool_route_name
from mesh.plan import build_plan, stack_outputs
from mesh.render import render_objects, traffic_table
from mesh.stackfile import raw_project_config, stack_file, unwrap_secure
from tests.conftest import PROJECT_DIR, STACK_SOURCES, source_id
from tests.test_diff import IGNORED, Repo

SHIFTS = ((0, 10), (10, 30), (30, 0), (90, 100), (100, 90))
# Everything optional that renders objects from a model's config, on in every stack.
TELEMETRY_ON = {"alerts": {"enabled": True}, "dashboard": {"enabled": True}}
# The only fields of the route a shift may change: the weight of a route destination (a
# VirtualService) or of a backendRef (an HTTPRoute).
WEIGHT_FIELD = {
    "istio": re.compile(r"spec\.http\[[^\]]+\]\.route\[\d+\]\.weight"),
    "gateway-api": re.compile(r"spec\.rules\[[^\]]+\]\.backendRefs\[[^\]]+\]\.weight"),
}
ROUTE_KIND = {"istio": "VirtualService", "gateway-api": "HTTPRoute"}
# Each stack file as written (istio routing but for the Gateway API example), then in
# gateway-api mode.
ROUTINGS = ("as-written", "gateway-api")
# What `routing: gateway-api` does not take (Istio deploys the gateway pods): dropped from a
# stack file's config to pin its shifts in that mode too.
GATEWAY_API_DROPS = (("gateway", "selector"), ("gateway", "serviceAccount"))


def _raw(source: str, routing: str = "as-written") -> tuple[str, dict[str, Any]]:
    """The stack's name and its `ml-mesh:` config with the optional telemetry on, in
    `routing` mode."""
    name, path = stack_file(source)
    raw, _ = unwrap_secure(raw_project_config(yaml.safe_load(path.read_text(encoding="utf-8"))))
    telemetry = raw.setdefault("telemetry", {})
    for key, value in TELEMETRY_ON.items():
        telemetry[key] = {**telemetry.get(key, {}), **value}
    if routing == "gateway-api":
        raw["routing"] = routing
        for section, key in GATEWAY_API_DROPS:
            raw.get(section, {}).pop(key, None)
        raw.get("security", {}).pop("gatewayPrincipal", None)
    return name, raw


def _canary_models(source: str) -> list[str]:
    """Models whose canary weight ml-mesh sets (not Flagger's)."""
    _, raw = _raw(source)
    return sorted(
        name
        for name, model in raw["models"].items()
        if (model.get("canary") or {}).get("weight") is not None and "progressive" not in model
    )


CASES = [
    pytest.param(
        source,
        model,
        before,
        after,
        routing,
        id=f"{routing}-{source_id(source)}-{model}-{before}-{after}",
    )
    for routing in ROUTINGS
    for source in STACK_SOURCES
    for model in _canary_models(source)
    for before, after in SHIFTS
]


def _at_weight(source: str, model: str, weight: int, routing: str = "as-written") -> StackConfig:
    name, raw = _raw(source, routing)
    raw = copy.deepcopy(raw)
    raw["models"][model]["canary"]["weight"] = weight
    try:
        return parse_config(raw, name)
    except ConfigError as exc:  # a config rule forbids this weight here: not a shift to pin
        pytest.skip(f"{source_id(source)} ({routing}) refuses {model} at weight {weight}: {exc}")


def _key(obj: dict) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _routes(config: StackConfig, model: str) -> list[tuple[str, str, str]]:
    """The keys of the objects a shift of `model` changes: its route, and with pools its
    Gateway route to the pools (mesh/gatewayapi/routes.py `pool_route`)."""
    names = [model]
    if config.routing == "gateway-api" and has_pools(config, model):
        names.append(pool_route_name(model))
    return [(ROUTE_KIND[config.routing], config.namespace, name) for name in names]


def _shifted(source: str, model: str, before: int, after: int, routing: str = "as-written"):
    return _at_weight(source, model, before, routing), _at_weight(source, model, after, routing)


def test_every_shipped_canary_is_pinned():
    """The shifts below cover each stack file that has a canary (so a new example with one
    is pinned without touching this file), and at least the three shipped mid-canary."""
    covered = {source for source in STACK_SOURCES if _canary_models(source)}
    assert {"dev", "prod"} <= covered
    assert len(covered) >= 4
    per_mode = len(SHIFTS) * sum(len(_canary_models(s)) for s in STACK_SOURCES)
    assert len(CASES) == len(ROUTINGS) * per_mode


PARAMS = ("source", "model", "before", "after", "routing")


@pytest.mark.parametrize(PARAMS, CASES)
def test_a_weight_shift_changes_only_the_models_route(source, model, before, after, routing):
    base, head = _shifted(source, model, before, after, routing)
    routing = base.routing
    old = {_key(o): o for o in build_plan(base).objects()}
    new = {_key(o): o for o in build_plan(head).objects()}
    assert set(old) == set(new), "a shift neither adds nor removes an object"
    differ = {key for key in old if old[key] != new[key]}
    assert differ == set(_routes(base, model))


@pytest.mark.parametrize(PARAMS, CASES)
def test_the_route_diff_is_only_destination_weights(source, model, before, after, routing):
    """Also to and from 0 and 100: the idle version keeps its destination (backendRef) at
    weight 0, so none appears, disappears or changes subset or Service
    (mesh.traffic.route_weights)."""
    base, head = _shifted(source, model, before, after, routing)
    for key in _routes(base, model):
        _only_weights(base, head, model, after, key)


def _only_weights(base: StackConfig, head: StackConfig, model: str, after: int, key) -> None:
    routing = base.routing
    vs = {
        side: next(o for o in render_objects(c, set()) if _key(o) == key)
        for side, c in (("base", base), ("head", head))
    }
    fields = changed_fields(vs["base"], vs["head"])
    assert fields, "the weights moved"
    assert [path for path, _, _ in fields if not WEIGHT_FIELD[routing].fullmatch(path)] == []
    canary, stable = base.models[model].canary.version, base.models[model].stable
    if routing == "gateway-api":
        for rule in vs["head"]["spec"]["rules"]:
            if (
                not all("weight" in ref for ref in rule["backendRefs"])
                or len(rule["backendRefs"]) < 2
            ):
                continue  # a match rule: one backend, no weight
            weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
            assert weights == {f"{model}-{stable}": 100 - after, f"{model}-{canary}": after}
        return
    for route in vs["head"]["spec"]["http"]:
        if not all("weight" in d for d in route["route"]):
            continue  # a match rule's route: one destination, no weight
        weights = {d["destination"]["subset"]: d["weight"] for d in route["route"]}
        assert weights == {stable: 100 - after, canary: after}, route.get("name")


@pytest.mark.parametrize(PARAMS, CASES)
def test_mesh_diff_lists_one_changed_object(source, model, before, after, routing):
    """What `mesh diff` prints under Objects, from the same functions it uses."""
    base, head = _shifted(source, model, before, after, routing)
    routing = base.routing
    changes = object_changes(
        normalized(render_objects(base, set())), normalized(render_objects(head, set()))
    )
    assert (changes.added, changes.removed) == ([], [])
    assert list(changes.changed) == _routes(base, model)


@pytest.mark.parametrize(PARAMS, CASES)
def test_the_configured_weight_stays_in_the_outputs_and_the_traffic_table(
    source, model, before, after, routing
):
    base, head = _shifted(source, model, before, after, routing)
    routing = base.routing
    outputs = stack_outputs(base), stack_outputs(head)
    canary, stable = head.models[model].canary.version, head.models[model].stable
    expected = {v: w for v, w in ((stable, 100 - after), (canary, after)) if w}
    assert outputs[1]["models"][model]["traffic"] == expected
    for side in outputs:  # nothing but the model's traffic output differs
        del side["models"][model]["traffic"]
    assert outputs[0] == outputs[1]
    rows = [line.split() for line in traffic_table(head).splitlines()]
    shown = {row[2]: row[4] for row in rows if row[0] == model}
    assert (shown[stable], shown[canary]) == (f"{100 - after}%", f"{after}%")


def test_a_real_mesh_diff_of_a_shift_lists_one_changed_object(tmp_path):
    """End to end, as a reviewer runs it: prod's canary 5% -> 20% (within maxWeightStep) in a
    git copy of the project, `mesh diff prod` against main."""
    repo = Repo(tmp_path / "ml-mesh")
    shutil.copytree(PROJECT_DIR, repo.path, ignore=IGNORED, symlinks=True)
    repo.git("init", "-q", "-b", "main")
    repo.commit("ml-mesh as on main")
    repo.edit("prod", "models.sentiment.canary.weight", 20)
    result = repo.diff("prod")
    assert result.returncode == 0, result.stderr
    objects = result.stdout.split("### Objects", 1)[1].split("\n### ", 1)[0]
    assert "**Changed** (1):" in objects
    assert "**Added**" not in objects and "**Removed**" not in objects
    listed = [line for line in objects.splitlines() if line.startswith("- ")]
    assert listed == ["- `VirtualService/sentiment`"]
    assert "| v4 | canary | 5% → 20% |" in " ".join(result.stdout.split())
