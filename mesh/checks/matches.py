"""VirtualService rules no request can reach (IST0130) and matches a prior rule already takes
(IST0131), as istiod's validation finds them.

Istio has no analyzer of its own for these: `VirtualServiceUnreachableRule` and
`VirtualServiceIneffectiveMatch` are warnings of the VirtualService validation
(pkg/config/validation/validation.go `ValidateVirtualService`: `analyzeUnreachableHTTPRules`,
`analyzeUnreachableTCPRules`, `analyzeUnreachableTLSRules`, with `genMatchHTTPRoutes` and
`coveredValidation` for overlapping URI prefixes), which `istioctl analyze` reports through
pkg/config/analysis/analyzers/schema/validation.go `ValidationAnalyzer` (`morePreciseMessage`
turns the `AnalysisAwareError`s into IST0130/IST0131). This module ports that algorithm
step for step:

- only a route with an empty `match` list is a catch-all (a `uri: {prefix: /}` match is not,
  for the validation); a second one is "only the last rule can have no matches", every match
  after one is "route without matches defined before";
- two matches are duplicates when they serialise alike without their `name` (`asJSON`: the
  jsonpb `MarshalJSON` of istio.io/api omits zero values, so an absent field and `port: 0` or
  `headers: {}` are the same match, but keeps a set message and every map entry, so
  `headers: {x-debug: {}}`, a presence test, is not);
- a rule whose every match duplicates an earlier one is unreachable; HTTP matches with a URI
  prefix are also compared pairwise for a prefix that covers a later one (same port, method
  defaulting to `exact:GET`, authority, headers, query parameters and withoutHeaders);
- rules are named `"<name>"` or `#<index>`, matches `"<name>"` or `#<index>` (TCP and TLS
  have no names), and identical messages are reported once, as `istioctl analyze` dedupes
  (pkg/config/analysis/diag/messages.go `SortedDedupedCopy`).

It needs nothing but the VirtualService, so it runs on every one, the stack's alone too: the
stack's own A/B rules (mesh.traffic `match_route`) are checked offline, and a match rule that
duplicates another one's conditions names its `models.<model>.matches.<rule>` key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mesh.checks.findings import (
    VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
    VIRTUAL_SERVICE_UNREACHABLE_RULE,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _list, _spec
from mesh.checks.paths import _finding, _model

MATCH_EXACT = "exact:"  # validation.go matchExact
MATCH_PREFIX = "prefix:"  # validation.go matchPrefix
# StringMatch is a oneof: `exact: ""` is a set field, unlike an absent one (Go keeps it).
_ONEOF_KEYS = frozenset({"exact", "prefix", "regex"})
# Match fields that hold a StringMatch message: set, even to `{}` (`headers: {x: {}}` tests the
# header's presence), a message is serialised; and the map fields, whose every entry is.
_MESSAGE_KEYS = frozenset({"uri", "scheme", "method", "authority"})
_MAP_KEYS = frozenset({"headers", "queryParams", "withoutHeaders", "sourceLabels"})


def _zero(value: Any) -> bool:
    """What Go's `encoding/json` leaves out of a proto struct (`omitempty`)."""
    return value is None or value is False or value == 0 or value in ("", [], {})


def _normalised(value: Any, is_map: bool = False) -> Any:
    """The match as istio.io/api's `MarshalJSON` (jsonpb) writes it: zero scalars, empty lists
    and maps and unset messages left out; set messages, set oneof fields and map entries
    kept."""
    if isinstance(value, dict):
        return {
            str(k): _normalised(v, not is_map and str(k) in _MAP_KEYS)
            for k, v in value.items()
            if is_map
            or str(k) in _ONEOF_KEYS
            or (str(k) in _MESSAGE_KEYS and isinstance(v, dict))
            or not _zero(v)
        }
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def as_json(match: Any, http: bool) -> str:
    """validation.go `asJSON`: the match serialised for comparison, without an HTTP match's
    `name` (it does not route)."""
    body = _dict(match)
    if http:
        body = {k: v for k, v in body.items() if k != "name"}
    return json.dumps(_normalised(body), sort_keys=True, default=str)


def _quoted(text: str) -> str:
    """Go's `%q`."""
    return json.dumps(text, ensure_ascii=False)


def route_name(route: dict[str, Any], index: int, http: bool) -> str:
    """validation.go `routeName`: `"<name>"` for a named HTTP route, else `#<index>`."""
    name = route.get("name") if http else None
    return _quoted(str(name)) if name else f"#{index}"


def request_name(match: Any, index: int, http: bool) -> str:
    """validation.go `requestName`: `"<name>"` for a named HTTP match, else `#<index>`."""
    name = _dict(match).get("name") if http else None
    return _quoted(str(name)) if name else f"#{index}"


@dataclass(frozen=True)
class _PrefixMatch:
    """validation.go `OverlappingMatchValidationForHTTPRoute`."""

    route: str
    match: str
    prefix: str
    port: Any
    method: str
    authority: str
    headers: dict[str, str]
    query_params: dict[str, str]
    without_headers: dict[str, str]


def _exact_or_prefix(value: Any) -> str:
    """validation.go `assignExactOrPrefix`: a regex (or nothing) is ``."""
    value = _dict(value)
    if value.get("exact"):
        return MATCH_EXACT + str(value["exact"])
    if value.get("prefix"):
        return MATCH_PREFIX + str(value["prefix"])
    return ""


