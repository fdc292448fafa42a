"""The policy pack's rules against what the program really registers: the protected prod stack
passes every one, and each weakening the pack exists for is caught.

The rules are pure (policy/rules.py, standard library only), so they run here in the stack's
venv; the pulumi-policy wrappers are tested in the pack's own venv (`make policy-test`)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from mesh.checks import check
from mesh.config import parse_config
from mesh.plan import build_plan
from policy import rules
from tests.conftest import PROJECT_DIR, plan_objects, run_mesh, with_value
from tests.harness import run_program

RESOURCE_RULES = {
    "image": rules.image_problems,
    "limits": rules.limit_problems,
    "security context": rules.security_context_problems,
    "fault": rules.fault_problems,
    "canary weight": lambda t, p: rules.canary_weight_problems(t, p, 50),
}


def _resources(raw: dict, stack: str) -> list[tuple[str, dict]]:
    """(Pulumi type token, inputs) of every Kubernetes resource, as the analyzer sees them."""
    return [(r.type, r.object()) for r in run_program(raw, stack=stack).kubernetes]


def _resource_problems(resources: list[tuple[str, dict]]) -> dict[str, list[str]]:
    found = {
        name: [p for resource_type, props in resources for p in rule(resource_type, props)]
        for name, rule in RESOURCE_RULES.items()
    }
    found["mtls"] = rules.mtls_problems(resources)
    return {name: problems for name, problems in found.items() if problems}


def test_the_prod_stack_passes_every_policy(prod):
    resources = _resources(prod, "prod")
    assert {rules.kind_of(t) for t, _ in resources} >= {"Deployment", "VirtualService"}
    assert _resource_problems(resources) == {}


def test_dev_fails_only_for_mtls_which_it_leaves_to_the_mesh(dev):
    assert list(_resource_problems(_resources(dev, "dev"))) == ["mtls"]
    strict = with_value(dev, "security.mtls", "STRICT")
    assert _resource_problems(_resources(strict, "dev")) == {}


@pytest.mark.parametrize(
    ("path", "value", "policy"),
    [
        ("models.sentiment.fault", {"abort": {"httpStatus": 503, "percent": 5}}, "fault"),
        ("models.sentiment.canary.weight", 60, "canary weight"),
        ("models.sentiment.canary.weight", 100, "canary weight"),
    ],
)
def test_weakening_a_dev_stack_is_caught_by_the_matching_policy(dev, path, value, policy):
    raw = with_value(with_value(dev, "security.mtls", "STRICT"), path, value)
    assert list(_resource_problems(_resources(raw, "dev"))) == [policy]


def test_the_rules_read_the_canary_annotation_the_program_writes(prod):
    from mesh.traffic import CANARY_ANNOTATION

    assert rules.CANARY_ANNOTATION == CANARY_ANNOTATION
    services = {
        props["metadata"]["name"]: props
        for resource_type, props in _resources(prod, "prod")
        if rules.kind_of(resource_type) == "VirtualService"
    }
    assert services["sentiment"]["metadata"]["annotations"] == {CANARY_ANNOTATION: "v4"}
    assert "annotations" not in services["fraud"]["metadata"]  # no canary, nothing to bound


# --- the pack's rules in mesh check (mesh/checks/pack.py) ----------------------------------

POLICY_PYTHON = PROJECT_DIR / "policy" / "venv" / "bin" / "python"
CANARY_CODE = "POLICY/canary-weight-within-maximum"


def _pack_findings(raw: dict, stack: str) -> list:
    config = parse_config(raw, stack)
    return [f for f in check(config, build_plan(config).objects()) if f.code.startswith("POLICY/")]


def test_a_prod_canary_over_the_pack_s_cap_is_a_mesh_check_error(prod):
    found = _pack_findings(with_value(prod, "models.sentiment.canary.weight", 55), "prod")
    assert [(f.severity, f.code, f.path, f.resource) for f in found] == [
        (
            "error",
            CANARY_CODE,
            "models.sentiment.canary.weight",
            "VirtualService ml-serving/sentiment",
        )
    ] * 2
    assert [f.message for f in found] == [
        f"route {route!r} sends 55% to canary 'v4', above the maximum of 50%; promote by making "
        "it the stable version"
        for route in ("grpc", "http-rest")
    ]
    assert _pack_findings(with_value(prod, "models.sentiment.canary.weight", 50), "prod") == []


def test_the_pack_applies_to_protected_stacks_only(dev):
    assert _pack_findings(with_value(dev, "models.sentiment.canary.weight", 55), "dev") == []


def test_mesh_check_exits_1_on_a_pack_violation(tmp_path):
    document = yaml.safe_load((PROJECT_DIR / "Pulumi.prod.yaml").read_text())
    document["config"]["ml-mesh:models"]["sentiment"]["canary"]["weight"] = 55
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document))
    result = run_mesh("check", str(path))
    assert result.returncode == 1
    assert (
        f"Error [{CANARY_CODE}] (VirtualService ml-serving/sentiment models.sentiment.canary.weight) "
        in result.stdout
    )
    rendered = run_mesh("render", str(path))
    assert rendered.returncode == 2, "render refuses what the pack refuses"
    assert f"fails mesh checks: error {CANARY_CODE}" in rendered.stderr


def test_the_program_refuses_a_pack_violation_without_the_pack(prod):
    """`pulumi up -s prod` run without --policy-pack still holds the pack's rules."""
    with pytest.raises(Exception, match=CANARY_CODE):
        run_program(with_value(prod, "models.sentiment.canary.weight", 55), stack="prod")


