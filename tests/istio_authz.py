"""Ask "would this request get through this one ALLOW policy?" with the evaluator `mesh trace`
uses (mesh.trace.authz), for tests that hold a policy object rather than a whole stack."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.trace.authz import AuthzRequest, rule_matches, value_matches

__all__ = ["Request", "allows", "value_matches"]


@dataclass(frozen=True)
class Request:
    principal: str | None  # None: plaintext, no peer identity
    port: int
    method: str
    path: str


def allows(policy: dict, request: Request) -> bool:
    """Whether the ALLOW policy lets `request` through (no rule matches: denied)."""
    assert policy["spec"]["action"] == "ALLOW"
    principal = request.principal
    namespace = principal.split("/ns/", 1)[1].split("/", 1)[0] if principal else None
    asked = AuthzRequest(principal, namespace, request.port, request.method, request.path, "", {})
    return any(rule_matches(rule, asked) for rule in policy["spec"].get("rules", []))
