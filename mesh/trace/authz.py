"""AuthorizationPolicy as the destination's proxy evaluates it.

Follows Istio 1.30 (pilot/pkg/security/authz/builder/builder.go `BuildHTTP` / `build`, the
RBAC filters in the order CUSTOM, DENY, ALLOW; pilot/pkg/security/authz/model/model.go `New`
and `Generate`; matchers in pilot/pkg/security/authz/matcher):

- The policies that apply to a workload are those of its own namespace and of the mesh root
  namespace, without a selector or with a `selector.matchLabels` its labels match
  (pilot/pkg/model/authorization.go `ListAuthorizationPolicies`).
- DENY first: any matching DENY rule answers 403. Then ALLOW: if any ALLOW policy applies, the
  request must match one of their rules, else 403 (`RBAC: access denied`). No ALLOW policy:
  allowed. CUSTOM (external authorizers) is not evaluated here; a trace says so.
- A rule matches when one `from` source, one `to` operation and every `when` condition match;
  fields inside a source or operation are ANDed, values inside a field ORed, `not*` fields
  exclude. An empty rule matches everything; a policy with no rules matches nothing (ALLOW) or
  nothing (DENY).
- Values match exactly, by prefix (`abc*`), by suffix (`*abc`) or for presence (`*`)
  (matcher/string.go `StringMatcher`). `principals` and `namespaces` need a peer identity,
  which only mutual TLS gives: a plaintext caller matches neither.
- `ports` is the port the workload receives on (the container port, after the Service's
  targetPort), `methods` the HTTP method (gRPC is always POST), `paths` the path without the
  query string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.trace.objects import Objects, Pod, d, items, name_of, namespace_of, selects, spec_of


@dataclass(frozen=True)
class AuthzRequest:
    principal: str | None  # None: no mutual TLS, no peer identity
    namespace: str | None
    port: int
    method: str
    path: str
    host: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    policy: str | None = None  # namespace/name of the deciding policy


def value_matches(pattern: str, value: str) -> bool:
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _any(patterns: Any, value: str | None, ignore_case: bool = False) -> bool:
    """An unset or empty field matches anything (Istio generates no matcher for it)."""
    if not items(patterns):
        return True
    if value is None:
        return False
    if ignore_case:
        return any(value_matches(str(p).lower(), value.lower()) for p in items(patterns))
    return any(value_matches(str(p), value) for p in items(patterns))


def _none(patterns: Any, value: str | None, ignore_case: bool = False) -> bool:
    if not items(patterns) or value is None:
        return True
    return not _any(patterns, value, ignore_case)


def _account(principal: str | None) -> str | None:
    """`<ns>/<sa>` of a SPIFFE principal `<td>/ns/<ns>/sa/<sa>`."""
    if principal is None or "/ns/" not in principal or "/sa/" not in principal:
        return None
    namespace = principal.split("/ns/", 1)[1].split("/", 1)[0]
    return f"{namespace}/{principal.split('/sa/', 1)[1]}"


def _trust_domain(principal: str | None) -> str | None:
    return principal.split("/", 1)[0] if principal else None


IP_FIELDS = ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")


def _source(source: dict[str, Any], request: AuthzRequest) -> bool:
    return (
        _any(source.get("principals"), request.principal)
        and _none(source.get("notPrincipals"), request.principal)
        and _any(source.get("namespaces"), request.namespace)
        and _none(source.get("notNamespaces"), request.namespace)
        # serviceAccounts are `<ns>/<sa>` (model.go `New`), trustDomains the principal's first part
        and _any(source.get("serviceAccounts"), _account(request.principal))
        and _none(source.get("notServiceAccounts"), _account(request.principal))
        and _any(source.get("trustDomains"), _trust_domain(request.principal))
        and _none(source.get("notTrustDomains"), _trust_domain(request.principal))
        # A traced request has no source address: an IP condition never matches (so an ALLOW
        # rule that needs one admits nothing, and a DENY rule that needs one refuses nothing).
        and not any(items(source.get(field)) for field in IP_FIELDS)
        # No JWT in a traced request: requestPrincipals never match.
        and _any(source.get("requestPrincipals"), None)
    )


def _operation(operation: dict[str, Any], request: AuthzRequest) -> bool:
    path = request.path.split("?", 1)[0]
    port = str(request.port)
    return (
        _any(operation.get("ports"), port)
        and _none(operation.get("notPorts"), port)
        and _any(operation.get("methods"), request.method)
        and _none(operation.get("notMethods"), request.method)
        and _any(operation.get("paths"), path)
        and _none(operation.get("notPaths"), path)
        and _any(operation.get("hosts"), request.host, ignore_case=True)
        and _none(operation.get("notHosts"), request.host, ignore_case=True)
    )


def _condition(condition: dict[str, Any], request: AuthzRequest) -> bool:
    """`when` keys this trace knows; any other key does not match (documented in the step)."""
    key = str(condition.get("key", ""))
    values, not_values = condition.get("values"), condition.get("notValues")
    if key.startswith("request.headers[") and key.endswith("]"):
        value = request.headers.get(key[len("request.headers[") : -1].lower())
    elif key == "source.principal":
        value = request.principal
    elif key == "source.namespace":
        value = request.namespace
    elif key == "source.serviceAccount":
        value = _account(request.principal)
    elif key == "source.trustDomain":
        value = _trust_domain(request.principal)
    elif key == "destination.port":
        value = str(request.port)
    else:
        return False
    return _any(values, value) and _none(not_values, value)


def rule_matches(rule: dict[str, Any], request: AuthzRequest) -> bool:
    sources = [d(f).get("source") for f in items(rule.get("from"))]
    operations = [d(t).get("operation") for t in items(rule.get("to"))]
    return (
        (not sources or any(_source(d(s), request) for s in sources))
        and (not operations or any(_operation(d(o), request) for o in operations))
        and all(_condition(d(c), request) for c in items(rule.get("when")))
    )


def applicable(objects: Objects, pod: Pod) -> list[dict[str, Any]]:
    root = objects.settings.root_namespace
    found = []
    for policy in objects.kind("AuthorizationPolicy"):
        namespace = namespace_of(policy)
        spec = spec_of(policy)
        selector = d(spec.get("selector")).get("matchLabels")
        if "targetRef" in spec or "targetRefs" in spec:
            continue  # waypoint and gateway policies: not on a sidecar
        # The root namespace's policies apply mesh-wide, to the pods their selector matches
        # (pilot/pkg/model/policyattachment.go `isSelected`).
        mesh_wide = namespace == root and (not selector or selects(selector, pod.labels))
        own = namespace == pod.namespace and (not selector or selects(selector, pod.labels))
        if mesh_wide or own:
            found.append(policy)
    return found


def decide(objects: Objects, pod: Pod, request: AuthzRequest) -> Decision:
    return decide_policies(applicable(objects, pod), request)


DENIED = {
    "sidecar": "403 RBAC: access denied",
    "waypoint": "403 RBAC: access denied (at the waypoint)",
    "ztunnel": "RBAC denied at ztunnel: the connection is closed",
}


def decide_policies(
    policies: list[dict[str, Any]], request: AuthzRequest, what: str = "sidecar"
) -> Decision:
    """DENY, then ALLOW, over the policies that apply where the request is evaluated: a
    sidecar or a waypoint (Envoy RBAC: 403) or ztunnel (which closes the connection)."""
    denied = DENIED[what]
    by_action: dict[str, list[dict[str, Any]]] = {}
    for policy in policies:
        by_action.setdefault(str(spec_of(policy).get("action", "ALLOW")), []).append(policy)
    for policy in by_action.get("DENY", []):
        for index, rule in enumerate(items(spec_of(policy).get("rules"))):
            if rule_matches(d(rule), request):
                return Decision(False, f"DENY rule {index} matches: {denied}", _key(policy))
    allow = by_action.get("ALLOW", [])
    if not allow:
        note = " (CUSTOM policies not evaluated)" if "CUSTOM" in by_action else ""
        where = "selects the pod" if what != "waypoint" else "targets the Service or waypoint"
        return Decision(True, f"no ALLOW policy {where}: allowed{note}")
    for policy in allow:
        for index, rule in enumerate(items(spec_of(policy).get("rules"))):
            if rule_matches(d(rule), request):
                return Decision(True, f"rule {index} allows it", _key(policy))
    names = ", ".join(_key(p) for p in allow)
    who = request.principal or "no peer identity (plaintext)"
    return Decision(
        False,
        f"no rule of the ALLOW policies ({names}) matches {who}, port {request.port}"
        f"{'' if what == 'ztunnel' else f', {request.method} {request.path}'}: {denied}",
        _key(allow[0]),
    )


def _key(policy: dict[str, Any]) -> str:
    return f"{namespace_of(policy)}/{name_of(policy)}"
