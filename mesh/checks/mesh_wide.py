"""Rules across the mesh: one mesh-bound VirtualService per host (IST0109), a protocol Istio
knows for every Service port (IST0118), sidecar injection of namespaces (IST0102, IST0123).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import (
    CONFLICTING_MESH_GATEWAY_HOSTS,
    EXTERNAL_NAME_INVALID_PORT_NAME,
    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
    NAMESPACE_MULTIPLE_INJECTION_LABELS,
    NAMESPACE_NOT_INJECTED,
    POD_MISSING_PROXY,
    PORT_NAME_NOT_UNDER_CONVENTION,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _labels, _list, _name, _spec, export_to, fqdn, hosts_overlap
from mesh.checks.paths import _finding, _model, _model_path


def _mesh_bound(vs: dict[str, Any]) -> bool:
    """No `gateways` means the mesh; else only if `mesh` is listed."""
    gateways = _list(_spec(vs).get("gateways"))
    return not gateways or "mesh" in gateways


def mesh_host_conflicts(index: _Index) -> Iterator[Finding]:
    """IST0109, Istio's `virtualservice.ConflictingMeshGatewayHostsAnalyzer`
    (virtualservice/conflictingmeshgatewayhosts.go). Every mesh-bound VirtualService's hosts
    are keyed `scope/fqdn`, a scope per namespace it is exported to (`*` for all,
    `initMeshGatewayHosts`); VirtualServices sharing a key conflict, and a key of a narrower
    scope also conflicts with every VirtualService exported to all whose host overlaps it,
    wildcards included (`getExportToAllNamespacesVSListForScopedHost`, `host.Name.Matches`).
    Two VirtualServices exported to all conflict only on the very same host. Each
    VirtualService of a conflict is reported once, naming all of them."""
    claims: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for vs in index.by_kind["VirtualService"]:
        if not _mesh_bound(vs):
            continue
        namespace = index.ns(vs)
        entries = [str(e) for e in _list(_spec(vs).get("exportTo"))]
        scopes = ["*"] if not entries or "*" in entries else export_to(entries, namespace)
        for scope in dict.fromkeys(scopes):
            for host in map(str, _list(_spec(vs).get("hosts"))):
                key = f"{scope}/{fqdn(host, namespace)}"
                if not claims[key] or claims[key][-1] is not vs:
                    claims[key].append(vs)
    exported: dict[str, list[dict[str, Any]]] = defaultdict(list)  # host -> VS exported to all
    wildcards: list[tuple[str, list[dict[str, Any]]]] = []
    for key, owners in claims.items():
        scope, _, host = key.partition("/")
        if scope == "*":
            exported[host] = owners
            if host.startswith("*"):
                wildcards.append((host, owners))
    reported: set[int] = set()
    for key in sorted(claims):
        scope, _, host = key.partition("/")
        owners = list(claims[key])
        if scope != "*":  # a narrower scope also sees every overlapping host exported to all
            owners += exported.get(host, [])
            owners += [
                vs
                for pattern, vss in wildcards
                if pattern != host
                for vs in vss
                if hosts_overlap(host, pattern)
            ]
            if host.startswith("*"):
                owners += [
                    vs
                    for other, vss in exported.items()
                    if other != host and not other.startswith("*") and hosts_overlap(host, other)
                    for vs in vss
                ]
        owners = list({id(vs): vs for vs in owners}.values())
        if len(owners) < 2:
            continue
        names = ",".join(sorted(f"{index.ns(vs)}/{_name(vs)}" for vs in owners))
        for vs in owners:
            if id(vs) in reported:
                continue
            reported.add(id(vs))
            model = _model(index, vs)
            yield _finding(
                index,
                vs,
                CONFLICTING_MESH_GATEWAY_HOSTS,
                "error",
                f"models.{model}.hosts" if model else None,
                f"The VirtualServices {names} associated with mesh gateway define the same host "
                f"{key} which can lead to undefined behavior. This can be fixed by merging the "
                "conflicting VirtualServices into a single resource: sidecars would pick one of "
                "them; keep one VirtualService per host",
            )


_APP_PROTOCOLS = {
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "HTTPS",
}
# Ports whose protocol Istio takes as TCP when the name says none (pkg/config/kube/conversion.go
# `wellKnownPorts`: SMTP, DNS, MySQL, MongoDB).
_WELL_KNOWN_PORTS = frozenset({25, 53, 3306, 27017})
# What `protocol.Parse` knows (pkg/config/protocol/instance.go), lowercase.
_PARSED = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-WEB",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "MONGO",
    "redis": "REDIS",
    "mysql": "MYSQL",
}


def port_protocol(port: dict[str, Any]) -> str | None:
    """The protocol Istio reads from a Service port, None if it has to sniff. Istio's
    `kube.ConvertProtocol` (pkg/config/kube/conversion.go): UDP ports are UDP; appProtocol if
    set (even empty), else the name; its `grpc-web` prefix, else the part before the first
    `-`; a well-known port number (25, 53, 3306, 27017) is TCP when that names nothing."""
    if str(port.get("protocol", "")) == "UDP":
        return "UDP"
    app = port.get("appProtocol")
    name = str(app) if isinstance(app, str) else str(port.get("name", ""))
    if isinstance(app, str) and app in _APP_PROTOCOLS:
        return _APP_PROTOCOLS[app]
    if name[:8].lower() == "grpc-web":
        return "GRPC-WEB"
    found = _PARSED.get(name.split("-", 1)[0].lower())
    if found is None and port.get("port") in _WELL_KNOWN_PORTS:
        return "TCP"
    return found


# Istio's own Services: the control plane (`util.IsIstioControlPlane`: an `istio` label, or
# `release: istio`) and the gateways a controller deploys (`gateway.istio.io/managed`).
GATEWAY_MANAGED = "gateway.istio.io/managed"
_MANAGED_BY_ISTIO = frozenset(
    {"istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller"}
)


def istio_control_plane(obj: dict[str, Any]) -> bool:
    """An object of Istio's control plane (analyzers/util/config.go `IsIstioControlPlane`)."""
    labels = _labels(obj)
    return "istio" in labels or labels.get("release") == "istio"


