"""Webhook rules on values (RULES.md 5, 6, 7, 8, 10, 11, 18, 20, 21, 22): durations, route
weights, retries, mirror and fault percentages, subset names and labels, exportTo, ports.

istiod rejects these objects at admission, so `pulumi up` would fail halfway; `istioctl
analyze` reports them as IST0106.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import Finding
from mesh.checks.formats import (
    MILLISECOND,
    PROTOCOLS,
    _label_problem,
    _port_number_ok,
    is_dns_label,
    parse_duration,
)
from mesh.checks.index import _Index
from mesh.checks.objects import _destinations, _dict, _list, _routes, _spec
from mesh.checks.paths import _model_path, _webhook

# Duration fields of VirtualService and DestinationRule specs, by the end of their path.
_DURATIONS = (
    ".timeout",
    ".retries.perTryTimeout",
    ".retries.backoff",
    ".delay.fixedDelay",
    ".corsPolicy.maxAge",
    ".tcp.connectTimeout",
    ".tcp.idleTimeout",
    ".http.idleTimeout",
    ".tcp.maxConnectionDuration",
    ".tcpKeepalive.time",
    ".tcpKeepalive.interval",
    ".outlierDetection.interval",
    ".outlierDetection.baseEjectionTime",
    ".warmup.duration",
)


def _leaves(node: Any, path: str = "spec", shape: str = "spec") -> Iterator[tuple[str, str, Any]]:
    """(concrete path, the same without list indexes, value) of every scalar under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}", f"{shape}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}[{i}]", shape)
    else:
        yield path, shape, node


def durations(index: _Index) -> Iterator[Finding]:
    for obj in (*index.by_kind["VirtualService"], *index.by_kind["DestinationRule"]):
        for where, shape, value in _leaves(_spec(obj)):
            if not shape.endswith(_DURATIONS):
                continue
            try:
                nanos = parse_duration(str(value))
            except ValueError as exc:
                yield _webhook(index, obj, _model_path(index, obj), f"{where}: {exc}")
                continue
            problem = None
            if shape.endswith(".tcp.idleTimeout") and nanos == 0:
                continue  # 0s disables the TCP idle timeout
            if nanos < MILLISECOND:
                problem = "must be at least 1ms"
            elif nanos % MILLISECOND:
                problem = "must be a whole number of milliseconds"
            elif shape.endswith(".maxAge") and nanos % 10**9:
                problem = "must be a whole number of seconds"
            if problem:
                yield _webhook(index, obj, _model_path(index, obj), f"{where}: {value!r} {problem}")


def route_weights(index: _Index) -> Iterator[Finding]:
    """Weights are relative shares (RULES.md 18): none negative, and a split must total > 0."""
    for vs in index.by_kind["VirtualService"]:
        path = _model_path(index, vs, "canary", "weight")
        for at, route in _routes(_spec(vs)):
            targets = [_dict(t) for t in _list(route.get("route"))]
            weights = [t.get("weight", 0) for t in targets]
            for i, weight in enumerate(weights):
                if not isinstance(weight, int) or weight < 0:
                    yield _webhook(
                        index, vs, path, f"spec.{at}.route[{i}].weight {weight!r} is not >= 0"
                    )
            numeric = [w for w in weights if isinstance(w, int)]
            if len(targets) > 1 and sum(numeric) <= 0:
                yield _webhook(
                    index, vs, path, f"spec.{at}: total destination weight is 0 ({weights})"
                )


RETRY_ON = frozenset(
    {"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure"}
    | {"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers"}
    | {"envoy-ratelimited", "http3-post-connect-failure", "cancelled", "deadline-exceeded"}
    | {"internal", "resource-exhausted", "unavailable"}
)


def retries(index: _Index) -> Iterator[Finding]:
    """RULES.md 20: attempts >= 0; retries off takes no other setting; retryOn tokens known."""
    for vs in index.by_kind["VirtualService"]:
        path = _model_path(index, vs)
        for i, route in enumerate(map(_dict, _list(_spec(vs).get("http")))):
            if "retries" not in route:
                continue
            retry, where = _dict(route["retries"]), f"spec.http[{i}].retries"
            attempts = retry.get("attempts", 0)
            if not isinstance(attempts, int) or attempts < 0:
                yield _webhook(index, vs, path, f"{where}.attempts {attempts!r} must be >= 0")
            elif attempts == 0:
                extra = [
                    k for k in ("perTryTimeout", "retryOn", "retryRemoteLocalities") if k in retry
                ]
                if extra:
                    yield _webhook(
                        index,
                        vs,
                        path,
                        f"{where}: attempts 0 turns retries off, so {', '.join(extra)} cannot "
                        "be set",
                    )
            if "retryOn" in retry:
                tokens = str(retry["retryOn"]).split(",")
                bad = [t for t in tokens if t not in RETRY_ON and not t.isdigit()]
                if bad:
                    yield _webhook(
                        index,
                        vs,
                        path,
                        f"{where}.retryOn: {', '.join(map(repr, bad))} is not a retry policy "
                        "(comma-separated, no spaces: 5xx, gateway-error, connect-failure, ...)",
                    )


def _percentage(value: Any) -> float | None:
    number = _dict(value).get("value")
    return float(number) if isinstance(number, (int, float)) else None


