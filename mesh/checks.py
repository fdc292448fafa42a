"""Mesh analyzers: the rules Istio's webhook and `istioctl analyze` enforce, run on the plan.

A JSON Schema cannot see across resources: a VirtualService may route to a subset no
DestinationRule defines and every object still validates, then requests fail with 503 after
`pulumi up`. `check(config, objects)` finds such problems before anything is registered; the
program refuses to run on an error and `python -m mesh check` prints every finding.

Rules and codes follow ../shared/istio/RULES.md (Istio 1.30): cross-resource analyzers keep their
IST code and level; webhook rules report as IST0106 (error) or IST0133 (warning), as
`istioctl analyze` does. Each finding names the config path that caused it where one exists.
Every rule indexes the objects once, so a check is linear in the number of objects.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from mesh.config import StackConfig

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

REFERENCED_RESOURCE_NOT_FOUND = "IST0101"
NAMESPACE_NOT_INJECTED = "IST0102"
SCHEMA_VALIDATION_ERROR = "IST0106"
CONFLICTING_MESH_GATEWAY_HOSTS = "IST0109"
DESTINATION_PORT_SELECTOR_REQUIRED = "IST0112"
PORT_NAME_NOT_UNDER_CONVENTION = "IST0118"
NAMESPACE_MULTIPLE_INJECTION_LABELS = "IST0123"
HOST_NOT_FOUND_IN_GATEWAY = "IST0132"
SCHEMA_WARNING = "IST0133"
SUBSET_SELECTS_NO_PODS = "IST0173"
UNKNOWN_DESTINATION_RULE_HOST = "IST0174"


@dataclass(frozen=True)
class Finding:
    """One problem: Istio's code, how bad it is, the config path behind it, and what is wrong."""

    severity: Severity
    code: str
    path: str | None  # config path (`models.sentiment.canary.version`), None if no key caused it
    resource: str  # `VirtualService ml-serving/sentiment`
    message: str

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"{self.severity} {self.code}{where}: {self.resource}: {self.message}"


class MeshCheckError(Exception):
    """The plan has error findings. `str()` is the one line a user sees."""

    def __init__(self, stack: str, errors: list[Finding]):
        self.stack, self.errors = stack, errors
        more = len(errors) - 1
        tail = f" (and {more} more; run `python -m mesh check {stack}` for all)" if more else ""
        super().__init__(f"ml-mesh: stack '{stack}' fails mesh checks: {errors[0]}{tail}")


def check(config: StackConfig, objects: Iterable[dict[str, Any]]) -> list[Finding]:
    """Every finding of every rule: errors, then warnings, then info."""
    index = _Index(config, list(objects))
    return sorted((finding for rule in RULES for finding in rule(index)), key=_order)


def _order(finding: Finding) -> tuple[int, str, str, str, str]:
    return (
        SEVERITIES.index(finding.severity),
        finding.code,
        finding.path or "",
        finding.resource,
        finding.message,
    )


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def gate(stack: str, findings: list[Finding]) -> list[Finding]:
    """Raise MeshCheckError if any finding is an error; otherwise return the findings."""
    if failed := errors(findings):
        raise MeshCheckError(stack, failed)
    return findings


# --- the plan, indexed once ------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name(obj: dict[str, Any]) -> str:
    return str(_dict(obj.get("metadata")).get("name", ""))


def _namespace(obj: dict[str, Any], default: str) -> str:
    return str(_dict(obj.get("metadata")).get("namespace") or default)


def _labels(obj: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(obj.get("metadata")).get("labels"))


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return _dict(obj.get("spec"))


def fqdn(host: str, namespace: str) -> str:
    """Short names resolve in the namespace of the object that names them (RULES.md 9)."""
    return f"{host}.{namespace}.svc.cluster.local" if "." not in host and host != "*" else host


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: `*` matches all, `*.example.com` any name under example.com."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