def test_mesh_check_and_the_pack_call_the_same_rule(prod, monkeypatch):
    """Replace the one implementation: mesh check reports what the replacement says (the
    pack's own tests do the same to the pack: policy/tests/test_policies.py)."""

    def stub(resource_type, props, maximum):
        kind = rules.kind_of(resource_type)
        return (
            [f"stub {kind} {props['metadata']['name']} {maximum}"]
            if kind == "VirtualService"
            else []
        )

    monkeypatch.setattr(rules, "canary_weight_problems", stub)
    found = _pack_findings(prod, "prod")
    assert sorted(f.message for f in found) == [
        "stub VirtualService fraud 50",
        "stub VirtualService sentiment 50",
    ]


@pytest.mark.parametrize(
    ("config", "severity"),
    [
        ({"canary-weight-within-maximum": {"maxWeight": 20}}, "error"),
        (
            {"canary-weight-within-maximum": {"maxWeight": 20, "enforcementLevel": "advisory"}},
            "warning",
        ),
        ({"all": "advisory", "canary-weight-within-maximum": {"maxWeight": 20}}, "warning"),
        ({"all": "disabled", "canary-weight-within-maximum": {"maxWeight": 20}}, None),
        ({"canary-weight-within-maximum": "disabled"}, None),
    ],
    ids=["cap", "advisory", "all-advisory", "all-disabled", "policy-disabled"],
)
def test_the_pack_config_file_sets_the_cap_and_the_levels(
    prod, tmp_path, monkeypatch, config, severity
):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    monkeypatch.setattr(rules, "CONFIG_FILE", path)
    found = _pack_findings(with_value(prod, "models.sentiment.canary.weight", 25), "prod")
    assert [f.severity for f in found] == ([severity] * 2 if severity else [])
    if severity:
        assert "above the maximum of 20%" in found[0].message


