"""The policy pack's rules against what the program really registers: the protected prod stack
passes every one, and each weakening the pack exists for is caught.

The rules are pure (policy/rules.py, standard library only), so they run here in the stack's
venv; the pulumi-policy wrappers are tested in the pack's own venv (`make policy-test`)."""

from __future__ import annotations

import pytest

from policy import rules
from tests.conftest import with_value
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
