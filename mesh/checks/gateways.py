"""Gateways: the VirtualServices bound to them resolve and match their hosts (IST0101,
IST0132), and their servers and TLS settings pass istiod's webhook (RULES.md 36-40).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mesh.checks.findings import HOST_NOT_FOUND_IN_GATEWAY, REFERENCED_RESOURCE_NOT_FOUND, Finding
from mesh.checks.formats import PROTOCOLS, _port_number_ok, is_dns_label
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _list, _name, _spec, host_matches
from mesh.checks.paths import _finding, _model, _model_path, _webhook


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


# Servers and TLS (RULES.md 36-40): webhook rules, reported as IST0106 or IST0133.
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
