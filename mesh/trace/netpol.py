"""NetworkPolicy ingress as Kubernetes defines it (networking.k8s.io/v1; kubernetes/website
content/en/docs/concepts/services-networking/network-policies.md, and the API's
pkg/apis/networking/types.go):

- A pod selected by no policy with `Ingress` in its policyTypes accepts everything. A selected
  pod accepts only what one ingress rule of one such policy admits (policies are additive).
- `policyTypes` defaults to [Ingress] (plus Egress when the policy has egress rules).
- A peer is `podSelector` (pods of the policy's namespace), `namespaceSelector` (all pods of
  the selected namespaces), both in one peer (pods of those namespaces matching the pod
  selector) or `ipBlock`. An empty `from` admits every source, an empty `ports` every port.
- `ports[].port` is the destination pod's port after DNAT: a number, or the name of one of its
  container ports; `endPort` makes a range. Protocol defaults to TCP.
- Namespaces carry `kubernetes.io/metadata.name` (Kubernetes 1.21+), so selecting a namespace by
  name needs no label of one's own.
- Traffic from the pod's own node (the kubelet's probes) is allowed whatever the policies say
  ("traffic to and from the node where a Pod is running is always allowed"): the kubelet is
  not a peer a trace asks about.

ipBlock peers are compared with the source's address only when one is known; a trace from a
pod has none, so an ipBlock-only rule does not admit it.

Egress is the mirror image (`egress_admits`): a pod selected by a policy with `Egress` in its
policyTypes may send only what one `egress` rule of one such policy admits; a `to` peer is a
pod (by namespace and pod selectors) or an `ipBlock` (`cidr` minus `except`), an empty `to`
admits every destination. A destination outside the cluster is known by its address only when
the request names one (a host name's addresses are not known offline), so an ipBlock admits
only such a request; a pod or namespace peer never admits it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from mesh.trace.objects import Objects, Pod, d, items, name_of, namespace_of, selects, spec_of


@dataclass(frozen=True)
class Peer:
    namespace: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


def _types(spec: dict[str, Any]) -> list[str]:
    types = items(spec.get("policyTypes"))
    if types:
        return [str(t) for t in types]
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _peer_admits(objects: Objects, policy_ns: str, peer: dict[str, Any], source: Peer) -> bool:
    if "ipBlock" in peer:
        return False
    pod_selector = peer.get("podSelector")
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        in_namespace = source.namespace == policy_ns
    else:
        in_namespace = selects(d(ns_selector), objects.namespace_labels(source.namespace))
    return in_namespace and (pod_selector is None or selects(d(pod_selector), source.labels))


def _port_admits(entry: dict[str, Any], pod: Pod, port: int, protocol: str) -> bool:
    if str(entry.get("protocol", "TCP")) != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, int) or str(wanted).isdigit():
        low, high = int(wanted), int(entry.get("endPort", wanted))
        return low <= port <= high
    found = pod.container_port(wanted)
    return found is not None and found[1] == port


def admits(objects: Objects, pod: Pod, source: Peer, port: int, protocol: str = "TCP") -> Verdict:
    policies = [
        p
        for p in objects.kind("NetworkPolicy", pod.namespace)
        if "Ingress" in _types(spec_of(p)) and selects(d(spec_of(p).get("podSelector")), pod.labels)
    ]
    if not policies:
        return Verdict(True, "no NetworkPolicy isolates the pod for ingress")
    for policy in policies:
        for index, rule in enumerate(items(spec_of(policy).get("ingress"))):
            rule = d(rule)
            peers = items(rule.get("from"))
            ports = items(rule.get("ports"))
            if peers and not any(
                _peer_admits(objects, namespace_of(policy), d(p), source) for p in peers
            ):
                continue
            if ports and not any(_port_admits(d(e), pod, port, protocol) for e in ports):
                continue
            return Verdict(
                True, f"NetworkPolicy {namespace_of(policy)}/{name_of(policy)} ingress[{index}]"
            )
    names = ", ".join(f"{namespace_of(p)}/{name_of(p)}" for p in policies)
    return Verdict(
        False,
        f"NetworkPolicy {names} admits no traffic from namespace {source.namespace} "
        f"to port {port}: packets dropped",
    )


def _ip_block_admits(block: dict[str, Any], address: str | None) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
        if ip not in ipaddress.ip_network(str(block.get("cidr")), strict=False):
            return False
        return not any(
            ip in ipaddress.ip_network(str(e), strict=False) for e in items(block.get("except"))
        )
    except ValueError:
        return False


def _to_admits(
    objects: Objects, policy_ns: str, peer: dict[str, Any], to: Peer | None, address: str | None
) -> bool:
    if "ipBlock" in peer:
        return _ip_block_admits(d(peer["ipBlock"]), address)
    if to is None:
        return False
    return _peer_admits(objects, policy_ns, peer, to)


def egress_admits(
    objects: Objects,
    source: Peer,
    port: int,
    to: Peer | None = None,
    address: str | None = None,
    protocol: str = "TCP",
    what: str = "",
) -> Verdict:
    """Whether the NetworkPolicies of the source pod (its namespace and labels) let it send to
    `port` of a pod (`to`) or of an address outside the cluster (`address`, None when only a
    host name is known). Ports are the destination's: numbers only (a named port would be
    the destination pod's, which an external address has not)."""
    policies = [
        p
        for p in objects.kind("NetworkPolicy", source.namespace)
        if "Egress" in _types(spec_of(p))
        and selects(d(spec_of(p).get("podSelector")), source.labels)
    ]
    where = what or (f"namespace {to.namespace}" if to else (address or "an external host"))
    if not policies:
        return Verdict(True, "no NetworkPolicy isolates the source pod for egress")
    for policy in policies:
        for index, rule in enumerate(items(spec_of(policy).get("egress"))):
            rule = d(rule)
            peers = items(rule.get("to"))
            ports = items(rule.get("ports"))
            if peers and not any(
                _to_admits(objects, namespace_of(policy), d(p), to, address) for p in peers
            ):
                continue
            if ports and not any(_egress_port(d(e), port, protocol) for e in ports):
                continue
            return Verdict(
                True,
                f"NetworkPolicy {namespace_of(policy)}/{name_of(policy)} egress[{index}] "
                f"admits {where} port {port}",
            )
    names = ", ".join(f"{namespace_of(p)}/{name_of(p)}" for p in policies)
    return Verdict(
        False,
        f"NetworkPolicy {names} admits no egress to {where} port {port}: packets dropped",
    )


def _egress_port(entry: dict[str, Any], port: int, protocol: str) -> bool:
    if str(entry.get("protocol", "TCP")) != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, int) or str(wanted).isdigit():
        return int(wanted) <= port <= int(entry.get("endPort", wanted))
    return False