def gateway_managed(obj: dict[str, Any]) -> bool:
    """A Service or Deployment a gateway controller made for a Gateway API Gateway
    (service/portname.go: `label.GatewayManaged` with one of Istio's controller values)."""
    return _labels(obj).get(GATEWAY_MANAGED) in _MANAGED_BY_ISTIO


def _target_port(port: dict[str, Any]) -> str:
    """`port.TargetPort.String()`: the number or name; unset is the IntOrString zero, `0`."""
    target = port.get("targetPort")
    return "0" if target is None else str(target)


def _app_protocol(port: dict[str, Any]) -> str:
    return f" (appProtocol {port['appProtocol']!r})" if "appProtocol" in port else ""


def service_port_names(index: _Index) -> Iterator[Finding]:
    """IST0118, Istio's `service.PortNameAnalyzer` (service/portname.go): every port of every
    Service whose protocol Istio cannot tell, except the control plane's and the Services a
    gateway controller manages. An ExternalName Service gets IST0150 (a warning) instead, for
    such a port and for a port named exactly `tcp` (`NewExternalNameServiceTypeInvalidPortName`)."""
    for service in index.by_kind["Service"]:
        if istio_control_plane(service) or gateway_managed(service):
            continue
        external = _spec(service).get("type") == "ExternalName"
        for i, port in enumerate(map(_dict, _list(_spec(service).get("ports")))):
            if external and (port_protocol(port) is None or port.get("name") == "tcp"):
                yield _finding(
                    index,
                    service,
                    EXTERNAL_NAME_INVALID_PORT_NAME,
                    "warning",
                    _model_path(index, service, "server"),
                    "Port name for ExternalName service is invalid. Proxy may prevent tcp named "
                    "ports and unmatched traffic for ports serving TCP protocol from being "
                    f"forwarded correctly. spec.ports[{i}] {port.get('name', '')!r}: name it "
                    "after its protocol (http-..., https-..., tls-...), or reach a plain TCP "
                    "host through a ServiceEntry",
                )
            elif not external and port_protocol(port) is None:
                yield _finding(
                    index,
                    service,
                    PORT_NAME_NOT_UNDER_CONVENTION,
                    "info",
                    _model_path(index, service, "server"),
                    f"Port name {port.get('name', '')} (port: {port.get('port')}, targetPort: "
                    f"{_target_port(port)}) doesn't follow the naming convention of Istio port. "
                    f"spec.ports[{i}]{_app_protocol(port)} names no protocol Istio knows: it "
                    "falls back to protocol sniffing; name it http-..., grpc-... or set "
                    "appProtocol",
                )


INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"
ISTIO_SYSTEM = "istio-system"
INJECTOR_CONFIG_MAP = "istio-sidecar-injector"


def _stack_path(index: _Index, obj: dict[str, Any], path: str) -> str | None:
    """`path` for the stack's own object; a cluster object has no config key."""
    return path if index.is_stack(obj) else None


def _injects_by_default(index: _Index) -> dict[str, bool]:
    """By injector ConfigMap name (`istio-sidecar-injector`, `-<revision>`: any namespace, as
    Istio finds it by name), whether Istio was
    installed with `sidecarInjectorWebhook.enableNamespacesByDefault`
    (`GetEnableNamespacesByDefaultFromInjectedConfigMap`: the `values` key, JSON)."""
    found: dict[str, bool] = {}
    for config_map in index.by_kind["ConfigMap"]:
        name = _name(config_map)
        if name != INJECTOR_CONFIG_MAP and not name.startswith(f"{INJECTOR_CONFIG_MAP}-"):
            continue
        try:
            values = json.loads(str(_dict(config_map.get("data")).get("values", "")))
        except ValueError:
            continue
        webhook = _dict(_dict(values).get("sidecarInjectorWebhook"))
        found[name] = webhook.get("enableNamespacesByDefault") is True
    return found


