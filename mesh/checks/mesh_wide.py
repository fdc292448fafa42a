"""Rules across the mesh: one mesh-bound VirtualService per host (IST0109), a protocol Istio
knows for every Service port (IST0118), sidecar injection of namespaces (IST0102, IST0123).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import (
    CONFLICTING_MESH_GATEWAY_HOSTS,
    NAMESPACE_MULTIPLE_INJECTION_LABELS,
    NAMESPACE_NOT_INJECTED,
    PORT_NAME_NOT_UNDER_CONVENTION,
    Finding,
)
from mesh.checks.formats import PROTOCOLS
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _labels, _list, _spec, fqdn
from mesh.checks.paths import _finding, _model, _model_path, _ref


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
