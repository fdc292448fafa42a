"""The Istio Gateway's workload in the live cluster: its pods, their Service, their TLS Secrets
(IST0101, IST0162, IST0161), and the other Gateways on the same workload (IST0145, IST0138).

These are Istio's gateway analyzers (istio/istio 1.30.3 `pkg/config/analysis/analyzers/gateway/`),
run over the cluster as it will be after `pulumi up` (`mesh check --with`). They need the
cluster's gateway pods, Services and Secrets, which the stack alone does not hold: without a
snapshot (`index.stack_ids is None`) every rule here is silent, so `mesh check <stack>` is what
it was before.

What Istio decides on, and this module with it:

- A Gateway's `selector` is a label set matched against the labels of every Pod in any
  namespace (`klabels.SelectorFromSet(gw.Selector)`; an empty selector matches every pod;
  `PILOT_SCOPE_GATEWAY_TO_NAMESPACE` is off by default, so pods are not limited to the
  Gateway's namespace). The pods are the snapshot's live Pods plus, for the stack's own
  Deployments (whose live Pods `merge` dropped), one pod per template, as after the rollout.
- The credential Secret is looked up in the namespace of the gateway *pods*, never in the
  Gateway's own namespace (`getGatewayNamespace`). Istio picks one pod's namespace when the
  pods run in several ("undefined"); ml-mesh checks every such namespace, as each workload reads
  its Secrets from its own.
- A snapshot's Secrets carry key names only (mesh.checks.snapshot.redact): validity is decided
  from the key names `ExtractCertInfo` looks for, never from a value, and no value is read or
  printed. Istio also parses the certificate (`xds.ValidateCertificate`); that part needs the
  value and is left to the cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mesh.checks.findings import (
    CONFLICTING_GATEWAYS,
    GATEWAY_CLIENT_CA_MISSING,
    GATEWAY_DUPLICATE_CERTIFICATE,
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
    INVALID_GATEWAY_CREDENTIAL,
    REFERENCED_RESOURCE_NOT_FOUND,
    SECRETS_NOT_LISTED,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.kinds import SNAPSHOT_GROUP, api_group
from mesh.checks.objects import _dict, _labels, _list, _name, _spec
from mesh.checks.paths import _finding

# pilot/pkg/credentials/kube/secrets.go: the key names ExtractCertInfo and ExtractRoot read.
GENERIC_CERT, GENERIC_KEY, GENERIC_CA = "cert", "key", "cacert"
TLS_CERT, TLS_KEY, TLS_CA = "tls.crt", "tls.key", "ca.crt"
# pkg/security/model: the SDS resource (and Secret) a MUTUAL server's client CA comes from.
CA_SUFFIX = "-cacert"
_MUTUAL = ("MUTUAL", "OPTIONAL_MUTUAL")


@dataclass(frozen=True)
class _Pod:
    """A pod as the analyzers see it: where it runs and its labels."""

    namespace: str
    labels: dict[str, str]


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def selector_string(selector: dict[str, str]) -> str:
    """`klabels.SelectorFromSet(s).String()`: `key=value` pairs sorted by key, comma-joined;
    `""` for an empty selector. Istio's messages quote it, and ConflictingGatewayAnalyzer
    compares gateways by it."""
    return ",".join(f"{key}={selector[key]}" for key in sorted(selector))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """`SelectorFromSet(selector).Matches(labels)`: every pair present; empty selects all."""
    return all(key in labels and labels[key] == value for key, value in selector.items())


def workload_pods(index: _Index) -> list[_Pod]:
    """Every pod of the cluster after `pulumi up`: the snapshot's Pods, and one per template of
    the stack's Deployments that run any (their live Pods were replaced by the merge)."""
    pods = [_Pod(index.ns(pod), _str_map(_labels(pod))) for pod in index.by_kind["Pod"]]
    for deployment in index.by_kind["Deployment"]:
        if not index.is_stack(deployment) or _spec(deployment).get("replicas", 1) == 0:
            continue
        template = _dict(_spec(deployment).get("template"))
        pods.append(_Pod(index.ns(deployment), _str_map(_labels(template))))
    return pods


def _selector(gateway: dict[str, Any]) -> dict[str, str]:
    return _str_map(_spec(gateway).get("selector"))


