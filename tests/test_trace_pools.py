"""Inference Extension pools at run time (mesh.trace.pools, mesh.trace.apiroutes
`pool_branches`, mesh.journeys `pool_journeys`): the llm-pools example's ingress reaches the
versions through their pools, and each promise of the pool design breaks when the object that
keeps it is changed."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from mesh.journeys import journeys, mesh_settings
from mesh.plan import build_plan
from mesh.stackfile import load_stack
from mesh.trace import Objects, Request, Workload, pools, trace
from mesh.trace.flagger import expand
from mesh.trace.objects import name_of
from mesh.trace.pools import shadow_name
from tests.conftest import PROJECT_DIR

STACK = PROJECT_DIR / "examples/Pulumi.llm-pools.yaml"
NS = "llm-prod"


@pytest.fixture(scope="module")
def config():
    return load_stack(str(STACK)).config


def _objects(config, change: Callable[[list[dict]], None] | None = None) -> Objects:
    found = copy.deepcopy(build_plan(config).cluster_objects())
    if change is not None:
        change(found)
    return Objects(pools.expand(expand(found)), mesh_settings(config))


def _journey(config, objects: Objects, model: str, name: str):
    found = {j.name: j for j in journeys(config, objects=objects, models=[model])}
    return found[name]


def _one(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and name_of(o) == name)


# --- the shadow Service istiod creates ----------------------------------------------------


def test_the_shadow_service_is_istiods(config):
    objects = _objects(config)
    service = objects.services[f"{shadow_name('chat-v1')}.{NS}.svc.cluster.local"]
    assert (service["spec"]["clusterIP"], service["spec"]["selector"]) == (
        "None",
        {"app": "chat", "version": "v1"},
    )
    assert service["spec"]["ports"] == [
        {
            "name": "http-0",
            "protocol": "TCP",
            "port": 54321,
            "targetPort": 8000,
            "appProtocol": "http",
        }
    ]
    labels = service["metadata"]["labels"]
    assert labels[pools.PICKER_SERVICE_LABEL] == "chat-v1-epp"
    assert labels[pools.FAILURE_MODE_LABEL] == "FailOpen"


@pytest.mark.parametrize(
    "pool",
    ["chat-v1", "a" * 63, "b" * 52, "c" * 51],
)
def test_the_shadow_name_agrees_with_the_builder(pool):
    assert pools.shadow_name(pool) == shadow_name(pool)
    assert len(pools.shadow_name(pool)) <= 63


# --- ingress through the pools ------------------------------------------------------------

INGRESS = [
    # model, journey, share per workload, container port
    ("chat", "REST https chat.llm.acme.com", {"chat-v1": 90, "chat-v2": 10}, 8000),
    ("coder", "REST https coder.llm.acme.com", {"coder-v3": 100}, 30000),
]


@pytest.mark.parametrize(("model", "name", "shares", "port"), INGRESS)
def test_ingress_reaches_the_versions_through_their_pools(config, model, name, shares, port):
    """Each version's share reaches its pods through its pool's shadow Service. Istio gives the
    rule one picker, its last backendRef's: the stable pool's (mesh/gatewayapi/routes.py
    `stable_pool_last`); the canary's share falls back to the gateway's own balancing."""
    journey = _journey(config, _objects(config), model, name)
    assert journey.passed
    live = [b for b in journey.trace.branches if b.kind == "route"]
    assert {b.workload: round(b.share) for b in live} == {
        f"Deployment {NS}/{w}": s for w, s in shares.items()
    }
    assert {b.container_port for b in live} == {port}
    stable = config.models[model].stable
    for branch in live:
        assert branch.cluster.startswith("outbound|54321||") and "-ip-" in branch.host
        picker = [s.detail for s in branch.steps if s.at == "picker"]
        assert picker[0].startswith(f"Service {NS}/{model}-{stable}-epp:9002")
        own = branch.workload == f"Deployment {NS}/{model}-{stable}"
        assert own is (len(picker) == 1), picker
        if not own:
            assert "override_host falls back" in picker[1] and "istio/istio#61594" in picker[1]


def _drop(kind: str, name: str):
    def change(objects: list[dict]) -> None:
        objects.remove(_one(objects, kind, name))

    return change


def _fail_close(pool: str):
    """The pool's endpointPickerRef at FailClose, and the shadow Service's label with it (as
    istiod would write it from the pool)."""

    def change(objects: list[dict]) -> None:
        _one(objects, "InferencePool", pool)["spec"]["endpointPickerRef"]["failureMode"] = (
            "FailClose"
        )
        shadow = _one(objects, "Service", shadow_name(pool))
        shadow["metadata"]["labels"][pools.FAILURE_MODE_LABEL] = "FailClose"

    return change


def _both(*changes):
    def change(objects: list[dict]) -> None:
        for one in changes:
            one(objects)

    return change


def _pool_ref_name(value: str):
    def change(objects: list[dict]) -> None:
        route = _one(objects, "HTTPRoute", "chat-pools")
        route["spec"]["rules"][0]["backendRefs"][0]["name"] = value

    return change


BROKEN = [
    # change, journey's model and name, what the client most likely sees (verdict, status)
    ("no InferencePool chat-v1", "chat", _drop("InferencePool", "chat-v1"), "no-cluster", 500),
    ("pool named by host", "chat", _pool_ref_name("chat-v1.llm-prod"), "no-route", 404),
    ("FailOpen, no picker Service", "chat", _drop("Service", "chat-v1-epp"), "served", None),
    ("FailOpen, no picker pods", "coder", _drop("Deployment", "coder-v3-epp"), "served", None),
    (
        "FailClose, no picker Service",
        "coder",
        _both(_fail_close("coder-v3"), _drop("Service", "coder-v3-epp")),
        "picker-failed",
        500,
    ),
    (
        "FailClose, no picker pods",
        "coder",
        _both(_fail_close("coder-v3"), _drop("Deployment", "coder-v3-epp")),
        "picker-failed",
        500,
    ),
    # The rule's picker is the stable pool's: with no stable pod it answers 503 for every
    # request of the rule, the canary's share included (istio/istio#61594).
    ("no stable pod", "chat", _drop("Deployment", "chat-v1"), "picker-503", 503),
]


@pytest.mark.parametrize(
    ("what", "model", "change", "verdict", "status"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_what_istio_does_with_a_broken_pool(config, what, model, change, verdict, status):
    journey = _journey(config, _objects(config, change), model, f"REST https {model}.llm.acme.com")
    outcome = journey.trace.final()
    assert (outcome.verdict, outcome.status) == (verdict, status)
    assert journey.passed is (verdict == "served")


def test_a_canary_pool_without_pods_costs_only_the_canary_share(config):
    """The stable pool's picker serves the rule, so an empty canary pool fails only the share
    weighted to it; the stable share is still picked and served."""
    objects = _objects(config, _drop("Deployment", "chat-v2"))
    journey = _journey(config, objects, "chat", "REST https chat.llm.acme.com")
    live = {b.host.split(".")[0]: b for b in journey.trace.branches if b.kind == "route"}
    stable, canary = live[shadow_name("chat-v1")], live[shadow_name("chat-v2")]
    assert stable.outcome.verdict == "served" and round(stable.share) == 90
    assert not canary.outcome.ok and round(canary.share) == 10


def test_no_stable_pod_fails_the_canary_share_too(config):
    objects = _objects(config, _drop("Deployment", "chat-v1"))
    journey = _journey(config, objects, "chat", "REST https chat.llm.acme.com")
    verdicts = {b.outcome.verdict for b in journey.trace.branches if b.kind == "route"}
    assert verdicts == {"picker-503"}


def test_fail_open_says_the_picker_was_skipped(config):
    objects = _objects(config, _drop("Service", "chat-v1-epp"))
    journey = _journey(config, objects, "chat", "REST https chat.llm.acme.com")
    step = next(
        s
        for b in journey.trace.branches
        for s in b.steps
        if s.at == "picker" and "FailOpen" in s.detail
    )
    assert "FailOpen" in step.detail and "did not choose" in step.detail


def test_a_dotted_pool_name_drops_the_rule(config):
    objects = _objects(config, _pool_ref_name("chat-v1.llm-prod"))
    journey = _journey(config, objects, "chat", "REST https chat.llm.acme.com")
    assert any("not translated" in s.detail for s in journey.trace.steps)


def test_a_sidecar_routes_to_the_shadow_service_without_a_picker(config):
    def pool_backend(objects: list[dict]) -> None:
        route = _one(objects, "HTTPRoute", "chat")
        route["spec"]["rules"][-1]["backendRefs"] = [
            {"group": pools.POOL_GROUP, "kind": pools.POOL_KIND, "name": "chat-v1"}
        ]

    objects = _objects(config, pool_backend)
    caller = Workload(NS, "client", sidecar="classic", name="client")
    result = trace(objects, caller, Request(port=8000, host=f"chat.{NS}.svc.cluster.local"))
    branch = result.branches[0]
    assert "-ip-" in branch.host
    assert any(s.at == "picker" and s.detail.startswith("none") for s in branch.steps)


# --- the pool journeys, and the object that breaks each ---------------------------------


def _netpol_picker_rule(ports: list[int] | None):
    """Remove the picker rule of the chat NetworkPolicy (None), or give it these ports."""

    def change(objects: list[dict]) -> None:
        policy = _one(objects, "NetworkPolicy", "chat")
        rules = policy["spec"]["ingress"]
        rule = next(r for r in rules if "llm-d-router-gateway" in str(r["from"]))
        if ports is None:
            rules.remove(rule)
        else:
            rule["ports"] = [{"protocol": "TCP", "port": p} for p in ports]

    return change


def _permissive(objects: list[dict]) -> None:
    for policy in objects:
        if policy["kind"] == "PeerAuthentication":
            policy["spec"]["mtls"] = {"mode": "PERMISSIVE"}


def _picker_sidecar(objects: list[dict]) -> None:
    deployment = _one(objects, "Deployment", "chat-v1-epp")
    deployment["spec"]["template"]["metadata"]["annotations"].pop("sidecar.istio.io/inject")


SCRAPE = "picker chat-v1-epp scrape chat-v1 :15020"
SERVER_PORT = "picker chat-v1-epp scrape of the server port chat-v1 :8000/metrics"
EXT_PROC = "gateway → picker chat-v1-epp:9002"
STRANGER = "other-team/default → picker chat-v1-epp:9002"


def _gateway_off_picker_policy(objects: list[dict]) -> None:
    """The picker's NetworkPolicy without its gateway rule (nothing admitted on 9002)."""
    policy = _one(objects, "NetworkPolicy", "chat-v1-epp")
    policy["spec"]["ingress"] = [r for r in policy["spec"]["ingress"] if "9002" not in str(r)]


