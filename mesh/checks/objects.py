"""Reading plan objects: plain Kubernetes dicts read defensively, and Istio host names.

Checks run on plans a builder bug may have broken, so every accessor takes a missing or
mistyped field as empty instead of raising: the rules then report what is wrong, by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


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


def hosts_overlap(a: str, b: str) -> bool:
    """Whether two Istio host names overlap: equal, or one's wildcard covers the other (both may
    be wildcards). Istio's `host.Name.Matches` (pkg/config/host/name.go), symmetric, which the
    analyzers use to compare VirtualService hosts with Gateway hosts and with each other."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        shorter, longer = sorted((a, b), key=len)
        return longer[1:].endswith(shorter[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


_CLUSTER_LOCAL = ".svc.cluster.local"


def resource_name(host: str, namespace: str) -> tuple[str, str]:
    """(namespace, name) a host stands for: `name.ns.svc.cluster.local` is (ns, name), any other
    name is (namespace of the object naming it, the name as written). Istio's
    `GetResourceNameFromHost` (analyzers/util/hosts.go), by which the DestinationRule analyzer
    pairs a route's host and subset with a DestinationRule's: an external host is looked up
    in the route's own namespace."""
    if host.endswith(_CLUSTER_LOCAL):
        name, _, ns = host[: -len(_CLUSTER_LOCAL)].rpartition(".")
        if name and ns:
            return ns, name
    return namespace, host


def export_to(values: Any, namespace: str) -> list[str]:
    """An `exportTo` list as scopes: `.` is the object's own namespace; empty: `*`, the
    mesh-wide default (`defaultVirtualServiceExportTo` and friends, assumed `*`)."""
    scopes = [namespace if str(e) == "." else str(e) for e in _list(values)]
    return scopes or ["*"]


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
