"""A small model of how Istio evaluates one ALLOW AuthorizationPolicy, for tests that ask
"would this request get through?" rather than "does the YAML look like this?".

Value matching as Istio documents it for principals and paths: exact, prefix (`abc*`), suffix
(`*abc`) or presence (`*`). A rule matches when one `from` source and one `to` operation match;
fields inside a source or operation are ANDed, values inside a field ORed; `not*` fields exclude.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    principal: str | None  # None: plaintext, no peer identity
    port: int
    method: str
    path: str


def value_matches(pattern: str, value: str) -> bool:
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _any(patterns: list[str] | None, value: str) -> bool:
    return patterns is None or any(value_matches(p, value) for p in patterns)


def _none(patterns: list[str] | None, value: str) -> bool:
    return not patterns or not any(value_matches(p, value) for p in patterns)


def _source_matches(source: dict, request: Request) -> bool:
    principal = request.principal or ""
    if "principals" in source and (not principal or not _any(source["principals"], principal)):
        return False
    return _none(source.get("notPrincipals"), principal)


def _operation_matches(operation: dict, request: Request) -> bool:
    return (
        _any(operation.get("ports"), str(request.port))
        and _any(operation.get("methods"), request.method)
        and _any(operation.get("paths"), request.path)
        and _none(operation.get("notPaths"), request.path)
        and _none(operation.get("notMethods"), request.method)
        and _none(operation.get("notPorts"), str(request.port))
    )


def allows(policy: dict, request: Request) -> bool:
    """Whether the ALLOW policy lets `request` through (no match: denied)."""
    assert policy["spec"]["action"] == "ALLOW"
    for rule in policy["spec"].get("rules", []):
        sources = [f["source"] for f in rule.get("from", [])]
        operations = [t["operation"] for t in rule.get("to", [])]
        if (not sources or any(_source_matches(s, request) for s in sources)) and (
            not operations or any(_operation_matches(o, request) for o in operations)
        ):
            return True
    return False