def namespace_injection(index: _Index) -> Iterator[Finding]:
    """IST0123 and IST0102, Istio's `injection.Analyzer` (injection/injection.go). istio-system
    is skipped (kube-system and the other ignored namespaces never reach a rule). Injection
    labels counted: `istio-injection`, and `istio.io/rev` and `istio.io/dataplane-mode` unless
    `istio-injection` is set to something other than `enabled`; an ambient namespace needs no
    sidecar; only a namespace with neither an `istio-injection` value nor `istio.io/rev` is not
    injected (`istio-injection=disabled` opts out on purpose), or IST0148 instead when Istio's
    injector ConfigMap (in a snapshot) says it injects every namespace by default.

    Then IST0103 on every Pod of a snapshot in a namespace labelled `istio-injection=enabled`
    (not ambient, not istio-system) that has no `istio-proxy` container or init container, unless
    `sidecar.istio.io/inject` (label over annotation) is `false` or it runs on the host
    network: it started before injection was on, or was refused it."""
    by_default = _injects_by_default(index)
    injected: set[str] = set()
    for namespace in index.by_kind["Namespace"]:
        name = _name(namespace)
        if name == ISTIO_SYSTEM:
            continue
        labels = {str(k): str(v) for k, v in _labels(namespace).items()}
        injection = labels.get(INJECTION_LABEL)
        found = [f"{INJECTION_LABEL}={injection}"] if injection is not None else []
        if injection is None or injection == "enabled":
            found += [
                f"{k}={labels[k]}" for k in (REVISION_LABEL, DATAPLANE_MODE_LABEL) if k in labels
            ]
        if len(found) > 1:
            yield _finding(
                index,
                namespace,
                NAMESPACE_MULTIPLE_INJECTION_LABELS,
                "warning",
                _stack_path(index, namespace, "istio.revision"),
                f"The namespace has more than one type of injection labels [{' '.join(found)}], "
                "which may lead to undefined behavior. Make sure only one injection label "
                "exists: keep one of them",
            )
        if labels.get(DATAPLANE_MODE_LABEL) == "ambient":
            continue
        # without istio.io/rev the injector is the default revision's ConfigMap
        if not injection and REVISION_LABEL not in labels and by_default.get(INJECTOR_CONFIG_MAP):
            yield _finding(
                index,
                namespace,
                NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
                "info",
                _stack_path(index, namespace, "namespace"),
                "is enabled for Istio injection, as Istio is installed with "
                "enableNamespacesByDefault as true.",
            )
        elif not injection and REVISION_LABEL not in labels:
            yield _finding(
                index,
                namespace,
                NAMESPACE_NOT_INJECTED,
                "info",
                _stack_path(index, namespace, "namespace"),
                f"The namespace is not enabled for Istio injection. Run 'kubectl label namespace "
                f"{name} istio-injection=enabled' to enable it, or 'kubectl label namespace "
                f"{name} istio-injection=disabled' to explicitly mark it as not needing "
                "injection: pods get no sidecar, so the mesh-side routing and subsets do not "
                "apply to them",
            )
        elif injection == "enabled":
            injected.add(name)
    yield from _pods_missing_proxy(index, injected)


SIDECAR_INJECT = "sidecar.istio.io/inject"


def _pods_missing_proxy(index: _Index, injected: set[str]) -> Iterator[Finding]:
    """IST0103 (injection/injection.go, the Pod half of `injection.Analyzer`)."""
    for pod in index.by_kind["Pod"]:
        if index.ns(pod) not in injected:
            continue
        metadata = _dict(pod.get("metadata"))
        inject = _dict(metadata.get("annotations")).get(SIDECAR_INJECT)
        inject = _labels(pod).get(SIDECAR_INJECT, inject)
        if str(inject).lower() == "false" or _spec(pod).get("hostNetwork") is True:
            continue
        containers = [
            *_list(_spec(pod).get("containers")),
            *_list(_spec(pod).get("initContainers")),
        ]
        if any(_dict(c).get("name") == "istio-proxy" for c in containers):
            continue
        pod_name = f"{index.ns(pod)}/{_name(pod)}"
        yield _finding(
            index,
            pod,
            POD_MISSING_PROXY,
            "warning",
            None,
            f"The pod {pod_name} is missing the Istio proxy. This can often be resolved by "
            "restarting or redeploying the workload. Its namespace is labelled "
            "istio-injection=enabled, but the pod has no istio-proxy container: it started "
            "before injection was on, or the injector refused it; until it is restarted its "
            "traffic bypasses the mesh",
        )