POOL_JOURNEYS = [
    # journey, change (None: as rendered), expected, verdict. The plaintext scrape of the
    # server port meets three layers in turn: the NetworkPolicy (the picker only on 15020),
    # STRICT mTLS, then the AuthorizationPolicy (no identity); it works only without all three.
    (SCRAPE, None, "ok", "served"),
    (SCRAPE, _netpol_picker_rule(None), "ok", "dropped"),
    (SERVER_PORT, None, "refused", "dropped"),
    (SERVER_PORT, _netpol_picker_rule([15020, 8000]), "refused", "reset"),
    (SERVER_PORT, _both(_netpol_picker_rule([15020, 8000]), _permissive), "refused", "denied"),
    (
        SERVER_PORT,
        _both(
            _netpol_picker_rule([15020, 8000]),
            _permissive,
            _drop("AuthorizationPolicy", "chat"),
        ),
        "refused",
        "served",
    ),
    (EXT_PROC, None, "ok", "served"),
    (EXT_PROC, _picker_sidecar, "ok", "reset"),
    (EXT_PROC, _gateway_off_picker_policy, "ok", "dropped"),
    # Only the picker's NetworkPolicy keeps other pods off its ext_proc port.
    (STRANGER, None, "refused", "dropped"),
    (STRANGER, _drop("NetworkPolicy", "chat-v1-epp"), "refused", "served"),
]


