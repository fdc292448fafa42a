"""`check()`: every rule over one index of the plan, run in a fixed order, findings sorted.

The index is built once per check and shared by all rules, so a check stays linear in the
number of objects. Findings come errors first, then warnings, then info, each level sorted by
code, config path, resource and message, so `python -m mesh check` prints a stable list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from mesh.checks.alerting import rule_labels
from mesh.checks.destinations import (
    destination_rule_subsets,
    ingress_subsets,
    virtual_service_destinations,
)
from mesh.checks.egress import ambient_open_egress
from mesh.checks.findings import SEVERITIES, Finding
from mesh.checks.gateway_api import (
    gateway_api_backends,
    gateway_api_conflicts,
    gateway_api_parents,
    gateway_api_pool_split,
    gateway_api_weights,
)
from mesh.checks.gateway_workloads import (
    conflicting_gateways,
    duplicate_certificates,
    gateway_credentials,
    gateway_ports,
)
from mesh.checks.gateways import gateway_references, gateway_servers
from mesh.checks.images import image_digests
from mesh.checks.index import _Index
from mesh.checks.kubernetes import (
    autoscalers,
    config_maps,
    deployment_specs,
    disruption_budgets,
    gpu_images,
    object_metadata,
    pod_templates,
    services,
)
from mesh.checks.matches import unreachable_routes
from mesh.checks.mesh_wide import mesh_host_conflicts, namespace_injection, service_port_names
from mesh.checks.pack import pack_rules
from mesh.checks.pools import pool_fail_close
from mesh.checks.rollouts import rollouts
from mesh.checks.snapshot import merge
from mesh.checks.values import (
    durations,
    export_to,
    percentages,
    ports,
    retries,
    route_weights,
    subset_labels,
)
from mesh.checks.workload_policies import (
    authorization_policies,
    service_entry_addresses,
    service_entry_protocols,
    sidecar_selectors,
    telemetry_selectors,
)
from mesh.config import StackConfig

# Istio's analyzers and istiod's webhook rules: with a cluster snapshot they run over the
# cluster as it will be after `pulumi up` (IST codes; also MESH0005 and MESH0006, ml-mesh's
# own findings on the stack's ServiceEntries and AuthorizationPolicies that need the cluster's
# ServiceEntries and namespaces to be judged: mesh.checks.workload_policies; and MESH0020-
# MESH0024 and MESH0026 on Gateway API routes, whose parents and backends may be the cluster's:
# mesh.checks.gateway_api).
ISTIO_RULES: tuple[Callable[[_Index], Iterator[Finding]], ...] = (
    virtual_service_destinations,
    ingress_subsets,
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
    gateway_ports,
    gateway_credentials,
    conflicting_gateways,
    duplicate_certificates,
    unreachable_routes,
    authorization_policies,
    sidecar_selectors,
    telemetry_selectors,
    service_entry_addresses,
    service_entry_protocols,
    gateway_api_parents,
    gateway_api_backends,
    gateway_api_weights,
    gateway_api_conflicts,
    gateway_api_pool_split,
)
# ml-mesh's own rules and the policy pack: they judge the stack's objects alone, with or
# without a snapshot (the pack never sees other teams' objects, as `pulumi preview` does not).
STACK_RULES: tuple[Callable[[_Index], Iterator[Finding]], ...] = (
    image_digests,
    ambient_open_egress,
    pool_fail_close,
    rollouts,
    rule_labels,
    pack_rules,
    object_metadata,
    config_maps,
    pod_templates,
    deployment_specs,
    services,
    autoscalers,
    disruption_budgets,
    gpu_images,
)
RULES = ISTIO_RULES + STACK_RULES


def check(
    config: StackConfig,
    objects: Iterable[dict[str, Any]],
    pack_config: dict[str, Any] | None = None,
    cluster: Sequence[dict[str, Any]] | None = None,
) -> list[Finding]:
    """Every finding of every rule: errors, then warnings, then info. `pack_config`: the policy
    pack's config to apply (`mesh diff` passes the stricter of the base's and the head's),
    default the working tree's policy/config.json.

    `cluster`: a snapshot of the cluster (mesh.checks.snapshot). The rules then run over the
    cluster as it will be after `pulumi up` (the stack laid over the snapshot), as `istioctl
    analyze` runs over files and a live cluster together. A finding on an object of the
    cluster is `introduced` when the snapshot alone does not have it (the stack causes it; it
    fails the run like the stack's own), `cluster` when it does (reported, not failing). Only
    Istio's analyzers (IST codes) report on the cluster's objects: ml-mesh's own rules and the
    policy pack judge the stack's objects alone."""
    objects = list(objects)
    index = _Index(config, objects, pack_config)
    own = [finding for rule in STACK_RULES for finding in rule(index)]
    if cluster is None:
        return sorted(own + [f for rule in ISTIO_RULES for f in rule(index)], key=_order)
    world = merge(objects, cluster, config.namespace)
    after = _Index(config, world.objects, pack_config, world.stack_ids)
    after.live_created = world.created
    before = _Index(config, world.cluster, pack_config, frozenset())
    already = {_identity(f) for rule in ISTIO_RULES for f in rule(before)}
    mesh = [_introduced(f, already) for rule in ISTIO_RULES for f in rule(after)]
    return sorted(own + mesh, key=_order)


def _introduced(finding: Finding, already: set[tuple[str, str, str, str]]) -> Finding:
    """A finding on a cluster object that the snapshot alone does not have: the stack's doing."""
    if finding.origin == "stack" or _identity(finding) in already:
        return finding
    return dataclasses.replace(finding, origin="introduced")


def _identity(finding: Finding) -> tuple[str, str, str, str]:
    return (finding.severity, finding.code, finding.resource, finding.message)


def _order(finding: Finding) -> tuple[int, str, str, str, str]:
    return (
        SEVERITIES.index(finding.severity),
        finding.code,
        finding.path or "",
        finding.resource,
        finding.message,
    )
