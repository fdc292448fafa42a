"""Each policy of the pack, called through pulumi-policy's own `validate` with the arguments the
analyzer would build (properties wrapped in its unknown-checking proxy), no CLI."""

from __future__ import annotations

import copy

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

import policies
import rules

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"
PEER_AUTHENTICATION = "kubernetes:security.istio.io/v1:PeerAuthentication"
DESTINATION_RULE = "kubernetes:networking.istio.io/v1:DestinationRule"

HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
LIMITED = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
}


def _deployment(**container_overrides) -> dict:
    container = {
        "name": "server",
        "image": "tensorflow/serving:2.16.1",
        "resources": copy.deepcopy(LIMITED),
        "securityContext": copy.deepcopy(HARDENED),
        **container_overrides,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sentiment-v1", "namespace": "ml-serving"},
        "spec": {
            "template": {
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": "fetch-model",
                            "image": "amazon/aws-cli:2.17.37",
                            "resources": copy.deepcopy(LIMITED),
                            "securityContext": copy.deepcopy(HARDENED),
                        }
                    ],
                    "containers": [container],
                }
            }
        },
    }


def _virtual_service(weights: dict[str, int], canary: str | None = "v2", **route_extra) -> dict:
    metadata: dict = {"name": "sentiment", "namespace": "ml-serving"}
    if canary:
        metadata["annotations"] = {"ml-mesh.io/canary": canary}
    route = [
        {
            "destination": {"host": "sentiment.ml-serving.svc.cluster.local", "subset": s},
            "weight": w,
        }
        for s, w in weights.items()
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": metadata,
        "spec": {"http": [{"name": "http-rest", "route": route, **route_extra}]},
    }


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=True,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _violations(
    policy: ResourceValidationPolicy, resource_type: str, props: dict, config: dict | None = None
) -> list[str]:
    args = ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(props),
        f"urn:pulumi:prod::ml-mesh::{resource_type}::x",
        props["metadata"]["name"],
        _options(),
        None,
        config,
    )
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def _stack_violations(
    policy: StackValidationPolicy, resources: list[tuple[str, dict]]
) -> list[str]:
    args = StackValidationArgs(
        [
            PolicyResource(
                resource_type,
                unknown_checking_proxy(props),
                f"urn:pulumi:prod::ml-mesh::{resource_type}::{props['metadata']['name']}",
                props["metadata"]["name"],
                _options(),
                None,
                None,
                [],
                {},
            )
            for resource_type, props in resources
        ]
    )
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def test_the_pack_enforces_every_policy_and_names_are_unique():
    names = [p.name for p in policies.POLICIES]
    assert len(set(names)) == len(names) == 6
    assert policies.ENFORCEMENT_LEVEL is EnforcementLevel.MANDATORY


def test_a_hardened_limited_pinned_deployment_passes_every_resource_policy():
    for policy in policies.POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            assert _violations(policy, DEPLOYMENT, _deployment()) == [], policy.name


@pytest.mark.parametrize(
    "image",
    ["tensorflow/serving", "tensorflow/serving:latest", "registry:5000/team/model"],
)
def test_unpinned_images_are_refused(image):
    (problem,) = _violations(policies.IMAGE_PINNED, DEPLOYMENT, _deployment(image=image))
    assert "'server'" in problem and image in problem


@pytest.mark.parametrize(
    "image", ["registry:5000/team/model:1.0", "ghcr.io/acme/model@sha256:" + "a" * 64]
)
def test_pinned_images_pass(image):
    assert _violations(policies.IMAGE_PINNED, DEPLOYMENT, _deployment(image=image)) == []


