"""Policies that select workloads, and ServiceEntries that share a host, as Istio's analyzers
judge them over the stack and (with `mesh check --with`) the cluster it lands in.

- `authorization_policies`: authz/authorizationpolicies.go `AuthorizationPoliciesAnalyzer`
  (IST0127 selectors matching no in-mesh pod, IST0101 unknown `source.namespaces`), plus
  ml-mesh's MESH0006 for principals of namespaces the cluster does not have
- `sidecar_selectors`: sidecar/selector.go `SelectorAnalyzer` (IST0101, IST0110, IST0111)
- `telemetry_selectors`: telemetry/selector.go `SelectorAnalyzer` (IST0101, IST0159) and
  telemetry/default_selector.go `DefaultSelectorAnalyzer` (IST0160)
- `service_entry_addresses`: serviceentry/protocoladdresses.go `ProtocolAddressesAnalyzer`
  (IST0134)
- `service_entry_protocols`: ml-mesh's MESH0005, one host and port declared with two protocols
  (Istio has no analyzer for it; pilot keeps one declaration, see the function)

Workloads are the pods Istio's analyzers iterate (`gvk.Pod`): the snapshot's live Pods, and the
pods the stack's Deployments will run (one per template, named `<deployment>-*`; a template
scaled to 0 has none; a Flagger Canary's target also stands for the primary Flagger makes of
it, `<deployment>-primary-*`). A cluster Deployment, or a primary, stands for its pods only when
the snapshot holds none of them. Labels are matched with the one selector matcher of mesh.checks.kubernetes
(mesh.trace.objects `selects`), as `klabels.SelectorFromSet(...).Matches` does.

Without a snapshot the stack's Deployments are all the pods there are, so selectors are checked
against them (every policy ml-mesh builds selects its own pods), counted as meshed (a namespace
without injection is IST0102's, once); what needs the cluster (the namespaces that exist) stays
silent.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mesh.checks.findings import (
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
    INEFFECTIVE_POLICY,
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
    NO_MATCHING_WORKLOADS_FOUND,
    PRINCIPAL_NAMESPACE_NOT_FOUND,
    REFERENCED_RESOURCE_NOT_FOUND,
    SERVICE_ENTRY_ADDRESSES_REQUIRED,
    SERVICE_ENTRY_PROTOCOL_CONFLICT,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.mesh_wide import INJECTION_LABEL, REVISION_LABEL, port_protocol
from mesh.checks.objects import _dict, _labels, _list, _name, _spec, fqdn
from mesh.checks.paths import _finding, _model_path, _ref
from mesh.trace.objects import selects

# meshConfig.rootNamespace, Istio's default (pkg/config/constants IstioSystemNamespace): a
# policy there applies mesh-wide.
ROOT_NAMESPACE = "istio-system"
SIDECAR_INJECT = "sidecar.istio.io/inject"  # label.SidecarInject
AMBIENT_REDIRECTION = "ambient.istio.io/redirection"  # annotation.AmbientRedirection
DATAPLANE_MODE = "istio.io/dataplane-mode"  # label.IoIstioDataplaneMode
ISTIO_PROXY = "istio-proxy"  # util.IstioProxyName


@dataclass(frozen=True)
class Workload:
    """A pod, live or to be: where it runs, what it is called, its labels, whether it has (or
    will get) a sidecar or runs in ambient mode."""

    namespace: str
    name: str
    labels: dict[str, str]
    in_mesh: bool
    ambient: bool


class _ByLabel:
    """Workloads by namespace and by (namespace, label, value): a selector is tried only on the
    pods that carry its first label, so a namespace of many pods and many policies stays
    linear (what `klabels.SelectorFromSet(...).Matches` would find, pod by pod)."""

    def __init__(self, pods: list[Workload]):
        self.by_namespace: dict[str, list[Workload]] = defaultdict(list)
        self.by_label: dict[tuple[str, str, str], list[Workload]] = defaultdict(list)
        for pod in pods:
            self.by_namespace[pod.namespace].append(pod)
            for key, value in pod.labels.items():
                self.by_label[(pod.namespace, key, value)].append(pod)

    def matching(self, namespace: str, labels: dict[str, Any]) -> list[Workload]:
        """The pods of `namespace` that carry every label of `labels` (all of them: none)."""
        if not labels:
            return self.by_namespace.get(namespace, [])
        key, value = next(iter(labels.items()))
        candidates = self.by_label.get((namespace, str(key), str(value)), [])
        return [p for p in candidates if selects(labels, p.labels)]


def _quoted(text: str) -> str:
    """Go's `%q`."""
    return json.dumps(text, ensure_ascii=False)


