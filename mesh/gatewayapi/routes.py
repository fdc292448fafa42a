"""One HTTPRoute per model: the match rules, the weighted canary split and the mirror, for
ingress and mesh callers alike.

Parents. The route binds the ingress Gateway's listener (`mesh.gatewayapi.ingress.
gateway_parents`) and the model Service (`group: ""`, `kind: Service`: GAMMA). Istio turns it
into one VirtualService per parent and host (pilot/pkg/config/kube/gateway/
route_collections.go `HTTPRouteCollection`):

- for the Gateway, one per `hostnames` entry, bound to that Gateway;
- for the Service, the route's `hostnames` are not used: the VirtualService's host is the
  Service's `<model>.<ns>.svc.cluster.local`, bound to `mesh`. Without a parentRef `port`
  (`augmentPortMatch` only runs when one is given) its routes carry no port condition, so they
  apply on every port of the Service: the REST port and the gRPC port of a mesh caller see the
  same rules. That is why one route serves both ports, and why it gives no parentRef `port`
  (an experimental-channel field besides).

Ports. A request reaches the gRPC port only through a rule that sends it there: the gRPC
rules match header `content-type` `application/grpc.*` (every gRPC request carries it, gRPC
over HTTP/2 spec) and send to the version Services' gRPC port; every other request goes to
the REST port. At the ingress (listener port 80/443) this is the only way to tell gRPC from
REST; in the mesh, a gRPC client dialling the gRPC port still gets the gRPC rule first (see
order) and REST calls on the REST port never match it. One HTTPRoute rather than an HTTPRoute
and a GRPCRoute: both would bind the same hosts and parents, which Gateway API resolves by
route kind, and a weight shift would touch two objects.

Order. Istio splits each rule into one route per match and sorts them, stably, by path match
kind and length, method, then the number of header matches, most first
(conversion.go `sortHTTPRoutes`); every rule here matches PathPrefix `/` (the CRD default), so
header count decides, then the written order. Rules are written in the config's order (by
priority, then name), each match rule's gRPC form (its headers plus content-type) before its
REST form, the weighted gRPC rule, then the weighted REST rule (no header). The config refuses
a later rule with more conditions than an earlier one (`StackConfig._gateway_api_rules`), so
the sorted order is the config's: the first rule whose conditions hold wins, as in
`routing: istio`; a gRPC request is caught by a rule's gRPC form (one header more than its
REST form), a REST request never by a gRPC form.

Weights. Both versions of the weighted rules are always listed (`mesh.traffic.route_weights`:
the idle one at 0), so a shift rewrites `weight` numbers only. Gateway API weights are
relative; Istio drops 0-weight backends and, when a single one is left, sends it everything
(conversion.go `buildHTTPDestination`).
"""

from __future__ import annotations

import re
from fractions import Fraction

from mesh.config import MatchRule, Model, StackConfig
from mesh.gatewayapi.common import (
    GATEWAY_API,
    POOL_GROUP,
    gateway_duration,
    has_pools,
    pool_name,
    version_service_name,
)
from mesh.gatewayapi.ingress import gateway_parents
from mesh.k8s import metadata
from mesh.traffic import CANARY_ANNOTATION, route_weights
from models.presets import ServerPort, server_ports

COMPONENT = "traffic"
CONTENT_TYPE = "content-type"
# Full match (Envoy's safe_regex, as Istio passes RegularExpression through: conversion.go
# `createHeadersMatch`): `application/grpc`, `application/grpc+proto`, `application/grpc;...`.
GRPC_CONTENT_TYPE = "application/grpc.*"
COOKIE = "Cookie"
# Istio adds these to every HTTPRoute `retry` (conversion.go `convertHTTPRoute`): "Implementations
# SHOULD retry on connection errors"; `codes` adds status codes.
GATEWAY_API_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled")


def _exact(name: str, value: str) -> dict:
    return {"type": "Exact", "name": name, "value": value}


def _regex(name: str, value: str) -> dict:
    return {"type": "RegularExpression", "name": name, "value": value}


