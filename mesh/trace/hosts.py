"""Host names as Istio compares them.

- A wildcard host `*.example.com` matches any name ending in `.example.com`, and `*` matches
  everything (pkg/config/host/name.go `Name.Matches`).
- Of several virtual hosts, Envoy picks the exact domain first, then the longest suffix
  wildcard, then `*` (envoy source/common/router/config_impl.cc `findVirtualHost`).
- A Gateway server's `hosts` entry is `namespace/host`: `./host` admits VirtualServices of the
  Gateway's own namespace only, `*/host` (or a bare host) any namespace
  (pilot/pkg/model/gateway.go `sanitizeServerHostNamespace`; pkg/config/host/names.go
  `NamesForNamespace` and `Intersection`, used by pilot/pkg/networking/core/gateway.go
  `buildGatewayHTTPRouteConfig`).
- In the mesh a client may use a short name: `a`, `a.ns`, `a.ns.svc` all reach
  `a.ns.svc.cluster.local` (Istio generates these domains on the sidecar's virtual hosts,
  pilot/pkg/networking/core/httproute.go `generateVirtualHostDomains` /
  `GenerateAltVirtualHosts`); any other name is taken as written.
"""

from __future__ import annotations

CLUSTER_SUFFIX = "svc.cluster.local"


def matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key, most specific first: exact before wildcards, longer wildcards first."""
    return (0 if not pattern.startswith("*") else 1, -len(pattern))


def best(patterns: list[str], host: str) -> str | None:
    """The pattern Envoy's virtual host selection would pick for `host`."""
    found = sorted((p for p in patterns if matches(p, host)), key=specificity)
    return found[0] if found else None


def expand_in_mesh(host: str, namespace: str, known=None) -> str:
    """What a sidecar's virtual host makes of a short in-cluster name used from `namespace`:
    the Service FQDN, when `known` (the Services) has it; otherwise the name as written, so
    `github.com` stays an external host."""
    host = host.lower()
    expanded = _expand(host, namespace)
    if known is not None and expanded not in known:
        return host
    return expanded


def _expand(host: str, namespace: str) -> str:
    parts = host.split(".")
    if host.endswith(CLUSTER_SUFFIX) or "*" in host:
        return host
    if len(parts) == 1:
        return f"{host}.{namespace}.{CLUSTER_SUFFIX}"
    if len(parts) == 2:
        return f"{host}.{CLUSTER_SUFFIX}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host


def server_host_admits(entry: str, gateway_namespace: str, vs_namespace: str, host: str) -> bool:
    """Whether a Gateway server's `hosts` entry lets a VirtualService of `vs_namespace` bind
    `host` on it."""
    namespace, _, pattern = entry.rpartition("/")
    if namespace == ".":
        namespace = gateway_namespace
    if namespace not in ("", "*") and namespace != vs_namespace:
        return False
    return matches(pattern, host) or matches(host, pattern)


def is_ip(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)
