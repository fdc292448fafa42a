"""`check()`: every rule over one index of the plan, run in a fixed order, findings sorted.

The index is built once per check and shared by all rules, so a check stays linear in the
number of objects. Findings come errors first, then warnings, then info, each level sorted by
code, config path, resource and message, so `python -m mesh check` prints a stable list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mesh.checks.alerting import rule_labels
from mesh.checks.destinations import destination_rule_subsets, virtual_service_destinations
from mesh.checks.findings import SEVERITIES, Finding
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
from mesh.checks.mesh_wide import mesh_host_conflicts, namespace_injection, service_port_names
from mesh.checks.pack import pack_rules
from mesh.checks.rollouts import rollouts
from mesh.checks.values import (
    durations,
    export_to,
    percentages,
    ports,
    retries,
    route_weights,
    subset_labels,
)
from mesh.config import StackConfig

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
    image_digests,
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


def check(
    config: StackConfig,
    objects: Iterable[dict[str, Any]],
    pack_config: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every finding of every rule: errors, then warnings, then info. `pack_config`: the policy
    pack's config to apply (`mesh diff` passes the stricter of the base's and the head's),
    default the working tree's policy/config.json."""
    index = _Index(config, list(objects), pack_config)
    return sorted((finding for rule in RULES for finding in rule(index)), key=_order)


def _order(finding: Finding) -> tuple[int, str, str, str, str]:
    return (
        SEVERITIES.index(finding.severity),
        finding.code,
        finding.path or "",
        finding.resource,
        finding.message,
    )