def rule_headers(match: MatchRule) -> list[dict]:
    """A match rule's conditions as HTTPRoute header matches (all must hold, like Istio's).

    `prefix` has no Gateway API form (HeaderMatchType is Exact or RegularExpression), so it is
    the regex `^<escaped prefix>.*`; the cookie regex matches the whole Cookie header, as it
    does in `routing: istio` (Istio passes it to Envoy's full-match safe_regex either way)."""
    found = []
    for header, condition in sorted(match.headers.items()):
        if condition.exact is not None:
            found.append(_exact(header, condition.exact))
        elif condition.prefix is not None:
            found.append(_regex(header, f"^{re.escape(condition.prefix)}.*"))
        else:
            assert condition.regex is not None, "HeaderMatch has exactly one kind"
            found.append(_regex(header, condition.regex))
    if match.cookie is not None:
        found.append(_regex(COOKIE, match.cookie))
    return found


def condition_count(match: MatchRule) -> int:
    """How many header matches the rule's REST form has: what Istio sorts rules by."""
    return len(match.headers) + (1 if match.cookie is not None else 0)


def _backend(
    name: str, version: str, port: ServerPort, weight: int | None = None, pool: bool = False
) -> dict:
    """A version's Service on `port`, or with `pool` its InferencePool (group
    inference.networking.k8s.io, named, no port: the pool's targetPorts say it, and Istio
    refuses a pool named by hostname, conversion.go `buildDestination`)."""
    if pool:
        ref: dict = {"group": POOL_GROUP, "kind": "InferencePool", "name": pool_name(name, version)}
    else:
        ref = {"group": "", "kind": "Service", "name": version_service_name(name, version)}
        ref["port"] = port.number
    if weight is not None:
        ref["weight"] = weight
    return ref


def mirror_share(percent: float) -> dict:
    """`percent` (an integer 0..100) when the configured share is whole, else `fraction`
    (numerator/denominator; Istio mirrors 100 * numerator / denominator percent, conversion.go
    `createMirrorFilter`): 12.5 -> 125/1000."""
    share = Fraction(str(percent))
    if share.denominator == 1:
        return {"percent": int(share)}
    exact = share / 100
    return {"fraction": {"numerator": exact.numerator, "denominator": exact.denominator}}


def timeouts(model: Model) -> dict:
    """`timeout` -> `timeouts.request`; with retries, `perTryTimeout` -> `backendRequest`,
    which Istio makes the retry policy's per-try timeout when a `retry` is set (conversion.go
    `convertHTTPRoute`). The config keeps attempts x perTryTimeout within timeout, so CEL's
    backendRequest <= request holds."""
    found = {}
    if model.timeout is not None:
        found["request"] = gateway_duration(model.timeout)
    if model.retries is not None and model.retries.per_try_timeout is not None:
        found["backendRequest"] = gateway_duration(model.retries.per_try_timeout)
    return found


def retry(model: Model) -> dict | None:
    """HTTPRoute `retry` (experimental channel only; the config refuses `retries` on the
    standard channel and what `retry` cannot say): `attempts`, and the numeric statuses of
    `retryOn` as `codes`. Istio retries connect-failure, refused-stream, unavailable and
    cancelled on top, whatever `codes` says."""
    retries = model.retries
    if retries is None:
        return None
    found: dict = {"attempts": retries.attempts}
    codes = sorted({int(c) for c in (retries.retry_on or "").split(",") if c.isdigit()})
    if codes:
        found["codes"] = codes
    return found


def request_policy(model: Model) -> dict:
    """Timeouts and retry, the same on every rule of the model."""
    policy: dict = {}
    found = timeouts(model)
    if found:
        policy["timeouts"] = found
    attempts = retry(model)
    if attempts is not None:
        policy["retry"] = attempts
    return policy


# The CRD's default match, written out: every rule of the route then says what it matches,
# as the API server stores it.
ANY_PATH = {"type": "PathPrefix", "value": "/"}


def _matches(headers: list[dict]) -> list[dict]:
    match: dict = {"path": dict(ANY_PATH)}
    if headers:
        match["headers"] = headers
    return [match]


def _with_grpc(headers: list[dict]) -> list[dict]:
    return [*headers, _regex(CONTENT_TYPE, GRPC_CONTENT_TYPE)]


def match_rule(
    config: StackConfig,
    name: str,
    rule: str,
    match: MatchRule,
    port: ServerPort,
    grpc: bool,
    pool: bool = False,
) -> dict:
    headers = rule_headers(match)
    return {
        "name": f"{rule}-{port.name}",
        "matches": _matches(_with_grpc(headers) if grpc else headers),
        "backendRefs": [_backend(name, match.version, port, pool=pool)],
        **request_policy(config.models[name]),
    }