def test_the_shipped_pack_config_sets_the_default_cap():
    """The workflows pass the file; without it (or without maxWeight) the policy's default
    is the same 50, a constant that no file can break at import."""
    config = json.loads((PROJECT_DIR / "policy" / "config.json").read_text())
    assert config == {"canary-weight-within-maximum": {"maxWeight": 50}}
    assert rules.DEFAULT_MAX_CANARY_WEIGHT == 50
    assert rules.max_canary_weight({}) == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"all": "disabled"',
            "policy/config.json: not valid JSON at line 1, column 19: Expecting ',' delimiter; "
            'write an object such as {"canary-weight-within-maximum": {"maxWeight": 50}}',
        ),
        (
            "[50]",
            "policy/config.json: the policy pack config must be a JSON object such as "
            '{"canary-weight-within-maximum": {"maxWeight": 50}}, not a list',
        ),
        (
            '{"all": "off"}',
            "policy/config.json: all: 'off' is not one of advisory, mandatory, remediate, disabled",
        ),
        (
            '{"image-pinned": {"enforcementLevel": "warn"}}',
            "policy/config.json: image-pinned.enforcementLevel: 'warn' is not one of advisory, "
            "mandatory, remediate, disabled",
        ),
        (
            '{"canary-weight-within-maximum": {"maxWeight": "60"}}',
            "policy/config.json: canary-weight-within-maximum.maxWeight: '60' is not an integer "
            "from 0 to 100",
        ),
        (
            '{"canary-weight-within-maximum": {"maxWeight": 101}}',
            "policy/config.json: canary-weight-within-maximum.maxWeight: 101 is not an integer "
            "from 0 to 100",
        ),
    ],
    ids=["json", "list", "level", "policy-level", "cap-text", "cap-range"],
)
def test_a_pack_config_that_does_not_read_is_one_message_naming_the_file(text, message):
    with pytest.raises(rules.PackConfigError) as raised:
        rules.parse_pack_config(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "config",
    [
        {"all": "disabled"},
        {"canary-weight-within-maximum": "advisory"},
        {"canary-weight-within-maximum": {"enforcementLevel": "advisory"}},
        {},
    ],
    ids=["all-disabled", "bare-level", "level-only", "empty"],
)
def test_a_pack_config_pulumi_accepts_reads_without_a_cap(config):
    assert rules.parse_pack_config(json.dumps(config)) == config
    cap = rules.max_canary_weight(rules.policy_config(config, rules.CANARY_WEIGHT))
    assert cap == rules.DEFAULT_MAX_CANARY_WEIGHT


def _project_with_pack_config(tmp_path, text: str):
    """A copy of the project whose policy/config.json is `text` (the file is read lazily)."""
    import shutil

    path = tmp_path / "ml-mesh"
    ignored = shutil.ignore_patterns(".git", "venv", "__pycache__", "*_cache", "bench", "docs")
    shutil.copytree(PROJECT_DIR, path, ignore=ignored, symlinks=True)
    (path / "policy" / "config.json").write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "returncode", "stderr"),
    [
        ('{"all": "disabled"}', 0, ""),
        ('{"canary-weight-within-maximum": "advisory"}', 0, ""),
        (
            "{maxWeight: 50}",
            2,
            "ml-mesh: invalid policy pack config: policy/config.json: not valid JSON at line 1, "
            "column 2: Expecting property name enclosed in double quotes; write an object such "
            'as {"canary-weight-within-maximum": {"maxWeight": 50}}\n',
        ),
    ],
    ids=["all-disabled", "bare-level", "malformed"],
)
def test_every_command_survives_any_pack_config(tmp_path, text, returncode, stderr):
    """The file used to be read at import (KeyError, JSONDecodeError before any command)."""
    project = _project_with_pack_config(tmp_path, text)
    result = run_mesh("check", "prod", cwd=project)
    assert (result.returncode, result.stderr) == (returncode, stderr)
    assert "Traceback" not in result.stderr
    # Unprotected stacks never read the pack's config: dev renders whatever the file says.
    assert run_mesh("render", "dev", "-q", cwd=project).returncode == 0


# --- the cap applies to the weighted split, not to a match rule's route --------------------

TESTERS = {"testers": {"version": "v4", "headers": {"x-tester": {"exact": "1"}}}}


