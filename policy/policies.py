"""The policies of the ml-mesh pack: pulumi-policy wrappers around the pure rules in `rules`.

Kept apart from `__main__.py`, which starts the analyzer server, so tests can import the
policies and call each one's `validate` with constructed arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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


def _resource_policy(
    name: str, description: str, rule: Callable[[str, Mapping], list[str]]
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for problem in rule(args.resource_type, args.props):
            report_violation(problem, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def _canary_weight(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    maximum = int(args.get_config().get("maxWeight", rules.DEFAULT_MAX_CANARY_WEIGHT))
    for problem in rules.canary_weight_problems(args.resource_type, args.props, maximum):
        report_violation(problem, None)


def _mtls_strict(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for problem in rules.mtls_problems((r.resource_type, r.props) for r in args.resources):
        report_violation(problem, None)


IMAGE_PINNED = _resource_policy(
    "image-pinned",
    "Every container image has a version tag or digest; :latest is refused.",
    rules.image_problems,
)
LIMITS_SET = _resource_policy(
    "resources-limited",
    "Every container sets CPU and memory requests and limits.",
    rules.limit_problems,
)
HARDENED_SECURITY_CONTEXT = _resource_policy(
    "hardened-security-context",
    "Containers run as non-root, without privilege escalation or capabilities, on a read-only "
    "root filesystem, with the RuntimeDefault seccomp profile; no host namespaces.",
    rules.security_context_problems,
)
NO_FAULT_INJECTION = _resource_policy(
    "no-fault-injection",
    "No VirtualService route injects delays or aborts.",
    rules.fault_problems,
)
CANARY_WEIGHT = ResourceValidationPolicy(
    name="canary-weight-within-maximum",
    description="A canary receives at most the configured share of a model's traffic.",
    validate=_canary_weight,
    config_schema=PolicyConfigSchema(
        properties={
            "maxWeight": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "default": rules.DEFAULT_MAX_CANARY_WEIGHT,
            }
        }
    ),
)
MTLS_STRICT = StackValidationPolicy(
    name="mtls-strict",
    description="Every namespace with workloads has a namespace-wide STRICT PeerAuthentication, "
    "and nothing in the stack weakens mutual TLS.",
    validate=_mtls_strict,
)

POLICIES = [
    IMAGE_PINNED,
    LIMITS_SET,
    HARDENED_SECURITY_CONTEXT,
    MTLS_STRICT,
    NO_FAULT_INJECTION,
    CANARY_WEIGHT,
]
ENFORCEMENT_LEVEL = EnforcementLevel.MANDATORY