@pytest.mark.parametrize(
    ("name", "change", "expect", "verdict"),
    POOL_JOURNEYS,
    ids=[f"{p[0]} {p[1].__name__ if p[1] else 'as rendered'} {p[3]}" for p in POOL_JOURNEYS],
)
def test_pool_journeys(config, name, change, expect, verdict):
    journey = _journey(config, _objects(config, change), "chat", name)
    assert journey.expect == expect
    assert journey.trace.final().verdict == verdict
    works = verdict == "served"
    assert journey.passed is (works if expect == "ok" else not works)


def test_every_version_has_its_pool_journeys(config):
    names = {j.name for j in journeys(config) if j.group == "pool"}
    for picker, pod, port in (
        ("chat-v1-epp", "chat-v1", 8000),
        ("chat-v2-epp", "chat-v2", 8000),
        ("coder-v3-epp", "coder-v3", 30000),
    ):
        assert {
            f"picker {picker} scrape {pod} :15020",
            f"picker {picker} scrape of the server port {pod} :{port}/metrics",
            f"gateway → picker {picker}:9002",
            f"other-team/default → picker {picker}:9002",
        } <= names


def test_a_match_rule_journey_reaches_its_version_through_its_pool():
    """The journeys read a pool branch's version from the shadow Service (`pool_of`), so a
    match rule to v2 is checked against the version it reaches, and the split names pools."""
    import yaml

    from mesh.config import parse_config
    from mesh.stackfile import raw_project_config
    from tests.conftest import with_value

    raw = raw_project_config(yaml.safe_load(STACK.read_text()))
    raw = with_value(
        raw,
        "models.chat.matches",
        {"beta": {"version": "v2", "headers": {"x-beta": {"exact": "1"}}}},
    )
    config = parse_config(raw, "llm-pools")
    found = journeys(config, models=["chat"])
    beta = [j for j in found if j.group == "ingress" and j.subset == "v2"]
    assert beta and all(j.passed for j in beta), [(j.name, j.trace.final()) for j in beta]
    (weighted,) = [j for j in found if j.name == "REST https chat.llm.acme.com"]
    assert weighted.trace.split() == "chat-v2 (pool) 10% / chat-v1 (pool) 90%"