def test_missing_limits_are_refused():
    props = _deployment(resources={"requests": {"cpu": "1", "memory": "1Gi"}})
    (problem,) = _violations(policies.LIMITS_SET, DEPLOYMENT, props)
    assert problem == "container 'server': no limits.cpu, limits.memory"


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({**HARDENED, "allowPrivilegeEscalation": True}, "allowPrivilegeEscalation: false"),
        ({**HARDENED, "readOnlyRootFilesystem": False}, "readOnlyRootFilesystem: true"),
        ({**HARDENED, "capabilities": {"drop": ["NET_RAW"]}}, "capabilities.drop: [ALL]"),
        (
            {**HARDENED, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
            "nothing added",
        ),
        ({**HARDENED, "privileged": True}, "no privileged: true"),
        ({**HARDENED, "runAsNonRoot": False}, "runAsNonRoot: true"),
        ({**HARDENED, "runAsUser": 0}, "no runAsUser 0"),
        ({**HARDENED, "seccompProfile": {"type": "Unconfined"}}, "seccompProfile RuntimeDefault"),
    ],
)
def test_weak_security_contexts_are_refused(context, expected):
    props = _deployment(securityContext=context)
    (problem,) = _violations(policies.HARDENED_SECURITY_CONTEXT, DEPLOYMENT, props)
    assert problem.startswith("container 'server' needs") and expected in problem


def test_host_namespaces_are_refused():
    props = _deployment()
    props["spec"]["template"]["spec"]["hostNetwork"] = True
    assert _violations(policies.HARDENED_SECURITY_CONTEXT, DEPLOYMENT, props) == [
        "pod sets hostNetwork: true"
    ]


def test_fault_injection_is_refused():
    props = _virtual_service({"v1": 90, "v2": 10}, fault={"abort": {"httpStatus": 503}})
    (problem,) = _violations(policies.NO_FAULT_INJECTION, VIRTUAL_SERVICE, props)
    assert "'http-rest' injects faults" in problem
    assert (
        _violations(policies.NO_FAULT_INJECTION, VIRTUAL_SERVICE, _virtual_service({"v1": 100}))
        == []
    )


@pytest.mark.parametrize(
    ("weights", "config", "violations"),
    [
        ({"v1": 90, "v2": 10}, None, 0),
        ({"v1": 50, "v2": 50}, None, 0),  # the default maximum is 50
        ({"v1": 40, "v2": 60}, None, 1),
        ({"v2": 100}, None, 1),  # promotion by weight: make v2 stable instead
        ({"v1": 9, "v2": 1}, {"maxWeight": 5}, 1),  # weights are relative: 10%
        ({"v1": 95, "v2": 5}, {"maxWeight": 5}, 0),
        ({"v1": 100}, {"maxWeight": 0}, 0),  # canary at 0%: warm, not routed
    ],
)
def test_canary_weight_is_bounded_by_the_configured_maximum(weights, config, violations):
    props = _virtual_service(weights)
    found = _violations(policies.CANARY_WEIGHT, VIRTUAL_SERVICE, props, config)
    assert len(found) == violations, found


def test_a_virtual_service_without_canary_is_not_bounded():
    props = _virtual_service({"v1": 100}, canary=None)
    assert _violations(policies.CANARY_WEIGHT, VIRTUAL_SERVICE, props, {"maxWeight": 0}) == []


def _peer(mode: str, **spec) -> dict:
    return {
        "metadata": {"name": "default", "namespace": "ml-serving"},
        "spec": {"mtls": {"mode": mode}, **spec},
    }


def test_strict_mtls_for_the_workload_namespace_passes():
    resources = [(DEPLOYMENT, _deployment()), (PEER_AUTHENTICATION, _peer("STRICT"))]
    assert _stack_violations(policies.MTLS_STRICT, resources) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "namespace 'ml-serving' runs workloads but has no namespace-wide"),
        ([(PEER_AUTHENTICATION, _peer("PERMISSIVE"))], "sets mode PERMISSIVE"),
        (
            [(PEER_AUTHENTICATION, _peer("STRICT", selector={"matchLabels": {"app": "x"}}))],
            "no namespace-wide",
        ),
        (
            [
                (PEER_AUTHENTICATION, _peer("STRICT")),
                (
                    DESTINATION_RULE,
                    {
                        "metadata": {"name": "sentiment", "namespace": "ml-serving"},
                        "spec": {"host": "x", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
                    },
                ),
            ],
            "disables client TLS",
        ),
    ],
)
def test_missing_or_weakened_mtls_is_refused(extra, expected):
    found = _stack_violations(policies.MTLS_STRICT, [(DEPLOYMENT, _deployment()), *extra])
    assert any(expected in problem for problem in found), found