def _routes(raw: dict) -> dict[str, dict]:
    (service,) = [
        o
        for o in plan_objects(raw, "prod")
        if o["kind"] == "VirtualService" and o["metadata"]["name"] == "sentiment"
    ]
    return {route["name"]: route for route in service["spec"]["http"]}


def test_the_routes_traffic_builds_are_told_apart_by_their_conditions(prod):
    """Match routes (every entry carries a header or cookie condition) against the per-port
    default routes (no match, or entries selecting only port/gateway), from mesh/traffic.py's
    real output, names ignored."""
    raw = with_value(prod, "models.sentiment.matches", TESTERS)
    raw = with_value(
        raw, "models.sentiment.matches.cookie-beta", {"version": "v4", "cookie": "b=1"}
    )
    routes = _routes(raw)
    weighted = {name: rules.is_weighted_route(route) for name, route in routes.items()}
    assert weighted == {
        "cookie-beta-grpc": False,
        "testers-grpc": False,
        "grpc": True,
        "cookie-beta-http-rest": False,
        "testers-http-rest": False,
        "http-rest": True,
    }
    renamed = {**routes["testers-grpc"], "name": "grpc"}
    assert rules.is_weighted_route(renamed) is False, "told apart by content, not by name"


@pytest.mark.parametrize(
    ("route", "weighted"),
    [
        ({"route": []}, True),
        ({"match": [{"port": 8500}]}, True),
        (
            {"match": [{"gateways": ["mesh"], "port": 8500}, {"headers": {"a": {"exact": "1"}}}]},
            True,
        ),
        ({"match": [{"headers": {"a": {"exact": "1"}}}]}, False),
        ({"match": [{"uri": {"prefix": "/beta"}}, {"queryParams": {"b": {"exact": "1"}}}]}, False),
        ({"match": [{"sourceLabels": {"app": "x"}}]}, True),
    ],
    ids=["no-match", "port-only", "one-unconditioned-entry", "header", "uri-query", "source"],
)
def test_a_route_is_weighted_when_some_request_takes_it_unconditionally(route, weighted):
    assert rules.is_weighted_route(route) is weighted


def test_a_header_match_to_the_canary_passes_the_cap(prod):
    """Issue repro: `matches: {testers: {version: v4, ...}}` on prod was refused twice
    ("route 'testers-grpc' sends 100% to canary 'v4'")."""
    raw = with_value(prod, "models.sentiment.matches", TESTERS)
    assert _pack_findings(raw, "prod") == []
    over = with_value(raw, "models.sentiment.canary.weight", 55)
    assert [f.message.split(" sends")[0] for f in _pack_findings(over, "prod")] == [
        "route 'grpc'",
        "route 'http-rest'",
    ], "the weighted routes are still capped, the match routes are not"


def test_each_object_gets_the_type_token_pulumi_kubernetes_registers(prod):
    registered = run_program(prod, stack="prod").kubernetes
    assert {r.type for r in registered} >= {
        "kubernetes:core/v1:Namespace",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:networking.istio.io/v1:VirtualService",
    }
    for resource in registered:
        inputs = resource.object()
        assert rules.resource_type(inputs["apiVersion"], inputs["kind"]) == resource.type


