"""The policies of the ml-mesh pack: pulumi-policy wrappers around the pure rules in `rules`.

Each policy calls its entry of `rules.RESOURCE_RULES` / `rules.STACK_RULES` by name, the same
entries `python -m mesh check` evaluates (mesh/checks/pack.py): no rule has a second copy.

Kept apart from `__main__.py`, which starts the analyzer server, so tests can import the
policies and call each one's `validate` with constructed arguments.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

import rules

PACK_NAME = "ml-mesh-protected"


def _resource_policy(name: str, description: str, **options: Any) -> ResourceValidationPolicy:
    """The pack's policy `name`: the rule `rules.RESOURCE_RULES[name]` (also run by `mesh
    check`), given the policy's config as the engine passes it (defaults filled in)."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        rule = rules.RESOURCE_RULES[name]
        for problem in rule(args.resource_type, args.props, args.get_config() or {}):
            report_violation(problem, None)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, **options
    )


def _stack_policy(name: str, description: str) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        rule = rules.STACK_RULES[name]
        resources = ((r.resource_type, r.props) for r in args.resources)
        for problem in rule(resources, args.get_config() or {}):
            report_violation(problem, None)

    return StackValidationPolicy(name=name, description=description, validate=validate)


IMAGE_PINNED = _resource_policy(
    rules.IMAGE_PINNED,
    "Every container image has a version tag or digest; :latest is refused.",
)
LIMITS_SET = _resource_policy(
    rules.RESOURCES_LIMITED,
    "Every container sets CPU and memory requests and limits.",
)
HARDENED_SECURITY_CONTEXT = _resource_policy(
    rules.HARDENED_SECURITY_CONTEXT,
    "Containers run as non-root, without privilege escalation or capabilities, on a read-only "
    "root filesystem, with the RuntimeDefault seccomp profile; no host namespaces.",
)
NO_FAULT_INJECTION = _resource_policy(
    rules.NO_FAULT_INJECTION,
    "No VirtualService route injects delays or aborts.",
)
CANARY_WEIGHT = _resource_policy(
    rules.CANARY_WEIGHT,
    "A canary receives at most the configured share of a model's traffic.",
    config_schema=PolicyConfigSchema(
        properties={
            "maxWeight": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                # The shipped config file's value (policy/config.json): the pack without
                # --policy-pack-config and mesh check agree.
                "default": rules.DEFAULT_MAX_CANARY_WEIGHT,
            }
        }
    ),
)
MTLS_STRICT = _stack_policy(
    rules.MTLS_STRICT,
    "Every namespace with workloads has a namespace-wide STRICT PeerAuthentication, "
    "and nothing in the stack weakens mutual TLS.",
)

POLICIES = [
    IMAGE_PINNED,
    LIMITS_SET,
    HARDENED_SECURITY_CONTEXT,
    MTLS_STRICT,
    NO_FAULT_INJECTION,
    CANARY_WEIGHT,
]
ENFORCEMENT_LEVEL = EnforcementLevel(rules.DEFAULT_ENFORCEMENT)