def weighted_rule(
    config: StackConfig, name: str, port: ServerPort, grpc: bool, pool: bool = False
) -> dict:
    """The canary split; with `pool`, between the versions' pools. The mirror always goes to
    the version's Service: a mirrored copy needs no picking, and its answer is dropped."""
    model = config.models[name]
    found: dict = {"name": port.name, "matches": _matches(_with_grpc([]) if grpc else [])}
    weights = list(route_weights(model).items())
    if pool:
        weights = stable_pool_last(model, weights)
    found["backendRefs"] = [
        _backend(name, version, port, weight, pool) for version, weight in weights
    ]
    if model.mirror is not None:
        mirror = {"backendRef": _backend(name, model.mirror.version, port)}
        mirror.update(mirror_share(model.mirror.percent))
        found["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
    found.update(request_policy(model))
    return found


def stable_pool_last(model: Model, weights: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The pools of a weighted rule with the stable version's last.

    Istio 1.30 gives a rule one endpoint picker, that of its last backendRef with a weight
    above 0 (conversion.go `buildHTTPDestination`: `ipCfg = ipconfig` for each backend;
    route.go builds one `ExtProcPerRoute` per route): istio/istio#61594, fixed by #61601 after
    1.31.0-rc.0. The pod that picker names is not in the other pools' clusters, so their
    share falls back to the gateway's own load balancing over their pods (override_host); and
    when the picker's pool has no ready pod, it answers 503 for the whole rule. With the
    stable pool last, the stable share (the most of the traffic) keeps load-aware picking,
    and a canary pool with no ready pod costs only the canary's share."""
    return sorted(weights, key=lambda item: item[0] == model.stable)


def _grpc_port(model: Model) -> ServerPort | None:
    return next((p for p in server_ports(model)[1:] if p.app_protocol == "grpc"), None)


def route_rules(config: StackConfig, name: str) -> list[dict]:
    """Match rules in config order (each gRPC form before its REST form), then the weighted
    gRPC rule, then the weighted REST rule (see the module docstring for why this order is
    the one Istio tries)."""
    model = config.models[name]
    rest, grpc = server_ports(model)[0], _grpc_port(model)
    rules = []
    for rule, match in model.ordered_matches():
        if grpc is not None:
            rules.append(match_rule(config, name, rule, match, grpc, grpc=True))
        rules.append(match_rule(config, name, rule, match, rest, grpc=False))
    if grpc is not None:
        rules.append(weighted_rule(config, name, grpc, grpc=True))
    rules.append(weighted_rule(config, name, rest, grpc=False))
    return rules


def pool_rules(config: StackConfig, name: str) -> list[dict]:
    """The ingress rules of a model with pools: its match rules, then the weighted rule, each
    to the versions' InferencePools. The LLM servers have no gRPC port, so no gRPC forms."""
    model = config.models[name]
    rest = server_ports(model)[0]
    rules = [
        match_rule(config, name, rule, match, rest, grpc=False, pool=True)
        for rule, match in model.ordered_matches()
    ]
    rules.append(weighted_rule(config, name, rest, grpc=False, pool=True))
    return rules


def mesh_parent(name: str) -> dict:
    return {"group": "", "kind": "Service", "name": name}


def _route(config: StackConfig, name: str, route: str, parents: list, rules: list) -> dict:
    canary = config.models[name].canary
    annotations = {CANARY_ANNOTATION: canary.version} if canary else None
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": metadata(route, config.namespace, COMPONENT, {"app": name}, annotations),
        "spec": {
            "parentRefs": parents,
            "hostnames": config.model_hosts(name),
            "rules": rules,
        },
    }


def pool_route_name(name: str) -> str:
    return f"{name}-pools"


def http_route(config: StackConfig, name: str) -> dict:
    """The model's route: bound to the ingress Gateway and the model Service; with pools, to
    the model Service alone (`pool_route` binds the Gateway)."""
    parents = [] if has_pools(config, name) else gateway_parents(config)
    return _route(config, name, name, [*parents, mesh_parent(name)], route_rules(config, name))


def pool_route(config: StackConfig, name: str) -> dict | None:
    """With pools, the Gateway's route of the model, `<model>-pools`, to its InferencePools.

    Separate from the mesh route because Istio builds the picker's ext_proc filter only into
    Gateway listeners (listener_builder.go, `HasInferencePool`): a sidecar routing to a pool
    would get its headless shadow Service without a picker, so mesh callers keep the
    version Services. Both routes carry the same weights, from the one canary.weight."""
    if not has_pools(config, name):
        return None
    return _route(
        config, name, pool_route_name(name), gateway_parents(config), pool_rules(config, name)
    )
