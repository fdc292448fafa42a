"""The plan indexed once per check: objects by kind, served hosts, subsets, gateways, pods.

Every rule looks things up here instead of scanning the plan, so no rule compares every object
with every other and a check stays linear in the number of objects (the scale benchmark runs
300 models).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mesh.checks.kinds import kind_key
from mesh.checks.objects import (
    _dict,
    _labels,
    _list,
    _name,
    _namespace,
    _spec,
    fqdn,
    resource_name,
)
from mesh.config import StackConfig

# The Service annotation that exports its host to some namespaces only (Istio's
# `annotation.NetworkingExportTo`).
EXPORT_TO = "networking.istio.io/exportTo"
# The namespaces `istioctl analyze` never reads objects from (pkg/kube/inject/initializer.go
# `IgnoredNamespaces`, applied by pkg/config/analysis/local/istiod_analyze.go's namespace filter).
IGNORED_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)
# Node labels a pod's endpoint inherits (pilot/pkg/serviceregistry/util/label/label.go).
REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
SUBZONE = "topology.istio.io/subzone"
HOSTNAME = "kubernetes.io/hostname"


def _entry_scopes(export_to: Any, namespace: str) -> list[str]:
    """Where a ServiceEntry's hosts are visible (InitServiceEntryHostMap): `*` when exported
    to all (or nothing), else each namespace named, `.` its own."""
    entries = [str(e) for e in _list(export_to)]
    if not entries or "*" in entries:
        return ["*"]
    return [namespace if e == "." else e for e in entries]


def _annotation_scopes(annotation: Any, namespace: str) -> list[str]:
    """Where a Service is visible: its `networking.istio.io/exportTo` annotation, a comma list
    (`getVisibleNamespacesFromExportToAnno`); none: everywhere."""
    if not isinstance(annotation, str) or annotation == "":
        return ["*"]
    scopes = [part.strip() for part in annotation.split(",")]
    return [namespace if scope == "." else scope for scope in scopes]


def augment_labels(
    labels: dict[str, Any], node_labels: dict[str, Any], node: str
) -> dict[str, Any]:
    """A pod's labels as a subset selects them: its own, plus its node's locality and name.
    Istio's `label.AugmentLabels` with the locality `networkingutil.LocalityToString` builds
    from the node (destinationrule/subset.go): region, then zone only after a region slot,
    subzone only after a zone; empty parts are not set."""
    locality = str(node_labels.get(REGION, ""))
    if zone := str(node_labels.get(ZONE, "")):
        locality += f"/{zone}"
        if subzone := str(node_labels.get(SUBZONE, "")):
            locality += f"/{subzone}"
    parts = [*locality.split("/"), "", ""]
    out = dict(labels)
    for key, value in zip((REGION, ZONE, SUBZONE), parts[:3], strict=True):
        if value:
            out[key] = value
    if node:
        out[HOSTNAME] = node
    return out


def _ignored(obj: dict[str, Any]) -> bool:
    """An object of a namespace `istioctl analyze` skips (a Namespace by its own name)."""
    metadata = _dict(obj.get("metadata"))
    namespace = (
        metadata.get("name") if obj.get("kind") == "Namespace" else metadata.get("namespace")
    )
    return namespace in IGNORED_NAMESPACES


class _Index:
    """The objects by kind, with the lookups every rule needs, each built in one pass."""

    def __init__(
        self,
        config: StackConfig,
        objects: list[dict[str, Any]],
        pack_config: dict[str, Any] | None = None,
        stack_ids: frozenset[int] | None = None,
    ):
        self.config = config
        # id() of the stack's objects among `objects`; None: every object is the stack's (no
        # snapshot of the cluster). Findings on other objects are reported as the cluster's.
        self.stack_ids = stack_ids
        # id() of a stack object that updates a live one -> the live creationTimestamp
        # (mesh.checks.snapshot World.created); set by mesh.checks.run
        self.live_created: dict[int, str] = {}
        # The policy pack's config to check with; None: the working tree's policy/config.json.
        self.pack_config = pack_config
        self.default_namespace = config.namespace
        self.by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for obj in objects:  # by kind and API group (mesh.checks.kinds)
            if stack_ids is not None and id(obj) not in stack_ids and _ignored(obj):
                continue  # kube-system and friends: istioctl analyze never sees them
            self.by_kind[kind_key(obj)].append(obj)
        self.services = {fqdn(_name(s), self.ns(s)): s for s in self.by_kind["Service"] if _name(s)}
        # Every host a route or DestinationRule may name, by `scope/fqdn` as Istio keys them
        # (InitServiceEntryHostMap): the scope is a namespace the host is exported to, or `*`.
        self.visible_hosts: dict[str, dict[str, Any]] = {}
        self.wildcard_hosts: list[tuple[str, str, dict[str, Any]]] = []  # (scope, host, entry)
        for entry in self.by_kind["ServiceEntry"]:
            namespace = self.ns(entry)
            scopes = _entry_scopes(_spec(entry).get("exportTo"), namespace)
            for host in map(str, _list(_spec(entry).get("hosts"))):
                for scope in scopes:
                    self.visible_hosts[f"{scope}/{fqdn(host, namespace)}"] = entry
                    if host.startswith("*"):
                        self.wildcard_hosts.append((scope, host, entry))
        for service in self.by_kind["Service"]:  # a Service is a ServiceEntry of its one host
            namespace = self.ns(service)
            annotation = _dict(_dict(service.get("metadata")).get("annotations")).get(EXPORT_TO)
            for scope in _annotation_scopes(annotation, namespace):
                self.visible_hosts[f"{scope}/{fqdn(_name(service), namespace)}"] = service
        # The subsets DestinationRules define, by the (namespace, name) of their host.
        self.subsets: dict[tuple[str, str], set[str]] = defaultdict(set)
        for rule in self.by_kind["DestinationRule"]:
            host = resource_name(str(_spec(rule).get("host", "")), self.ns(rule))
            self.subsets[host].update(
                str(_dict(s).get("name")) for s in _list(_spec(rule).get("subsets"))
            )
        self.gateways = {f"{self.ns(g)}/{_name(g)}": g for g in self.by_kind["Gateway"]}
        # Pod templates (labels, replicas) per namespace, and per (namespace, label, value), so
        # matching a subset looks only at the templates that carry one of its labels; and per
        # (label, value) in every namespace, as Istio's subset analyzer reads pods. With a
        # snapshot, the stack's Deployments stand for their pods (merge dropped their live
        # ones) and the cluster's Pods for themselves; a live Deployment's template does not.
        self.templates: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        self.pods: dict[tuple[str, str, str], list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        self.pods_anywhere: dict[tuple[str, str], list[tuple[dict[str, Any], Any]]] = defaultdict(
            list
        )
        self.all_templates: list[tuple[dict[str, Any], Any]] = []
        for deployment in self.by_kind["Deployment"]:
            if stack_ids is not None and id(deployment) not in stack_ids:
                continue  # the cluster's: its live Pods are what istioctl reads, not templates
            spec = _spec(deployment)
            labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
            template = (labels, spec.get("replicas", 1))  # unset: an autoscaler, or 1
            self._add_template(self.ns(deployment), template)
        nodes = {_name(n): _labels(n) for n in self.by_kind["Node"]}
        for pod in self.by_kind["Pod"]:  # live pods of a snapshot: one replica each
            node = str(_spec(pod).get("nodeName") or "")
            labels = augment_labels(_labels(pod), nodes.get(node, {}), node)
            self._add_template(self.ns(pod), (labels, 1))

    def _add_template(self, namespace: str, template: tuple[dict[str, Any], Any]) -> None:
        self.templates[namespace].append(template)
        self.all_templates.append(template)
        for key, value in template[0].items():
            self.pods[(namespace, str(key), str(value))].append(template)
            self.pods_anywhere[(str(key), str(value))].append(template)

    def is_stack(self, obj: dict[str, Any]) -> bool:
        """Whether `obj` is one of the stack's objects (not one of a cluster snapshot's)."""
        return self.stack_ids is None or id(obj) in self.stack_ids

    def ns(self, obj: dict[str, Any]) -> str:
        return _namespace(obj, self.default_namespace)

    def resolves(self, host: str) -> dict[str, Any] | None:
        """The Service or ServiceEntry exported to every namespace that serves `host` (already
        an FQDN), if any."""
        return self.destination(host, "", [])

    def destination(
        self, host: str, namespace: str, export_to: Any = None
    ) -> dict[str, Any] | None:
        """The Service or ServiceEntry that `host`, named by an object in `namespace` exported
        to `export_to`, resolves to; None if no such host is visible there. Istio's
        `GetDestinationHost` (analyzers/util/service_lookup.go): hosts exported to all, then
        to the namespace (or to each namespace of `export_to`), then wildcard ServiceEntry
        hosts exported to all or to the namespace."""
        name = fqdn(host, namespace)
        found = self.visible_hosts.get(f"*/{name}")
        if found is not None:
            return found
        scopes = [namespace if str(e) == "." else str(e) for e in _list(export_to)] or [namespace]
        for scope in scopes:
            if (found := self.visible_hosts.get(f"{scope}/{name}")) is not None:
                return found
        bare = host.removeprefix("*")
        for scope, pattern, entry in self.wildcard_hosts:
            if scope in ("*", namespace) and bare.endswith(pattern.removeprefix("*")):
                return entry
        return None

    def pods_selected(self, wanted: dict[str, str]) -> str:
        """Whether pods of any namespace carry all `wanted` labels: `none`, `scaled-to-0` (only
        Deployments scaled to 0 replicas do) or `some`. Istio's PodNotSelectedAnalyzer matches
        a subset against every pod of the cluster; it stops at the first replica found."""
        if wanted:
            key, value = next(iter(wanted.items()))
            candidates = self.pods_anywhere.get((key, value), [])
        else:
            candidates = self.all_templates
        found = "none"
        for labels, replicas in candidates:
            if all(k in labels and str(labels[k]) == v for k, v in wanted.items()):
                if replicas != 0:
                    return "some"
                found = "scaled-to-0"
        return found

    def pods_matching(self, namespace: str, wanted: dict[str, str]) -> list[int]:
        """Replica counts of the pod templates in `namespace` that carry all `wanted` labels."""
        if not wanted:
            return [replicas for _, replicas in self.templates.get(namespace, [])]
        key, value = next(iter(wanted.items()))
        return [
            replicas
            for labels, replicas in self.pods.get((namespace, key, value), [])
            if all(str(labels.get(k)) == v for k, v in wanted.items())
        ]