class _Index:
    """The objects by kind, with the lookups every rule needs, each built in one pass."""

    def __init__(self, config: StackConfig, objects: list[dict[str, Any]]):
        self.config = config
        self.default_namespace = config.namespace
        self.by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for obj in objects:
            self.by_kind[str(obj.get("kind"))].append(obj)
        self.services = {fqdn(_name(s), self.ns(s)): s for s in self.by_kind["Service"] if _name(s)}
        self.entry_hosts: dict[str, dict[str, Any]] = {}
        self.entry_wildcards: list[tuple[str, dict[str, Any]]] = []
        for entry in self.by_kind["ServiceEntry"]:
            for host in _list(_spec(entry).get("hosts")):
                if str(host).startswith("*"):
                    self.entry_wildcards.append((str(host), entry))
                else:
                    self.entry_hosts[fqdn(str(host), self.ns(entry))] = entry
        self.subsets: dict[str, set[str]] = defaultdict(set)
        for rule in self.by_kind["DestinationRule"]:
            host = fqdn(str(_spec(rule).get("host", "")), self.ns(rule))
            self.subsets[host].update(
                str(_dict(s).get("name")) for s in _list(_spec(rule).get("subsets"))
            )
        self.gateways = {f"{self.ns(g)}/{_name(g)}": g for g in self.by_kind["Gateway"]}
        # Pod templates (labels, replicas) per namespace, and per (namespace, label, value), so
        # matching a subset looks only at the templates that carry one of its labels.
        self.templates: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        self.pods: dict[tuple[str, str, str], list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        for deployment in self.by_kind["Deployment"]:
            spec = _spec(deployment)
            labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
            template = (labels, spec.get("replicas", 1))  # unset: an autoscaler, or 1
            self.templates[self.ns(deployment)].append(template)
            for key, value in labels.items():
                self.pods[(self.ns(deployment), str(key), str(value))].append(template)

    def ns(self, obj: dict[str, Any]) -> str:
        return _namespace(obj, self.default_namespace)

    def resolves(self, host: str) -> dict[str, Any] | None:
        """The Service or ServiceEntry that serves `host` (already an FQDN), if any."""
        found = self.services.get(host) or self.entry_hosts.get(host)
        if found is None:
            found = next((e for p, e in self.entry_wildcards if host_matches(p, host)), None)
        return found

    def pods_matching(self, namespace: str, wanted: dict[str, str]) -> list[int]:
        """Replica counts of the pod templates in `namespace` that carry all `wanted` labels."""
        if not wanted:
            return [replicas for _, replicas in self.templates.get(namespace, [])]
        key, value = next(iter(wanted.items()))
        return [
            replicas
            for labels, replicas in self.pods.get((namespace, key, value), [])
            if all(str(labels.get(k)) == v for k, v in wanted.items())
        ]


# --- config paths: which key of the stack config produced an object ----------------------------


def _model(index: _Index, obj: dict[str, Any]) -> str | None:
    app = _labels(obj).get("app")
    return app if isinstance(app, str) and app in index.config.models else None


def _model_path(index: _Index, obj: dict[str, Any], *rest: str) -> str | None:
    model = _model(index, obj)
    return ".".join(("models", model, *rest)) if model else None


def _subset_path(index: _Index, obj: dict[str, Any], subset: str) -> str | None:
    """The key that put `subset` into a route: the canary version, or the stable one."""
    model = _model(index, obj)
    if model is None:
        return None
    config = index.config.models[model]
    if config.canary is not None and config.canary.version == subset:
        return f"models.{model}.canary.version"
    return f"models.{model}.stable"


def _ref(index: _Index, obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')} {index.ns(obj)}/{_name(obj)}"


def _finding(
    index: _Index,
    obj: dict[str, Any],
    code: str,
    severity: Severity,
    path: str | None,
    message: str,
) -> Finding:
    return Finding(severity, code, path, _ref(index, obj), message)


def _webhook(
    index: _Index, obj: dict[str, Any], path: str | None, message: str, warning: bool = False
) -> Finding:
    """A rule istiod's validating webhook enforces: analyze reports it as IST0106/IST0133."""
    if warning:
        return _finding(index, obj, SCHEMA_WARNING, "warning", path, message)
    return _finding(index, obj, SCHEMA_VALIDATION_ERROR, "error", path, message)


# --- VirtualService routing: hosts, ports and subsets (IST0101, IST0112) -----------------------


def _routes(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every http/tcp/tls route of a VirtualService spec with its position, `http[0]`."""
    for kind in ("http", "tcp", "tls"):
        for i, route in enumerate(_list(spec.get(kind))):
            yield f"{kind}[{i}]", _dict(route)


def _destinations(route: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, target in enumerate(_list(route.get("route"))):
        yield f"route[{i}]", _dict(_dict(target).get("destination"))
    if "mirror" in route:
        yield "mirror", _dict(route["mirror"])
    for i, mirror in enumerate(_list(route.get("mirrors"))):
        yield f"mirrors[{i}]", _dict(_dict(mirror).get("destination"))


def virtual_service_destinations(index: _Index) -> Iterator[Finding]:
    for vs in index.by_kind["VirtualService"]:
        namespace = index.ns(vs)
        for at, route in _routes(_spec(vs)):
            for where, destination in _destinations(route):
                where = f"spec.{at}.{where}"
                host = fqdn(str(destination.get("host", "")), namespace)
                target = index.resolves(host)
                if target is None:
                    yield _finding(
                        index,
                        vs,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "error",
                        _model_path(index, vs),
                        f"{where} routes to host {host}, which is no Service or ServiceEntry "
                        "of this stack",
                    )
                    continue
                yield from _destination_port(index, vs, where, host, target, destination)
                subset = destination.get("subset")
                if subset is not None and subset not in index.subsets.get(host, ()):
                    yield _finding(
                        index,
                        vs,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "error",
                        _subset_path(index, vs, str(subset)),
                        f"{where} routes to subset {subset!r} of {host}, which no "
                        "DestinationRule defines: requests would fail with 503",
                    )


def _destination_port(
    index: _Index,
    vs: dict[str, Any],
    where: str,
    host: str,
    target: dict[str, Any],
    destination: dict[str, Any],
) -> Iterator[Finding]:
    if target.get("kind") != "Service":
        return
    ports = {p.get("port") for p in map(_dict, _list(_spec(target).get("ports")))}
    number = _dict(destination.get("port")).get("number")
    if number is None and len(ports) > 1:
        yield _finding(
            index,
            vs,
            DESTINATION_PORT_SELECTOR_REQUIRED,
            "error",
            _model_path(index, vs),
            f"{where}: {host} has {len(ports)} ports, so the destination must name one",
        )
    elif number is not None and number not in ports:
        yield _finding(
            index,
            vs,
            REFERENCED_RESOURCE_NOT_FOUND,
            "error",
            _model_path(index, vs, "server"),
            f"{where} routes to port {number} of {host}, which the Service does not expose "
            f"(ports: {', '.join(map(str, sorted(ports, key=str)))})",
        )


# --- DestinationRules: subsets select pods (IST0173), hosts exist (IST0174) -------------------


def destination_rule_subsets(index: _Index) -> Iterator[Finding]:
    for rule in index.by_kind["DestinationRule"]:
        host = fqdn(str(_spec(rule).get("host", "")), index.ns(rule))
        target = index.resolves(host)
        if target is None:
            yield _finding(
                index,
                rule,
                UNKNOWN_DESTINATION_RULE_HOST,
                "warning",
                _model_path(index, rule),
                f"host {host} is no Service or ServiceEntry of this stack",
            )
            continue
        if target.get("kind") != "Service":
            continue
        selector = {str(k): str(v) for k, v in _dict(_spec(target).get("selector")).items()}
        for i, subset in enumerate(map(_dict, _list(_spec(rule).get("subsets")))):
            name = str(subset.get("name"))
            labels = {str(k): str(v) for k, v in _dict(subset.get("labels")).items()}
            wanted = {**selector, **labels}
            replicas = index.pods_matching(index.ns(target), wanted)
            version_path = _model_path(index, rule, "versions", name)
            if not replicas:
                yield _finding(
                    index,
                    rule,
                    SUBSET_SELECTS_NO_PODS,
                    "error",
                    version_path,
                    f"spec.subsets[{i}] {name!r} selects no pods of any Deployment "
                    f"(labels {wanted}): routes to it would fail with 503",
                )
            elif not any(r != 0 for r in replicas):
                yield _finding(
                    index,
                    rule,
                    SUBSET_SELECTS_NO_PODS,
                    "warning",
                    f"{version_path}.replicas" if version_path else None,
                    f"spec.subsets[{i}] {name!r} selects only Deployments scaled to 0 replicas: "
                    "istioctl analyze reports this once deployed; harmless while no route "
                    "sends traffic to it",
                )


# --- Gateways: references resolve (IST0101), hosts match (IST0132) -----------------------------


def _gateway_key(ref: str, namespace: str) -> str:
    return ref if "/" in ref else f"{namespace}/{ref}"


@dataclass
class _ServedHosts:
    """The hosts a Gateway offers, by the namespace allowed to bind them (`*` for any): exact
    names in sets for O(1) lookups, wildcard patterns (few) in lists."""

    exact: dict[str, set[str]]
    wildcards: dict[str, list[str]]

    def serves(self, namespace: str, host: str) -> bool:
        for ns in ("*", namespace):
            if host in self.exact.get(ns, ()) or any(
                host_matches(pattern, host) for pattern in self.wildcards.get(ns, ())
            ):
                return True
            if host.startswith("*") and any(
                host_matches(host, name) for name in self.exact.get(ns, ())
            ):
                return True  # a wildcard VirtualService host covers a served name
        return False


def _served_hosts(gateway_namespace: str, gateway: dict[str, Any]) -> _ServedHosts:
    served = _ServedHosts(defaultdict(set), defaultdict(list))
    for server in map(_dict, _list(_spec(gateway).get("servers"))):
        for entry in map(str, _list(server.get("hosts"))):
            namespace, _, host = entry.rpartition("/")
            namespace = {"": "*", ".": gateway_namespace}.get(namespace, namespace)
            if host.startswith("*"):
                served.wildcards[namespace].append(host)
            else:
                served.exact[namespace].add(host)
    return served


def gateway_references(index: _Index) -> Iterator[Finding]:
    served_by = {key: _served_hosts(key.split("/")[0], g) for key, g in index.gateways.items()}
    for vs in index.by_kind["VirtualService"]:
        namespace = index.ns(vs)
        vs_hosts = [str(h) for h in _list(_spec(vs).get("hosts"))]
        for ref in map(str, _list(_spec(vs).get("gateways"))):
            if ref == "mesh":
                continue
            key = _gateway_key(ref, namespace)
            if key not in index.gateways:
                yield _finding(
                    index,
                    vs,
                    REFERENCED_RESOURCE_NOT_FOUND,
                    "error",
                    "gateway.name",
                    f"spec.gateways names gateway {ref!r}, which is not a Gateway of this stack",
                )
                continue
            if not any(served_by[key].serves(namespace, host) for host in vs_hosts):
                hosts_path = _model_path(index, vs, "hosts")
                model = _model(index, vs)
                if model is not None and index.config.models[model].hosts is None:
                    hosts_path = "gateway.domain"
                yield _finding(
                    index,
                    vs,
                    HOST_NOT_FOUND_IN_GATEWAY,
                    "warning",
                    hosts_path,
                    f"none of its hosts ({', '.join(vs_hosts)}) is served to namespace "
                    f"{namespace!r} by gateway {key}: the gateway ignores this VirtualService",
                )


# --- one mesh-bound VirtualService per host (IST0109) ------------------------------------------


def _export_scope(obj: dict[str, Any], namespace: str) -> frozenset[str]:
    entries = [str(e) for e in _list(_spec(obj).get("exportTo"))] or ["*"]
    return frozenset(namespace if e == "." else e for e in entries)


def mesh_host_conflicts(index: _Index) -> Iterator[Finding]:
    claims: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for vs in index.by_kind["VirtualService"]:
        gateways = _list(_spec(vs).get("gateways"))
        if gateways and "mesh" not in gateways:
            continue
        for host in {fqdn(str(h), index.ns(vs)) for h in _list(_spec(vs).get("hosts"))}:
            claims[host].append(vs)
    for host, owners in claims.items():
        for i, vs in enumerate(owners[1:], start=1):
            scope = _export_scope(vs, index.ns(vs))
            for other in owners[:i]:
                other_scope = _export_scope(other, index.ns(other))
                if "*" in scope or "*" in other_scope or scope & other_scope:
                    model = _model(index, vs)
                    yield _finding(
                        index,
                        vs,
                        CONFLICTING_MESH_GATEWAY_HOSTS,
                        "error",
                        f"models.{model}.hosts" if model else None,
                        f"host {host} is also bound to the mesh by {_ref(index, other)}; "
                        "sidecars would pick one of them at random: keep one VirtualService "
                        "per host",
                    )
                    break


# --- Services and namespaces (IST0118, IST0102, IST0123) ---------------------------------------

PROTOCOLS = frozenset(
    {"HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY", "TCP", "TLS", "UDP"}
    | {"MONGO", "REDIS", "MYSQL"}
)
_APP_PROTOCOLS = {
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "HTTPS",
}


def port_protocol(port: dict[str, Any]) -> str | None:
    """The protocol Istio reads from a Service port: appProtocol, else the name's prefix."""
    app = port.get("appProtocol")
    if isinstance(app, str) and app:
        app = _APP_PROTOCOLS.get(app, app).upper()
        return app if app in PROTOCOLS else None
    name = str(port.get("name", "")).upper()
    if name.startswith("GRPC-WEB"):
        return "GRPC-WEB"
    prefix = name.split("-", 1)[0]
    return prefix if prefix in PROTOCOLS else None


def service_port_names(index: _Index) -> Iterator[Finding]:
    for service in index.by_kind["Service"]:
        for i, port in enumerate(map(_dict, _list(_spec(service).get("ports")))):
            if port_protocol(port) is None:
                yield _finding(
                    index,
                    service,
                    PORT_NAME_NOT_UNDER_CONVENTION,
                    "info",
                    _model_path(index, service, "server"),
                    f"spec.ports[{i}] ({port.get('name')!r}, appProtocol "
                    f"{port.get('appProtocol')!r}) names no protocol Istio knows: it falls back "
                    "to protocol sniffing; name it http-..., grpc-... or set appProtocol",
                )


INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"


def namespace_injection(index: _Index) -> Iterator[Finding]:
    for namespace in index.by_kind["Namespace"]:
        labels = _labels(namespace)
        injected = labels.get(INJECTION_LABEL) == "enabled"
        if not injected and REVISION_LABEL not in labels:
            yield _finding(
                index,
                namespace,
                NAMESPACE_NOT_INJECTED,
                "info",
                "namespace",
                f"neither {INJECTION_LABEL}=enabled nor {REVISION_LABEL}: pods get no sidecar, "
                "so the mesh-side routing and subsets do not apply to them",
            )
        if INJECTION_LABEL in labels and REVISION_LABEL in labels:
            yield _finding(
                index,
                namespace,
                NAMESPACE_MULTIPLE_INJECTION_LABELS,
                "warning",
                "istio.revision",
                f"has both {INJECTION_LABEL} and {REVISION_LABEL}; {REVISION_LABEL} is ignored",
            )


# --- webhook rules on values (RULES.md 5, 6, 7, 8, 10, 11, 18, 20, 21, 22) -------------------

_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNIT_NANOS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
MILLISECOND = 10**6


def parse_duration(text: str) -> int:
    """Nanoseconds of a duration in Go's time.ParseDuration syntax (`1m30s`), as istiod reads it."""
    invalid = ValueError(f"{text!r} is not a duration such as 500ms, 5s or 1m30s")
    rest, sign = text.lstrip("+-"), -1 if text.startswith("-") else 1
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    nanos, position = Decimal(0), 0
    while position < len(rest):
        match = _DURATION_PART.match(rest, position)
        if match is None or not (match.group(1) or match.group(2)):
            raise invalid
        whole, fraction, unit = match.groups()
        nanos += Decimal(f"{whole or 0}.{fraction or 0}") * _UNIT_NANOS[unit]
        position = match.end()
    return sign * int(nanos)


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


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def _label_problem(key: str, value: Any) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and all(map(is_dns_label, prefix.split(".")))):
        return f"label key {key!r} has an invalid prefix"
    if not (len(name) <= 63 and _QUALIFIED_NAME.match(name)):
        return f"label key {key!r} is not a qualified name"
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        return f"label {key}={value!r} is not a valid label value"
    return None


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


def _port_number_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


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


# --- Gateway servers and TLS (RULES.md 36-40) ---------------------------------------------------

_CERTIFICATE_FIELDS = ("serverCertificate", "privateKey", "caCertificates", "caCrl")
_TERMINATING = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")


def _gateway_host_ok(entry: str) -> bool:
    namespace, slash, host = entry.rpartition("/")
    if slash and namespace not in ("*", ".") and not is_dns_label(namespace):
        return False
    if host == "*":
        return True
    labels = host.removeprefix("*.").split(".")
    return "." in host and all(is_dns_label(label.lower()) for label in labels)


def gateway_servers(index: _Index) -> Iterator[Finding]:
    for gateway in index.by_kind["Gateway"]:
        if not is_dns_label(_name(gateway)):
            yield _webhook(index, gateway, "gateway.name", "metadata.name must be a DNS-1123 label")
        servers = [_dict(s) for s in _list(_spec(gateway).get("servers"))]
        if not servers:
            yield _webhook(index, gateway, "models", "spec.servers: a Gateway needs a server")
        port_names: set[str] = set()
        for i, server in enumerate(servers):
            where, port = f"spec.servers[{i}]", _dict(server.get("port"))
            name, protocol = str(port.get("name", "")), str(port.get("protocol", "")).upper()
            if not name or name in port_names:
                yield _webhook(
                    index, gateway, None, f"{where}.port.name {name!r} must be unique, non-empty"
                )
            port_names.add(name)
            if protocol not in PROTOCOLS:
                yield _webhook(index, gateway, None, f"{where}.port.protocol {protocol!r} unknown")
            if not _port_number_ok(port.get("number")):
                yield _webhook(index, gateway, None, f"{where}.port.number is not in 1..65535")
            if "targetPort" in port:
                yield _webhook(index, gateway, None, f"{where}.port.targetPort must not be set")
            hosts = [str(h) for h in _list(server.get("hosts"))]
            if not hosts:
                yield _webhook(index, gateway, "models", f"{where}.hosts: at least one host")
            for host in hosts:
                if not _gateway_host_ok(host):
                    yield _webhook(
                        index,
                        gateway,
                        "gateway.domain",
                        f"{where}.hosts: {host!r} is not <namespace>/<fqdn with a dot> or '*'",
                    )
            yield from _server_tls(index, gateway, where, protocol, server)


def _server_tls(
    index: _Index, gateway: dict[str, Any], where: str, protocol: str, server: dict[str, Any]
) -> Iterator[Finding]:
    """RULES.md 39-40: who may have a tls block, its mode, and exactly one certificate source."""
    path = "gateway.tls"
    if "tls" not in server:
        if protocol in ("HTTPS", "TLS"):
            yield _webhook(index, gateway, path, f"{where}: a {protocol} server needs tls")
        return
    tls = _dict(server["tls"])
    mode = str(tls.get("mode", "PASSTHROUGH"))
    if protocol not in ("HTTPS", "TLS"):
        redirect_only = set(tls) <= {"httpsRedirect", "mode"} and mode == "PASSTHROUGH"
        if not (protocol == "HTTP" and redirect_only):
            yield _webhook(
                index,
                gateway,
                path,
                f"{where}.tls: a {protocol} server may only set httpsRedirect",
            )
        return
    if tls.get("httpsRedirect"):
        yield _webhook(
            index, gateway, path, f"{where}.tls.httpsRedirect on a {protocol} server", True
        )
    sources = [
        "credentialName" in tls,
        "credentialNames" in tls,
        "serverCertificate" in tls or "privateKey" in tls,
        "tlsCertificates" in tls,
    ]
    has_certificates = any(sources) or any(k in tls for k in _CERTIFICATE_FIELDS)
    if sum(sources) > 1:
        yield _webhook(index, gateway, path, f"{where}.tls: set only one certificate source")
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
        if has_certificates:
            yield _webhook(
                index,
                gateway,
                path,
                f"{where}.tls: mode {mode} (the default) ignores the certificates and does not "
                "terminate TLS; set mode: SIMPLE",
                warning=True,
            )
    elif mode == "ISTIO_MUTUAL":
        if has_certificates:
            yield _webhook(index, gateway, path, f"{where}.tls: ISTIO_MUTUAL takes no certificates")
    elif mode in _TERMINATING:
        credential = "credentialName" in tls or "credentialNames" in tls
        if not credential and "tlsCertificates" not in tls:
            needed = ["serverCertificate", "privateKey"]
            needed += ["caCertificates"] if mode != "SIMPLE" else []
            if missing := [k for k in needed if k not in tls]:
                yield _webhook(
                    index,
                    gateway,
                    f"{path}.credentialName",
                    f"{where}.tls: mode {mode} needs credentialName (or {', '.join(missing)})",
                )
        if "caCrl" in tls and (credential or mode == "SIMPLE"):
            yield _webhook(index, gateway, path, f"{where}.tls.caCrl is not allowed here")
    else:
        yield _webhook(index, gateway, path, f"{where}.tls.mode {mode!r} is not a TLS mode")


RULES: tuple[Callable[[_Index], Iterator[Finding]], ...] = (
    virtual_service_destinations,
    destination_rule_subsets,
    gateway_references,
    mesh_host_conflicts,
    service_port_names,
    namespace_injection,
    durations,
    route_weights,
    retries,
    percentages,
    subset_labels,
    export_to,
    ports,
    gateway_servers,
)