def _names(objects: list[dict[str, Any]]) -> str:
    """Go's `%v` of the sorted names (sidecar/util.go and telemetry/util.go `getNames`)."""
    return "[" + " ".join(sorted(_name(o) for o in objects)) + "]"


def selector_string(labels: dict[str, Any]) -> str:
    """`klabels.SelectorFromSet(labels).String()`: `k=v` pairs by key, comma-separated."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _namespace_labels(index: _Index) -> dict[str, dict[str, Any]]:
    return {_name(n): _labels(n) for n in index.by_kind["Namespace"]}


def namespace_in_ambient(labels: dict[str, Any] | None) -> bool:
    """util/in_mesh.go `NamespaceInAmbientMode`: `istio.io/dataplane-mode: ambient`, unless
    the namespace also has `istio-injection=enabled` or a non-empty `istio.io/rev` (Istio then
    takes it for a sidecar namespace)."""
    labels = labels or {}
    if labels.get(INJECTION_LABEL) == "enabled" or labels.get(REVISION_LABEL):
        return False
    return labels.get(DATAPLANE_MODE) == "ambient"


def _ambient_template(metadata: dict[str, Any], namespace: dict[str, Any] | None) -> bool:
    """A pod template in ambient mode once it runs: Istio CNI annotates the pods
    `ambient.istio.io/redirection: enabled` (what `PodInAmbientMode` reads) in an ambient
    namespace, unless the pod opts out with `istio.io/dataplane-mode: none`."""
    if str(_dict(metadata.get("annotations")).get(AMBIENT_REDIRECTION)) == "enabled":
        return True
    opted_out = _dict(metadata.get("labels")).get(DATAPLANE_MODE) == "none"
    return namespace_in_ambient(namespace) and not opted_out


def _in_mesh(
    metadata: dict[str, Any],
    containers: list[Any],
    namespace: dict[str, Any] | None,
    template: bool,
) -> bool:
    """util/in_mesh.go `inMesh`: an istio-proxy container; else the pod's
    `sidecar.istio.io/inject` label, then annotation; else the namespace's `istio-injection`
    label (a namespace without it: not in the mesh). A template has not met the injector
    yet, so for it a revision label injects too, and a namespace the check cannot see is
    taken as injected (mesh.checks.mesh_wide reports the namespace's injection)."""
    if any(_dict(c).get("name") == ISTIO_PROXY and _dict(c).get("image") for c in containers):
        return True
    for source in (_dict(metadata.get("labels")), _dict(metadata.get("annotations"))):
        if SIDECAR_INJECT in source:
            return str(source[SIDECAR_INJECT]) == "true"
    if namespace is None:
        return template
    if template and namespace.get(REVISION_LABEL):
        return True
    return namespace.get(INJECTION_LABEL) == "enabled"


def workloads(index: _Index) -> list[Workload]:
    """The pods Istio's analyzers would see after `pulumi up` (see the module docstring)."""
    namespaces = _namespace_labels(index)
    found: list[Workload] = []
    for pod in index.by_kind["Pod"]:
        metadata = _dict(pod.get("metadata"))
        spec = _spec(pod)
        found.append(
            Workload(
                index.ns(pod),
                _name(pod),
                {str(k): str(v) for k, v in _labels(pod).items()},
                _in_mesh(
                    metadata,
                    _list(spec.get("containers")) + _list(spec.get("initContainers")),
                    namespaces.get(index.ns(pod)),
                    template=False,
                ),
                str(_dict(metadata.get("annotations")).get(AMBIENT_REDIRECTION)) == "enabled",
            )
        )
    live = _ByLabel(found)
    targets = {
        (index.ns(c), str(_dict(_spec(c).get("targetRef")).get("name")))
        for c in index.by_kind["Canary"]
    }
    for deployment in index.by_kind["Deployment"]:
        spec = _spec(deployment)
        if spec.get("replicas", 1) == 0:
            continue
        template = _dict(spec.get("template"))
        metadata = _dict(template.get("metadata"))
        labels = {str(k): str(v) for k, v in _dict(metadata.get("labels")).items()}
        namespace = index.ns(deployment)
        pod_spec = _dict(template.get("spec"))
        # The stack alone: its pods count as meshed; a namespace without injection is
        # reported once, as IST0102 (mesh.checks.mesh_wide), not again on every policy.
        in_mesh = index.stack_ids is None or _in_mesh(
            metadata,
            _list(pod_spec.get("containers")) + _list(pod_spec.get("initContainers")),
            namespaces.get(namespace),
            template=True,
        )
        ambient = _ambient_template(metadata, namespaces.get(namespace))
        # a Deployment's pods are those its selector picks (without one: its template's labels)
        matched = _dict(_dict(spec.get("selector")).get("matchLabels"))
        selected = {str(k): str(v) for k, v in matched.items()} or labels
        pods = [(f"{_name(deployment)}-*", labels, selected, not index.is_stack(deployment))]
        if (namespace, _name(deployment)) in targets:
            # Flagger's primary copy of a Canary's target: its selector labels get `-primary`
            # (pkg/canary/util.go makePrimaryLabels), as mesh.checks.kubernetes models it
            primary = {k: f"{v}-primary" if k in selected else v for k, v in labels.items()}
            chosen = {k: primary[k] for k in selected if k in primary}
            pods.append((f"{_name(deployment)}-primary-*", primary, chosen, True))
        for name, pod_labels, selector, unless_live in pods:
            if unless_live and live.matching(namespace, selector):
                continue  # its live pods stand for it
            found.append(Workload(namespace, name, pod_labels, in_mesh, ambient))
    return found


def _knows_namespaces(index: _Index) -> bool:
    """Whether "no such namespace" can be told: a snapshot that lists the cluster's namespaces
    (one without any was taken without `namespaces`, and proves nothing)."""
    return index.stack_ids is not None and any(
        not index.is_stack(n) for n in index.by_kind["Namespace"]
    )


def namespace_match(namespace: str, expression: str) -> bool:
    """authorizationpolicies.go `namespaceMatch`: `*`, `*suffix`, `prefix*` or the name
    (case-insensitively)."""
    if expression == "*":
        return True
    if expression.startswith("*"):
        return namespace.endswith(expression[1:])
    if expression.endswith("*"):
        return namespace.startswith(expression[:-1])
    return namespace.lower() == expression.lower()


_PRINCIPAL = re.compile(r"^[^/*]+/ns/([^/*]+)/sa/[^/]+$")


def authorization_policies(index: _Index) -> Iterator[Finding]:
    """authz/authorizationpolicies.go `AuthorizationPoliciesAnalyzer`.

    IST0127 (`analyzeNoMatchingWorkloads`), counting in-mesh and ambient pods only
    (`initPodLabelsMap`): a policy in the root namespace with a selector needs a matching pod
    anywhere, without one it is mesh-wide and always applies; elsewhere a selector-less policy
    needs any pod of its namespace, one with a selector (even `{}`) a matching pod there. Runs
    without a snapshot too: the stack's pods are then all there are.

    IST0101 (`analyzeNamespaceNotFound`): every `from[].source.namespaces` and `notNamespaces`
    entry must match an existing namespace (`*`, `*suffix` and `prefix*` as patterns). Istio
    checks nothing else of `from`, principals included; ml-mesh adds MESH0006 (warning) for a
    principal `<trust domain>/ns/<namespace>/sa/<account>` of a namespace that does not exist
    (no workload can have that identity, so the rule allows nobody), on the stack's policies.
    Both need the cluster's namespaces, so they stay silent without a snapshot that lists them.
    """
    pods = _ByLabel([w for w in workloads(index) if w.in_mesh or w.ambient])
    knows = _knows_namespaces(index)
    existing = [_name(n) for n in index.by_kind["Namespace"]]
    for policy in index.by_kind["AuthorizationPolicy"]:
        yield from _no_matching_workloads(index, policy, pods)
        if knows:
            yield from _namespaces_not_found(index, policy, existing)


def _no_matching_workloads(
    index: _Index, policy: dict[str, Any], pods: _ByLabel
) -> Iterator[Finding]:
    namespace = index.ns(policy)
    spec = _spec(policy)
    selector = spec.get("selector")
    has_selector = isinstance(selector, dict)
    labels = {str(k): v for k, v in _dict(_dict(selector).get("matchLabels")).items()}
    if namespace == ROOT_NAMESPACE:
        if not has_selector or any(pods.matching(ns, labels) for ns in pods.by_namespace):
            return
    elif not has_selector:
        if pods.by_namespace.get(namespace):
            return
        labels = {}
    elif pods.matching(namespace, labels):
        return
    yield _finding(
        index,
        policy,
        NO_MATCHING_WORKLOADS_FOUND,
        "warning",
        _model_path(index, policy),
        f"No matching workloads for this resource with the following labels: "
        f"{selector_string(labels)}",
    )


def _namespaces_not_found(
    index: _Index, policy: dict[str, Any], existing: list[str]
) -> Iterator[Finding]:
    seen: set[str] = set()
    for rule in map(_dict, _list(_spec(policy).get("rules"))):
        for source in (_dict(_dict(f).get("source")) for f in _list(rule.get("from"))):
            named = _list(source.get("namespaces")) + _list(source.get("notNamespaces"))
            for expression in map(str, named):
                if any(namespace_match(ns, expression) for ns in existing):
                    continue
                yield _finding(
                    index,
                    policy,
                    REFERENCED_RESOURCE_NOT_FOUND,
                    "error",
                    _model_path(index, policy, "callers"),
                    f"Referenced namespace not found: {_quoted(expression)}",
                )
            for principal in map(str, _list(source.get("principals"))):
                found = _PRINCIPAL.match(principal)
                if found is None or found.group(1) in existing or principal in seen:
                    continue
                seen.add(principal)
                if not index.is_stack(policy):
                    continue  # ml-mesh's own rule: it judges the stack's objects
                gateway = principal == index.config.gateway_principal()
                yield _finding(
                    index,
                    policy,
                    PRINCIPAL_NAMESPACE_NOT_FOUND,
                    "warning",
                    "gateway.namespace" if gateway else _model_path(index, policy, "callers"),
                    f"principal {_quoted(principal)} names namespace "
                    f"{_quoted(found.group(1))}, which the cluster does not have: no workload "
                    "has that identity yet, so this rule admits nobody until the namespace exists",
                )


def _ineffective(index: _Index, obj: dict[str, Any], reason: str) -> Finding:
    return _finding(
        index,
        obj,
        INEFFECTIVE_POLICY,
        "warning",
        "security.restrictEgress" if index.is_stack(obj) else None,
        f"The policy has no impact: {reason}.",
    )


def _selector_analyzer(
    index: _Index,
    policies: list[tuple[dict[str, Any], dict[str, Any]]],
    conflict_code: str,
    plural: str,
    ambient_reason: str | None = None,
) -> Iterator[Finding]:
    """The loop sidecar/selector.go and telemetry/selector.go `SelectorAnalyzer` share: a
    selector that matches no pod of its namespace is IST0101; a pod two of them select is
    reported on each (IST0110 / IST0159). With `ambient_reason` (Sidecars), a policy that
    selects an ambient pod is IST0167 once instead, and that pod is no conflict."""
    found = workloads(index)
    pods = _ByLabel(found)
    ambient_pods = {(w.namespace, w.name) for w in found if w.ambient}
    reported: set[int] = set()
    by_pod: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for obj, labels in policies:
        # only pods of the policy's namespace (selector.go: "Only attempt to match in the
        # same namespace")
        matched = pods.matching(index.ns(obj), labels)
        if not matched:
            yield _finding(
                index,
                obj,
                REFERENCED_RESOURCE_NOT_FOUND,
                "error",
                None,
                f"Referenced selector not found: {_quoted(selector_string(labels))}",
            )
        for pod in matched:
            by_pod[(pod.namespace, pod.name)].append(obj)
    for (namespace, pod), owners in by_pod.items():
        if ambient_reason is not None and (namespace, pod) in ambient_pods:
            for obj in owners:
                if id(obj) not in reported:
                    reported.add(id(obj))
                    yield _ineffective(index, obj, ambient_reason)
            continue
        if len(owners) < 2:
            continue
        for obj in owners:
            yield _finding(
                index,
                obj,
                conflict_code,
                "error",
                None,
                f"The {plural} {_names(owners)} in namespace {_quoted(namespace)} select the "
                f"same workload pod {_quoted(pod)}, which can lead to undefined behavior.",
            )


def _without_selector(
    index: _Index, objects: list[dict[str, Any]], code: str, plural: str, path: str | None
) -> Iterator[Finding]:
    """More than one selector-less policy of one kind in a namespace: each is reported."""
    by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in objects:
        by_namespace[index.ns(obj)].append(obj)
    for namespace, owners in by_namespace.items():
        if len(owners) < 2:
            continue
        for obj in owners:
            yield _finding(
                index,
                obj,
                code,
                "error",
                path if index.is_stack(obj) else None,
                f"The {plural} {_names(owners)} in namespace {_quoted(namespace)} have no "
                "workload selector, which can lead to undefined behavior."
                + (_OWN_ONE if index.is_stack(obj) else ""),
            )


_OWN_ONE = " ml-mesh's own applies to the whole namespace: remove the other, or give it a selector"


def sidecar_selectors(index: _Index) -> Iterator[Finding]:
    """sidecar/selector.go `SelectorAnalyzer`: a Sidecar's `workloadSelector.labels` must match
    a pod of its namespace (IST0101), no pod may be selected by two Sidecars (IST0110), and a
    namespace has at most one Sidecar without a selector (IST0111; ml-mesh's `default` Sidecar,
    mesh.security, is one).

    In ambient nothing reads a Sidecar, and Istio says so instead (IST0167 IneffectivePolicy,
    a warning, once per Sidecar): for a selector-less one in an ambient namespace
    (`namespace_in_ambient`), and for one that selects an ambient pod, which then takes no part
    in IST0110 (a pod of an ambient namespace counts as ambient once it runs:
    `_ambient_template`)."""
    scoped, wide = [], []
    for sidecar in index.by_kind["Sidecar"]:
        labels = _dict(_dict(_spec(sidecar).get("workloadSelector")).get("labels"))
        (scoped if labels else wide).append((sidecar, labels))
    yield from _selector_analyzer(
        index,
        scoped,
        CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
        "Sidecars",
        ambient_reason="selected workload is in ambient mode, the policy has no impact",
    )
    namespaces = _namespace_labels(index)
    ambient = [s for s, _ in wide if namespace_in_ambient(namespaces.get(index.ns(s)))]
    for sidecar in ambient:
        yield _ineffective(index, sidecar, "namespace is in ambient mode, the policy has no impact")
    yield from _without_selector(
        index,
        [s for s, _ in wide if s not in ambient],
        MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
        "Sidecars",
        "security.restrictEgress",
    )


def telemetry_selectors(index: _Index) -> Iterator[Finding]:
    """telemetry/selector.go `SelectorAnalyzer` (IST0101 for a `selector.matchLabels` that
    matches no pod of its namespace, IST0159 for a pod two Telemetries select; a Telemetry
    without labels is left out) and telemetry/default_selector.go `DefaultSelectorAnalyzer`
    (IST0160: more than one Telemetry with no `selector` at all in a namespace; ml-mesh's
    `ml-mesh` Telemetry, mesh.telemetry, is one). The root namespace's selector-less Telemetry
    is the mesh-wide default and is grouped with its own namespace only, so it never collides
    with a namespace's. Like Istio, a Telemetry with `selector: {}` is in neither group."""
    scoped, default = [], []
    for telemetry in index.by_kind["Telemetry"]:
        selector = _spec(telemetry).get("selector")
        labels = _dict(_dict(selector).get("matchLabels"))
        if labels:
            scoped.append((telemetry, labels))
        elif selector is None:
            default.append(telemetry)
    yield from _selector_analyzer(
        index, scoped, CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS, "Telemetries"
    )
    yield from _without_selector(
        index, default, MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS, "Telemetries", "telemetry"
    )


def service_entry_addresses(index: _Index) -> Iterator[Finding]:
    """serviceentry/protocoladdresses.go `ProtocolAddressesAnalyzer` (IST0134): a ServiceEntry
    without `addresses` (and none allocated in its status) needs them for every port whose
    protocol is TCP or unset, unless DNS capture with auto-allocation is on; ml-mesh's mesh
    config is Istio's default (no ISTIO_META_DNS_CAPTURE), so it never is."""
    for entry in index.by_kind["ServiceEntry"]:
        spec = _spec(entry)
        if _list(spec.get("addresses")) or _list(_dict(entry.get("status")).get("addresses")):
            continue
        for port in map(_dict, _list(spec.get("ports"))):
            if str(port.get("protocol") or "").upper() in ("", "TCP"):
                yield _finding(
                    index,
                    entry,
                    SERVICE_ENTRY_ADDRESSES_REQUIRED,
                    "warning",
                    "storage" if index.is_stack(entry) else None,
                    "ServiceEntry addresses are required for this protocol.",
                )
                break  # one message per entry: istioctl analyze dedupes identical ones


SERVICE_EXPORT_TO = "networking.istio.io/exportTo"  # annotation.NetworkingExportTo


def _export(obj: dict[str, Any], namespace: str) -> frozenset[str]:
    """Where an object is visible (util/exportto.go): its `exportTo`, a Service's annotation,
    everywhere when unset (meshConfig.defaultServiceExportTo's default)."""
    if obj.get("kind") == "Service":
        annotation = _dict(_dict(obj.get("metadata")).get("annotations")).get(SERVICE_EXPORT_TO)
        entries = [e.strip() for e in str(annotation or "").split(",") if e.strip()]
    else:
        entries = [str(e) for e in _list(_spec(obj).get("exportTo"))]
    entries = entries or ["*"]
    return frozenset(namespace if e == "." else e for e in entries)


def _visible_together(a: frozenset[str], b: frozenset[str]) -> bool:
    if "~" in a or "~" in b:
        return False
    return "*" in a or "*" in b or bool(a & b)


@dataclass(frozen=True)
class _Declaration:
    obj: dict[str, Any]
    namespace: str
    protocol: str
    service: bool  # a Kubernetes Service (wins over every ServiceEntry)
    created: str  # creationTimestamp; the stack's new objects sort last


def _entry_protocol(port: dict[str, Any]) -> str:
    return str(port.get("protocol") or "").upper() or "unset"


def service_entry_protocols(index: _Index) -> Iterator[Finding]:
    """MESH0005: a host and port the stack's ServiceEntry declares with one protocol and another
    ServiceEntry (or a Kubernetes Service) visible to a common namespace with another.

    Istio has no analyzer for it. pilot keeps one Service per hostname and namespace
    (pilot/pkg/model/push_context.go `initServiceRegistry`: the oldest by creation time, then
    name (`SortServicesByCreationTime`), and a Kubernetes Service over any ServiceEntry, "to
    prevent domain squatting"); the ServiceEntry registry merges same-host entries of a
    namespace the same way (serviceentry/conversion.go `mergeServicesInstancesByNamespaceHost`).
    The other declaration's protocol then decides how the proxies treat the port. An error
    where the stack's declaration is the one dropped (same namespace, or a Service): its
    protocol, which the egress path relies on, is ignored. A warning otherwise: entries of two
    namespaces both visible to some proxy leave which one it uses to its namespace's view.
    """
    declarations: dict[tuple[str, int], list[_Declaration]] = defaultdict(list)
    for service in index.by_kind["Service"]:
        host = fqdn(_name(service), index.ns(service))
        for port in map(_dict, _list(_spec(service).get("ports"))):
            if isinstance(port.get("port"), int):
                declarations[(host, port["port"])].append(
                    _Declaration(
                        service,
                        index.ns(service),
                        port_protocol(port) or "unset",
                        True,
                        _created(index, service),
                    )
                )
    for entry in index.by_kind["ServiceEntry"]:
        for host in map(str, _list(_spec(entry).get("hosts"))):
            for port in map(_dict, _list(_spec(entry).get("ports"))):
                if isinstance(port.get("number"), int):
                    declarations[(fqdn(host, index.ns(entry)), port["number"])].append(
                        _Declaration(
                            entry,
                            index.ns(entry),
                            _entry_protocol(port),
                            False,
                            _created(index, entry),
                        )
                    )
    reported: set[tuple[int, int]] = set()
    for (host, number), found in sorted(declarations.items(), key=lambda item: item[0]):
        for ours in found:
            if ours.service or not index.is_stack(ours.obj):
                continue
            scope = _export(ours.obj, ours.namespace)
            for other in found:
                if other is ours or other.protocol == ours.protocol:
                    continue
                if not _visible_together(scope, _export(other.obj, other.namespace)):
                    continue
                if (id(ours.obj), id(other.obj)) in reported:
                    continue
                reported.add((id(ours.obj), id(other.obj)))
                yield _protocol_conflict(index, ours, other, host, number)


def _created(index: _Index, obj: dict[str, Any]) -> str:
    if index.is_stack(obj):
        # created by `pulumi up`, after everything the cluster has; an update keeps the live
        # object's creationTimestamp
        return index.live_created.get(id(obj), "~")
    return str(_dict(obj.get("metadata")).get("creationTimestamp") or "")


def _protocol_conflict(
    index: _Index, ours: _Declaration, other: _Declaration, host: str, number: int
) -> Finding:
    same_namespace = other.namespace == ours.namespace
    loses = same_namespace and (
        other.service or (other.created, _name(other.obj)) < (ours.created, _name(ours.obj))
    )
    if loses:
        why = "a Service wins over any ServiceEntry" if other.service else "the older one wins"
        effect = (
            f"istiod keeps {_ref(index, other.obj)} for this host in namespace {other.namespace} "
            f"({why}), so this port is treated as {other.protocol}, not {ours.protocol}: "
            "declare it alike, or drop one of them"
        )
    elif same_namespace:
        effect = f"istiod keeps this one, and {_ref(index, other.obj)}'s protocol is ignored"
    else:
        effect = (
            "proxies that see both may use either one's protocol: declare the port alike "
            "or narrow exportTo so no namespace sees both"
        )
    return _finding(
        index,
        ours.obj,
        SERVICE_ENTRY_PROTOCOL_CONFLICT,
        "error" if loses else "warning",
        "storage",
        f"port {number} of host {host} is declared {ours.protocol} here and {other.protocol} "
        f"by {_ref(index, other.obj)}: {effect}",
    )