def _prefix_match(route: str, match: Any, matchn: int) -> _PrefixMatch | None:
    """validation.go `genMatchHTTPRoutes`: matches with a URI prefix, for the overlap check."""
    match = _dict(match)
    prefix = str(_dict(match.get("uri")).get("prefix") or "")
    if not prefix:
        return None

    def table(field: str) -> dict[str, str]:
        return {str(k): _exact_or_prefix(v) for k, v in _dict(match.get(field)).items()}

    return _PrefixMatch(
        route,
        request_name(match, matchn, http=True),
        prefix,
        match.get("port") or 0,
        _exact_or_prefix(match.get("method")) or MATCH_EXACT + "GET",  # GET by default
        _exact_or_prefix(match.get("authority")),
        table("headers"),
        table("queryParams"),
        table("withoutHeaders"),
    )


def _covers_table(a: dict[str, str], b: dict[str, str]) -> bool:
    return len(a) == len(b) and all(
        key in b and (value == b[key] or value.startswith(b[key])) for key, value in a.items()
    )


def covered(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """validation.go `coveredValidation`: whether the earlier match `a` takes every request of
    the later `b`. Ported as written, including its comparisons' direction (`a`'s method must
    start with `b`'s)."""
    if not b.prefix.startswith(a.prefix) or b.port != a.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    return (
        _covers_table(a.headers, b.headers)
        and _covers_table(a.query_params, b.query_params)
        and _covers_table(a.without_headers, b.without_headers)
    )


Unused = Callable[[str, str], None]
Ineffective = Callable[[str, str, str], None]


def analyze_unreachable_rules(
    routes: list[Any], http: bool, unused: Unused, ineffective: Ineffective
) -> None:
    """validation.go `analyzeUnreachableHTTPRules` (`http`) and its TCP/TLS twins."""
    seen: dict[str, int] = {}
    empty_at = -1
    prefixed: list[_PrefixMatch] = []
    for rulen, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        name = route_name(route, rulen, http)
        matches = _list(route.get("match"))
        if not matches:
            if empty_at >= 0:
                unused(name, "only the last rule can have no matches")
            empty_at = rulen
            continue
        duplicates = 0
        for matchn, match in enumerate(matches):
            if empty_at >= 0:
                unused(name, "route without matches defined before")
                continue
            key = as_json(match, http)
            if key in seen:
                dupn = seen[key]
                ineffective(
                    name, request_name(match, matchn, http), route_name(routes[dupn], dupn, http)
                )
                duplicates += 1
                continue
            seen[key] = rulen
            if http and (found := _prefix_match(name, match, matchn)) is not None:
                prefixed.append(found)
        if duplicates == len(matches):
            unused(name, "all matches used by prior rules")
    for i, earlier in enumerate(prefixed):
        for later in prefixed[i + 1 :]:
            if later.prefix != earlier.prefix and covered(earlier, later):
                ineffective(
                    later.route,
                    f"{later.match} of prefix {later.prefix}",
                    f"{earlier.match} of prefix {earlier.prefix} on {earlier.route}",
                )


def _rule_key(index: _Index, vs: dict[str, Any], rule: str) -> str | None:
    """The config key behind a stack route named `rule` (as `route_name` prints it): the match
    rule whose name its matches carry (mesh.traffic `match_route`), else the model's weighted
    routing."""
    model = _model(index, vs)
    if model is None:
        return None
    for i, route in enumerate(_list(_spec(vs).get("http"))):
        route = _dict(route)
        if route_name(route, i, http=True) != rule:
            continue
        names = {_dict(m).get("name") for m in _list(route.get("match"))}
        for match_rule in index.config.models[model].matches:
            if match_rule in names:
                return f"models.{model}.matches.{match_rule}"
    return f"models.{model}"


def unreachable_routes(index: _Index) -> Iterator[Finding]:
    """IST0130 and IST0131 of every VirtualService (see the module docstring)."""
    for vs in index.by_kind["VirtualService"]:
        yield from _virtual_service(index, vs)


def _virtual_service(index: _Index, vs: dict[str, Any]) -> list[Finding]:
    """One VirtualService's IST0130/IST0131, each message once."""
    found: list[Finding] = []

    def unused(rule: str, reason: str) -> None:
        path = _rule_key(index, vs, rule)
        hint = (
            f" Match rule {path.rsplit('.', 1)[-1]} has only conditions an earlier rule "
            "(by priority, then name) already takes: give it its own or remove it"
            if path and ".matches." in path
            else ""
        )
        found.append(
            _finding(
                index,
                vs,
                VIRTUAL_SERVICE_UNREACHABLE_RULE,
                "warning",
                path,
                f"VirtualService rule {rule} not used ({reason}).{hint}",
            )
        )

    def ineffective(rule: str, match: str, dup: str) -> None:
        found.append(
            _finding(
                index,
                vs,
                VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                "info",
                _rule_key(index, vs, rule),
                f"VirtualService rule {rule} match {match} is not used "
                f"(duplicate/overlapping match in rule {dup}).",
            )
        )

    spec = _spec(vs)
    for kind in ("http", "tcp", "tls"):
        analyze_unreachable_rules(_list(spec.get(kind)), kind == "http", unused, ineffective)
    return list(dict.fromkeys(found))  # istioctl analyze dedupes identical messages