def percentages(index: _Index) -> Iterator[Finding]:
    """RULES.md 21-22: mirror percentages 0..100; fault percentages 0 or 0.0001..100."""
    for vs in index.by_kind["VirtualService"]:
        path = _model_path(index, vs)
        for i, route in enumerate(map(_dict, _list(_spec(vs).get("http")))):
            where = f"spec.http[{i}]"
            mirrors = [("mirrorPercentage", route.get("mirrorPercentage"))]
            mirrors += [
                (f"mirrors[{j}].percentage", _dict(m).get("percentage"))
                for j, m in enumerate(_list(route.get("mirrors")))
            ]
            for name, value in mirrors:
                number = _percentage(value)
                if number is not None and not 0 <= number <= 100:
                    yield _webhook(index, vs, path, f"{where}.{name} {number} is not in 0..100")
            if "fault" not in route:
                continue
            fault = _dict(route["fault"])
            if "abort" not in fault and "delay" not in fault:
                yield _webhook(index, vs, path, f"{where}.fault needs an abort or a delay")
            for kind in ("abort", "delay"):
                number = _percentage(_dict(fault.get(kind)).get("percentage"))
                if number is not None and not (number == 0 or 0.0001 <= number <= 100):
                    yield _webhook(
                        index,
                        vs,
                        path,
                        f"{where}.fault.{kind}.percentage {number} is not 0 or in 0.0001..100",
                    )


def subset_labels(index: _Index) -> Iterator[Finding]:
    """RULES.md 10 and 30: subset names unique DNS labels, subset labels valid."""
    for rule in index.by_kind["DestinationRule"]:
        seen: set[str] = set()
        for i, subset in enumerate(map(_dict, _list(_spec(rule).get("subsets")))):
            name = str(subset.get("name", ""))
            path = _model_path(index, rule, "versions", name)
            if not is_dns_label(name) or name in seen:
                yield _webhook(
                    index,
                    rule,
                    path,
                    f"spec.subsets[{i}].name {name!r} must be a unique DNS-1123 label",
                )
            seen.add(name)
            for key, value in _dict(subset.get("labels")).items():
                if (problem := _label_problem(str(key), value)) is not None:
                    yield _webhook(index, rule, path, f"spec.subsets[{i}]: {problem}")


def export_to(index: _Index) -> Iterator[Finding]:
    """RULES.md 11: `.`, `*` or namespace names; no duplicates; `*` and `~` only alone."""
    kinds = ("VirtualService", "DestinationRule", "ServiceEntry")
    for obj in (o for kind in kinds for o in index.by_kind[kind]):
        if "exportTo" not in _spec(obj):
            continue
        entries = [str(e) for e in _list(_spec(obj)["exportTo"])]
        resolved = [index.ns(obj) if e == "." else e for e in entries]
        allowed_alone = {"*", "~"} if obj.get("kind") == "ServiceEntry" else {"*"}
        problem = None
        if bad := [e for e in entries if e not in (".", *allowed_alone) and not is_dns_label(e)]:
            problem = f"{', '.join(map(repr, bad))} is not '.', '*' or a namespace name"
        elif len(set(resolved)) != len(resolved):
            problem = f"{entries} lists a namespace twice ('.' is {index.ns(obj)!r})"
        elif len(entries) > 1 and allowed_alone & set(entries):
            problem = f"{entries}: {' and '.join(sorted(allowed_alone))} must be the only entry"
        if problem:
            yield _webhook(index, obj, _model_path(index, obj), f"spec.exportTo {problem}")


def ports(index: _Index) -> Iterator[Finding]:
    """RULES.md 6-8: port numbers 1..65535; ServiceEntry ports unique DNS-label names with a
    known protocol."""
    for vs in index.by_kind["VirtualService"]:
        for at, route in _routes(_spec(vs)):
            for where, destination in _destinations(route):
                number = _dict(destination.get("port")).get("number")
                if number is not None and not _port_number_ok(number):
                    yield _webhook(
                        index,
                        vs,
                        _model_path(index, vs),
                        f"spec.{at}.{where}.port.number {number!r} is not in 1..65535",
                    )
            for j, match in enumerate(map(_dict, _list(route.get("match")))):
                if "port" in match and not _port_number_ok(match["port"]):
                    yield _webhook(
                        index,
                        vs,
                        _model_path(index, vs),
                        f"spec.{at}.match[{j}].port {match['port']!r} is not in 1..65535",
                    )
    for entry in index.by_kind["ServiceEntry"]:
        names: set[str] = set()
        for i, port in enumerate(map(_dict, _list(_spec(entry).get("ports")))):
            where, name = f"spec.ports[{i}]", str(port.get("name", ""))
            problem = None
            if not _port_number_ok(port.get("number")):
                problem = f"number {port.get('number')!r} is not in 1..65535"
            elif "targetPort" in port and not _port_number_ok(port["targetPort"]):
                problem = f"targetPort {port['targetPort']!r} is not in 1..65535"
            elif not is_dns_label(name) or name in names:
                problem = f"name {name!r} must be a unique DNS-1123 label"
            elif port.get("protocol") and str(port["protocol"]).upper() not in PROTOCOLS:
                problem = f"protocol {port['protocol']!r} is not one Istio knows"
            names.add(name)
            if problem:
                yield _webhook(index, entry, "storage", f"{where}: {problem}")