def _servers(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    return [_dict(server) for server in _list(_spec(gateway).get("servers"))]


def _full_name(index: _Index, obj: dict[str, Any]) -> str:
    return f"{index.ns(obj)}/{_name(obj)}"


def _is_ml_mesh_gateway(index: _Index, gateway: dict[str, Any]) -> bool:
    return index.is_stack(gateway) and _name(gateway) == index.config.gateway.name


def _path(index: _Index, gateway: dict[str, Any], path: str) -> str | None:
    """The stack config key behind the stack's Gateway; none for any other Gateway."""
    return path if _is_ml_mesh_gateway(index, gateway) else None


def _istio(message: str, explanation: str) -> str:
    """Istio's message, as `istioctl analyze` prints it, then ml-mesh's explanation and fix."""
    return f"{message}{' ' if message.endswith('.') else ': '}{explanation}"


def _port_number(value: Any) -> int:
    """`intstr.IntValue()`: a number, a numeric string, or 0 (a named port, or none)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


def _no_workload(index: _Index, gateway: dict[str, Any], selector: str) -> Finding:
    """IST0101 ReferencedResourceNotFound ("selector"), as IngressGatewayPortAnalyzer and
    SecretAnalyzer both report it (istioctl prints the duplicate once)."""
    if _is_ml_mesh_gateway(index, gateway):
        fix = (
            "set gateway.selector to the labels of the ingress gateway's pods "
            "(kubectl get pods -A --show-labels; Istio's default is istio: ingressgateway)"
        )
    else:
        fix = "fix spec.selector to the labels of a gateway deployment's pods"
    return _finding(
        index,
        gateway,
        REFERENCED_RESOURCE_NOT_FOUND,
        "error",
        _path(index, gateway, "gateway.selector"),
        _istio(
            f'Referenced selector not found: "{selector}"',
            "no pod in the cluster carries these labels, so no gateway workload serves this "
            f"Gateway's servers and its hosts are unreachable; {fix}",
        ),
    )


def gateway_ports(index: _Index) -> Iterator[Finding]:
    """Istio `gateway.IngressGatewayPortAnalyzer` (analyzers/gateway/gateway.go): the Gateway's
    selector matches pods (IST0101), and a Service selecting those pods in their namespace
    exposes each server port (IST0162, a warning). As Istio computes it, a server port is
    exposed when it is the `targetPort` of a TCP port of such a Service (the port itself when
    the targetPort is named or unset), or that Service port's own number. A port without a
    protocol counts as TCP: the API server defaults it so. As in Istio, a Service without a
    selector counts as selecting every pod of its namespace."""
    if index.stack_ids is None:
        return
    pods = workload_pods(index)
    services_by_ns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for service in index.by_kind["Service"]:
        services_by_ns[index.ns(service)].append(service)
    matched_by: dict[str, list[_Pod]] = {}  # by selector string: Gateways share a few selectors
    for gateway in index.by_kind["Gateway"]:
        selector = _selector(gateway)
        key = selector_string(selector)
        if key not in matched_by:
            matched_by[key] = [pod for pod in pods if selects(selector, pod.labels)]
        matched = matched_by[key]
        if not matched:
            yield _no_workload(index, gateway, selector_string(selector))
            continue
        target_ports: set[int] = set()
        service_ports: set[int] = set()
        for pod in matched:
            for service in services_by_ns.get(pod.namespace, ()):
                if not selects(_str_map(_spec(service).get("selector")), pod.labels):
                    continue
                for port in map(_dict, _list(_spec(service).get("ports"))):
                    if str(port.get("protocol") or "TCP") != "TCP":
                        continue
                    number = _port_number(port.get("port"))
                    target = _port_number(port.get("targetPort"))
                    target_ports.add(target or number)
                    if target:
                        service_ports.add(number)
        for server in _servers(gateway):
            if "port" not in server:
                continue
            number = _port_number(_dict(server["port"]).get("number"))
            if number in target_ports or number in service_ports:
                continue
            namespaces = sorted({pod.namespace for pod in matched})
            yield _finding(
                index,
                gateway,
                GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                "warning",
                _path(index, gateway, "gateway.selector"),
                _istio(
                    f"The gateway is listening on a target port (port {number}) that is not "
                    "defined in the Service associated with its workload instances (Pod "
                    f"selector {selector_string(selector)}). If you need to access the gateway "
                    "port through the gateway Service, it will not be available.",
                    f"No TCP port of a Service selecting the gateway pods (namespace "
                    f"{', '.join(namespaces)}) has port or targetPort {number}: add one to the "
                    "gateway Service, or serve this Gateway on a port the Service exposes.",
                ),
            )


def _secret_keys(secret: dict[str, Any]) -> set[str]:
    """The key names of a Secret (data and stringData). Only names: a snapshot's values are
    redacted, and a value is never read here."""
    return {str(key) for field in ("data", "stringData") for key in _dict(secret.get(field))}


def certificate_problem(keys: set[str]) -> str | None:
    """Why `ExtractCertInfo` (pilot/pkg/credentials/kube/secrets.go) finds no server
    certificate in a Secret with these key names, or None: it takes `cert` and `key` (a generic
    Secret) or `tls.crt` and `tls.key` (a kubernetes.io/tls one), whatever the Secret's type."""
    if {GENERIC_CERT, GENERIC_KEY} <= keys or {TLS_CERT, TLS_KEY} <= keys:
        return None
    return (
        f"it has neither keys {GENERIC_CERT!r} and {GENERIC_KEY!r} nor {TLS_CERT!r} and "
        f"{TLS_KEY!r} (found: {_key_list(keys)})"
    )


def root_problem(keys: set[str]) -> str | None:
    """Why `ExtractRoot` finds no CA certificate in a Secret with these key names, or None: it
    takes `cacert` or `ca.crt`."""
    if GENERIC_CA in keys or TLS_CA in keys:
        return None
    return f"it has neither key {GENERIC_CA!r} nor {TLS_CA!r} (found: {_key_list(keys)})"


def _key_list(keys: Iterable[str]) -> str:
    """`truncatedKeysMessage`: the sorted key names, the first three and a count of the rest."""
    names = sorted(keys)
    if not names:
        return "no keys"
    if len(names) < 3:
        return ", ".join(names)
    more = f", and {len(names) - 3} more..." if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _secret_name(credential: str, namespace: str) -> tuple[str, str]:
    """`resource.NewShortOrFullName(gwNs, cn)`: `ns/name` names its namespace, else `gwNs`."""
    head, slash, tail = credential.partition("/")
    return (head, tail) if slash else (namespace, credential)


def gateway_credentials(index: _Index) -> Iterator[Finding]:
    """Istio `gateway.SecretAnalyzer` (analyzers/gateway/secret.go): each server's
    `tls.credentialName` Secret exists in the namespace of the Gateway's workload pods (IST0101)
    and holds a certificate and key as `ExtractCertInfo` reads them (IST0161). As in Istio, any
    server with a credentialName is checked, whatever its mode. ml-mesh adds what istiod needs
    for a MUTUAL or OPTIONAL_MUTUAL server: the client CA, from the Secret `<name>-cacert` if it
    exists, else from the credential itself (`CredentialsController.GetCaCert`, read by
    `ExtractRoot`); without it the gateway's listener never gets its validation context. A
    Gateway whose selector matches no pod is reported by `gateway_ports` (Istio reports it from
    both analyzers; istioctl prints it once)."""
    if index.stack_ids is None:
        return
    pods = workload_pods(index)
    secrets = {(index.ns(s), _name(s)): s for s in index.by_kind["Secret"]}
    listed = secrets_listed(index)
    names_by_secret: dict[str, list[str]] = defaultdict(list)
    for namespace, name in secrets:
        names_by_secret[name].append(namespace)
    namespaces_by: dict[str, list[str]] = {}  # by selector string: Gateways share a few
    for gateway in index.by_kind["Gateway"]:
        selector = _selector(gateway)
        key = selector_string(selector)
        if key not in namespaces_by:
            namespaces_by[key] = sorted(
                {pod.namespace for pod in pods if selects(selector, pod.labels)}
            )
        namespaces = namespaces_by[key]
        for server in _servers(gateway):
            tls = _dict(server.get("tls"))
            credential = str(tls.get("credentialName") or "")
            if not credential:
                continue
            for workload_ns in namespaces:
                namespace, _ = _secret_name(credential, workload_ns)
                if namespace not in listed:
                    if index.is_stack(gateway):
                        yield _not_listed(index, gateway, credential, namespace)
                    continue
                yield from _credential(
                    index,
                    gateway,
                    workload_ns,
                    credential,
                    str(tls.get("mode", "")),
                    secrets,
                    names_by_secret,
                )


def secrets_listed(index: _Index) -> set[str]:
    """The namespaces whose Secrets the snapshot holds: those named by a `SecretsListed` marker
    (examples/cluster/snapshot.sh writes one per namespace it lists, empty or not) and those
    with at least one Secret. Elsewhere a missing Secret says nothing: it was not looked for."""
    markers = (o for o in index.by_kind["SecretsListed"] if api_group(o) == SNAPSHOT_GROUP)
    return {_name(o) for o in markers} | {index.ns(s) for s in index.by_kind["Secret"]}


def _not_listed(index: _Index, gateway: dict[str, Any], credential: str, namespace: str) -> Finding:
    return _finding(
        index,
        gateway,
        SECRETS_NOT_LISTED,
        "info",
        _path(index, gateway, "gateway.tls.credentialName"),
        f"credentialName {credential!r} not checked: the gateway pods run in namespace "
        f"{namespace!r}, whose Secrets the snapshot does not hold; take it with "
        f"`examples/cluster/snapshot.sh {namespace}` to check it",
    )


def _credential(
    index: _Index,
    gateway: dict[str, Any],
    workload_ns: str,
    credential: str,
    mode: str,
    secrets: dict[tuple[str, str], dict[str, Any]],
    names_by_secret: dict[str, list[str]],
) -> Iterator[Finding]:
    path = _path(index, gateway, "gateway.tls.credentialName")
    namespace, name = _secret_name(credential, workload_ns)
    secret = secrets.get((namespace, name))
    if secret is None:
        elsewhere = sorted(ns for ns in names_by_secret.get(name, ()) if ns != namespace)
        seen = (
            f" (a Secret {name!r} exists in {', '.join(elsewhere)}, which the gateway never reads)"
            if elsewhere
            else ""
        )
        yield _finding(
            index,
            gateway,
            REFERENCED_RESOURCE_NOT_FOUND,
            "error",
            path,
            _istio(
                f'Referenced credentialName not found: "{credential}"',
                f"the gateway pods run in namespace {namespace!r} and read their TLS Secret "
                f"there, not in the Gateway's namespace {index.ns(gateway)!r}{seen}; create "
                f"it there: kubectl -n {namespace} create secret tls {name} --cert=... --key=...",
            ),
        )
        return
    if problem := certificate_problem(_secret_keys(secret)):
        yield _finding(
            index,
            gateway,
            INVALID_GATEWAY_CREDENTIAL,
            "error",
            path,
            _istio(
                f"The credential referenced by the Gateway {_name(gateway)} in namespace "
                f"{workload_ns} is invalid, which can cause the traffic not to work as expected.",
                f"Secret {namespace}/{name}: {problem}. Only key names are checked; the values "
                "never leave the cluster.",
            ),
        )
    if mode in _MUTUAL:
        # Not an analyzer of Istio's (istioctl reports nothing here), so an ml-mesh code: what
        # istiod itself needs to give a mutual-TLS listener its validation context.
        ca_secret = secrets.get((namespace, name + CA_SUFFIX))
        ca_name = name + CA_SUFFIX if ca_secret is not None else name
        if problem := root_problem(_secret_keys(ca_secret or secret)):
            yield _finding(
                index,
                gateway,
                GATEWAY_CLIENT_CA_MISSING,
                "error",
                path,
                f"mode {mode} needs the client CA, read from Secret {namespace}/{ca_name}: "
                f"{problem}; without it istiod builds the listener with no validation context "
                "and mutual-TLS clients are refused. Only key names are checked.",
            )


def conflicting_gateways(index: _Index) -> Iterator[Finding]:
    """Istio `gateway.ConflictingGatewayAnalyzer` (analyzers/gateway/conflictinggateway.go),
    IST0145: two Gateways on the same workload and port both claim a host. As in Istio, the
    workloads are the same when the selector strings are equal, or when one contains the other
    and some pod matches both; hosts are compared as written (`model.CheckDuplicates`:
    `ns/host` included) with the same `bind`. Istio's IST0101 for a Gateway without servers
    and without a twin is not repeated here (gateway_ports reports a selector without pods)."""
    if index.stack_ids is None:
        return
    gateways = index.by_kind["Gateway"]
    if len(gateways) < 2:
        return
    pods = workload_pods(index)
    # selector string -> port -> gateway full name -> {host: bind}
    known: dict[str, dict[str, dict[str, dict[str, str]]]] = defaultdict(lambda: defaultdict(dict))
    for gateway in gateways:
        for server in _servers(gateway):
            hosts = dict.fromkeys(map(str, _list(server.get("hosts"))), str(server.get("bind", "")))
            port = str(_port_number(_dict(server.get("port")).get("number")))
            known[selector_string(_selector(gateway))][port][_full_name(index, gateway)] = hosts
    # (selector string, port) -> (host, bind) -> the Gateways whose (last) server on that port
    # has it, so a server's rivals are looked up by its hosts, not by scanning every Gateway.
    claims: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for selector_key, by_port in known.items():
        for port, by_gateway in by_port.items():
            for gateway_name, hosts_bind in by_gateway.items():
                for host, host_bind in hosts_bind.items():
                    claims[(selector_key, port)][(host, host_bind)].add(gateway_name)
    twins_by: dict[str, list[str]] = {}  # by selector string
    for gateway in gateways:
        selector = _selector(gateway)
        own = selector_string(selector)
        if own not in twins_by:
            twins_by[own] = [
                other
                for other in known
                if other == own
                or (
                    (own in other or other in own)
                    and any(
                        selects(selector, pod.labels) and selects(_parse(other), pod.labels)
                        for pod in pods
                    )
                )
            ]
        twins = twins_by[own]
        name = _full_name(index, gateway)
        for server in _servers(gateway):
            port = str(_port_number(_dict(server.get("port")).get("number")))
            hosts = [str(h) for h in _list(server.get("hosts"))]
            bind = str(server.get("bind", ""))
            clashing = sorted(
                {
                    other_name
                    for twin in twins
                    if (twin, port) in claims
                    for h in hosts
                    for other_name in claims[(twin, port)].get((h, bind), ())
                }
                - {name}
            )
            if not clashing:
                continue
            yield _finding(
                index,
                gateway,
                CONFLICTING_GATEWAYS,
                "error",
                _path(index, gateway, "gateway.domain"),
                _istio(
                    f"Conflict with gateways {','.join(clashing)} (workload selector {own}, "
                    f"port {port}, hosts {','.join(hosts)}).",
                    "The gateway pods get both servers for the same host and port and keep "
                    "only one; serve each host from one Gateway (or bind them apart).",
                ),
            )


def _parse(selector: str) -> dict[str, str]:
    """`parseSelectorFromString`: the `k=v` pairs of a selector string back into a label set."""
    pairs = (pair.split("=") for pair in selector.split(","))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def duplicate_certificates(index: _Index) -> Iterator[Finding]:
    """Istio `gateway.CertificateAnalyzer` (analyzers/gateway/certificate.go), IST0138 (a
    warning): another Gateway whose selector includes this one's (`selectorSubset`; an empty
    selector includes all) uses the same certificate on a TLS server (same credentialName, or
    same serverCertificate and privateKey files). Envoy may then reuse an HTTP/2 connection
    across both and answer 404 (envoyproxy/envoy#6767)."""
    if index.stack_ids is None:
        return
    gateways = index.by_kind["Gateway"]
    # Gateways by the certificates of their TLS servers: only two that share one can match, so
    # each Gateway is compared with those alone (not with every other: linear, not quadratic).
    by_certificate: dict[tuple[str, ...], list[int]] = defaultdict(list)
    certificates: list[set[tuple[str, ...]]] = []
    for i, gateway in enumerate(gateways):
        mine = {
            key
            for server in _servers(gateway)
            if "tls" in server
            for key in [_certificate_key(_dict(server.get("tls")))]
            if key is not None
        }
        certificates.append(mine)
        for key in mine:
            by_certificate[key].append(i)
    for i, gateway in enumerate(gateways):
        selector = _selector(gateway)
        name = _full_name(index, gateway)
        seen: set[str] = set()
        candidates = sorted({j for key in certificates[i] for j in by_certificate[key]})
        for j in candidates:
            other = gateways[j]
            other_name = _full_name(index, other)
            if other_name == name or other_name in seen:
                continue
            if not _subset(selector, _selector(other)):
                continue
            seen.add(other_name)
            yield _finding(
                index,
                gateway,
                GATEWAY_DUPLICATE_CERTIFICATE,
                "warning",
                _path(index, gateway, "gateway.tls.credentialName"),
                _istio(
                    f"Duplicate certificate in multiple gateways [{name} {other_name}] may "
                    "cause 404s if clients re-use HTTP2 connections.",
                    "Give each Gateway on this workload its own certificate, or serve the "
                    "hosts from one Gateway.",
                ),
            )


def _certificate_key(tls: dict[str, Any]) -> tuple[str, ...] | None:
    """What `haveSameCertificate` compares, as one key: two servers have the same certificate
    exactly when their keys are equal (None: a server whose certificate matches no other's)."""
    cn = str(tls.get("credentialName") or "")
    if cn:
        return ("credentialName", cn)
    cert, key = str(tls.get("serverCertificate") or ""), str(tls.get("privateKey") or "")
    return ("files", cert, key) if cert and key else None


def _subset(selector: dict[str, str], other: dict[str, str]) -> bool:
    """`selectorSubset`: every key of `selector` is in `other` with the same value."""
    return all(other.get(key) == value for key, value in selector.items())