def test_unknown_values_during_preview_surface_as_pulumi_policy_expects():
    """A value not known until `up` raises UnknownValueError, which the analyzer reports as
    'can't run policy during preview' instead of a wrong verdict."""
    props = _deployment(image=UNKNOWN_STRING_VALUE)
    with pytest.raises(UnknownValueError):
        _violations(policies.IMAGE_PINNED, DEPLOYMENT, props)


def test_every_policy_calls_its_rule_by_name(monkeypatch):
    """The policies call `rules.RESOURCE_RULES` / `STACK_RULES`, the entries `python -m mesh
    check` evaluates too (mesh/checks/pack.py): replacing the rule changes the policy."""
    assert {p.name for p in policies.POLICIES} == {*rules.RESOURCE_RULES, *rules.STACK_RULES}
    monkeypatch.setattr(
        rules, "canary_weight_problems", lambda resource_type, props, maximum: [f"stub {maximum}"]
    )
    found = _violations(policies.CANARY_WEIGHT, VIRTUAL_SERVICE, _virtual_service({"v1": 100}))
    assert found == [f"stub {rules.DEFAULT_MAX_CANARY_WEIGHT}"]
    monkeypatch.setattr(rules, "mtls_problems", lambda resources: ["stub mtls"])
    assert _stack_violations(policies.MTLS_STRICT, []) == ["stub mtls"]


def test_a_canary_at_55_percent_is_over_the_shipped_cap():
    """The case `mesh check prod` refuses (tests/test_policy_rules.py) refused by the pack,
    with the cap of the shipped config file (policy/config.json)."""
    config = rules.policy_config(rules.pack_config(), rules.CANARY_WEIGHT)
    assert config == {"maxWeight": 50}
    (found,) = _violations(
        policies.CANARY_WEIGHT,
        VIRTUAL_SERVICE,
        _virtual_service({"v3": 45, "v4": 55}, "v4"),
        config,
    )
    assert found == (
        "route 'http-rest' sends 55% to canary 'v4', above the maximum of 50%; promote by "
        "making it the stable version"
    )


@pytest.mark.parametrize(
    ("config", "policy", "level"),
    [
        ({}, rules.CANARY_WEIGHT, "mandatory"),
        ({"all": "advisory"}, rules.CANARY_WEIGHT, "advisory"),
        ({"all": "advisory", rules.CANARY_WEIGHT: "mandatory"}, rules.CANARY_WEIGHT, "mandatory"),
        ({rules.CANARY_WEIGHT: {"enforcementLevel": "disabled"}}, rules.CANARY_WEIGHT, "disabled"),
        ({rules.CANARY_WEIGHT: "disabled"}, rules.MTLS_STRICT, "mandatory"),
    ],
)
def test_enforcement_levels_resolve_as_the_engine_does(config, policy, level):
    assert rules.enforcement(config, policy) == level


def test_a_header_match_route_to_the_canary_is_not_capped_by_the_pack():
    """A/B: the route all of whose entries carry a header condition sends 100% of the requests
    that ask for it to the canary; only the weighted route is held to the cap."""
    vs = _virtual_service({"v1": 95, "v2": 5}, "v2")
    to_canary = {"destination": {"host": "sentiment.ml-serving.svc.cluster.local", "subset": "v2"}}
    testers = {
        "name": "testers-http-rest",
        "match": [{"name": "testers", "headers": {"x-tester": {"exact": "1"}}}],
        "route": [to_canary],
    }
    vs["spec"]["http"].insert(0, testers)
    assert _violations(policies.CANARY_WEIGHT, VIRTUAL_SERVICE, vs, {"maxWeight": 50}) == []
    port_only = {**testers, "match": [{"port": 8500}]}  # every request of the port: weighted
    vs["spec"]["http"][0] = port_only
    (found,) = _violations(policies.CANARY_WEIGHT, VIRTUAL_SERVICE, vs, {"maxWeight": 50})
    assert found.startswith("route 'testers-http-rest' sends 100% to canary 'v2'")
