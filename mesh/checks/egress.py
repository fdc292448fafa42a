"""Egress a protected ambient stack cannot lock down (MESH0025): ml-mesh's own rule.

With sidecars, `security.restrictEgress` is a Sidecar with `outboundTrafficPolicy:
REGISTRY_ONLY`: a host outside the registry is blackholed. ztunnel applies no outbound
traffic policy (istio/istio#54281, istio/ztunnel#369; Istio's "Egress gateways" for ambient:
enrolling a namespace in a waypoint "does not prevent direct paths"), so in ambient the
stack enforces what a NetworkPolicy can (mesh.security.ambient_egress_policy): DNS, the
waypoint, the store, and TCP 443 to any address, since a NetworkPolicy names addresses, not
hosts. Each such any-address rule is reported as a warning, so nobody reads
`restrictEgress` as the lock-down it is with sidecars. It goes away when the stack says
`security.restrictEgress: false` (egress acknowledged open: no egress policy at all).
"""

from __future__ import annotations

from collections.abc import Iterator

from mesh.checks.findings import AMBIENT_EGRESS_OPEN, Finding
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _list, _spec
from mesh.checks.paths import _finding


def ambient_open_egress(index: _Index) -> Iterator[Finding]:
    """Every egress rule of the stack's NetworkPolicies that admits any address, in a
    protected (egress-restricted) ambient stack."""
    config = index.config
    if not (config.ambient() and config.egress_restricted()):
        return
    for policy in index.by_kind["NetworkPolicy"]:
        if not index.is_stack(policy):
            continue
        for number, rule in enumerate(_list(_spec(policy).get("egress"))):
            rule = _dict(rule)
            if _list(rule.get("to")):
                continue
            ports = ", ".join(
                f"{_dict(p).get('port', 'every port')}/{_dict(p).get('protocol', 'TCP')}"
                for p in _list(rule.get("ports"))
            )
            yield _finding(
                index,
                policy,
                AMBIENT_EGRESS_OPEN,
                "warning",
                "security.restrictEgress",
                f"egress[{number}] admits {ports or 'every port'} to any address: in ambient "
                "ztunnel applies no REGISTRY_ONLY and a NetworkPolicy cannot name hosts, so "
                "the model pods can reach any host on the internet on those ports; send egress "
                "through an egress gateway or egress waypoint the platform runs, with a "
                "firewall that admits only its nodes, or set security.restrictEgress: false "
                "to acknowledge open egress",
            )