def _server(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def _fetcher(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["initContainers"][0]


@pytest.mark.parametrize(
    ("container", "field", "value", "policy", "config_path"),
    [
        (
            _server,
            "image",
            "tensorflow/serving:latest",
            "image-pinned",
            "models.sentiment.versions.v4.image",
        ),
        (_fetcher, "image", "amazon/aws-cli", "image-pinned", "images.modelFetcher"),
        (_server, "resources", {}, "resources-limited", "models.sentiment.versions.v4.resources"),
        (_server, "securityContext", {}, "hardened-security-context", None),
    ],
    ids=["server-image", "fetcher-image", "limits", "security-context"],
)
def test_a_violation_names_the_key_to_edit(prod, container, field, value, policy, config_path):
    """Objects a builder bug could produce (the config refuses such values up front)."""
    config = parse_config(prod, "prod")
    objects = build_plan(config).objects()
    (deployment,) = [
        o for o in objects if o["metadata"]["name"] == "sentiment-v4" and o["kind"] == "Deployment"
    ]
    container(deployment)[field] = value
    found = [f for f in check(config, objects) if f.code.startswith("POLICY/")]
    assert {(f.severity, f.code, f.path) for f in found} == {
        ("error", f"POLICY/{policy}", config_path)
    }
    assert {f.resource for f in found} == {"Deployment ml-serving/sentiment-v4"}


@pytest.mark.skipif(not POLICY_PYTHON.exists(), reason="needs policy/venv (make policy-test)")
def test_the_pack_refuses_the_same_object_with_the_same_message(prod):
    """The VirtualService mesh check refuses, given to the pack's own policy in its own venv
    (pulumi-policy), is refused with exactly the same messages: one rule, two callers."""
    raw = with_value(prod, "models.sentiment.canary.weight", 55)
    expected = [f.message for f in _pack_findings(raw, "prod")]
    (service,) = [
        o
        for o in plan_objects(raw, "prod")
        if o["kind"] == "VirtualService" and o["metadata"]["name"] == "sentiment"
    ]
    script = (
        "import json, sys\n"
        "import policies, rules\n"
        "from tests.test_policies import _violations\n"
        "props = json.load(sys.stdin)\n"
        "config = rules.policy_config(rules.pack_config(), rules.CANARY_WEIGHT)\n"
        "kind = rules.resource_type(props['apiVersion'], props['kind'])\n"
        "print(json.dumps(_violations(policies.CANARY_WEIGHT, kind, props, config)))\n"
    )
    result = subprocess.run(
        [str(POLICY_PYTHON), "-c", script],
        cwd=PROJECT_DIR / "policy",
        input=json.dumps(service),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


# --- the stricter of two pack configs (mesh diff: the base's and the head's) ---------------

CAP = rules.CANARY_WEIGHT


@pytest.mark.parametrize(
    ("base", "head", "level", "cap", "loosened"),
    [
        (
            {CAP: {"maxWeight": 50}},
            {CAP: {"maxWeight": 100}},
            "mandatory",
            50,
            [(f"{CAP}.maxWeight", 50, 100)],
        ),
        ({CAP: {"maxWeight": 50}}, {CAP: {"maxWeight": 30}}, "mandatory", 30, []),
        ({}, {CAP: "advisory"}, "mandatory", 50, [(CAP, "mandatory", "advisory")]),
        ({CAP: "advisory"}, {CAP: "disabled"}, "advisory", 50, [(CAP, "advisory", "disabled")]),
        ({"all": "disabled"}, {}, "mandatory", 50, []),
        ({CAP: "remediate"}, {CAP: "mandatory"}, "mandatory", 50, []),
        (
            {CAP: {"enforcementLevel": "advisory", "maxWeight": 20}},
            {"all": "advisory"},
            "advisory",
            20,
            [(f"{CAP}.maxWeight", 20, 50)],
        ),
    ],
    ids=[
        "cap-raised",
        "cap-lowered",
        "level-lowered",
        "advisory-to-disabled",
        "tightened",
        "remediate-is-mandatory",
        "cap-defaulted",
    ],
)
def test_the_stricter_pack_config_wins_and_each_loosening_is_named(
    base, head, level, cap, loosened
):
    stricter = rules.stricter_pack_config(base, head)
    assert (stricter[CAP]["enforcementLevel"], stricter[CAP]["maxWeight"]) == (level, cap)
    assert [c for c in rules.pack_loosenings(base, head) if c[0].startswith(CAP)] == loosened
    assert rules.stricter_pack_config(stricter, head) == stricter, "holds the stricter already"
