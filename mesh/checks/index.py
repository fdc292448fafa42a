"""The plan indexed once per check: objects by kind, served hosts, subsets, gateways, pods.

Every rule looks things up here instead of scanning the plan, so no rule compares every object
with every other and a check stays linear in the number of objects (the scale benchmark runs
300 models).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mesh.checks.kinds import kind_key
from mesh.checks.objects import _dict, _labels, _list, _name, _namespace, _spec, fqdn, host_matches
from mesh.config import StackConfig


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
        # The policy pack's config to check with; None: the working tree's policy/config.json.
        self.pack_config = pack_config
        self.default_namespace = config.namespace
        self.by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for obj in objects:  # by kind and API group (mesh.checks.kinds)
            self.by_kind[kind_key(obj)].append(obj)
        self.services = {fqdn(_name(s), self.ns(s)): s for s in self.by_kind["Service"] if _name(s)}
        self.entry_hosts: dict[str, dict[str, Any]] = {}
        self.entry_wildcards: list[tuple[str, dict[str, Any]]] = []
        for entry in self.by_kind["ServiceEntry"]:
            for host in _list(_spec(entry).get("hosts")):
                if str(host).startswith("*"):
                    self.entry_wildcards.append((str(host), entry))
                else:
                    self.entry_hosts[fqdn(str(host), self.ns(entry))] = entry
        self.subsets: dict[str, set[str]] = defaultdict(set)
        for rule in self.by_kind["DestinationRule"]:
            host = fqdn(str(_spec(rule).get("host", "")), self.ns(rule))
            self.subsets[host].update(
                str(_dict(s).get("name")) for s in _list(_spec(rule).get("subsets"))
            )
        self.gateways = {f"{self.ns(g)}/{_name(g)}": g for g in self.by_kind["Gateway"]}
        # Pod templates (labels, replicas) per namespace, and per (namespace, label, value), so
        # matching a subset looks only at the templates that carry one of its labels.
        self.templates: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        self.pods: dict[tuple[str, str, str], list[tuple[dict[str, Any], Any]]] = defaultdict(list)
        for deployment in self.by_kind["Deployment"]:
            spec = _spec(deployment)
            labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
            template = (labels, spec.get("replicas", 1))  # unset: an autoscaler, or 1
            self.templates[self.ns(deployment)].append(template)
            for key, value in labels.items():
                self.pods[(self.ns(deployment), str(key), str(value))].append(template)
        for pod in self.by_kind["Pod"]:  # live pods of a snapshot: one replica each
            template = (_labels(pod), 1)
            self.templates[self.ns(pod)].append(template)
            for key, value in template[0].items():
                self.pods[(self.ns(pod), str(key), str(value))].append(template)

    def is_stack(self, obj: dict[str, Any]) -> bool:
        """Whether `obj` is one of the stack's objects (not one of a cluster snapshot's)."""
        return self.stack_ids is None or id(obj) in self.stack_ids

    def ns(self, obj: dict[str, Any]) -> str:
        return _namespace(obj, self.default_namespace)

    def resolves(self, host: str) -> dict[str, Any] | None:
        """The Service or ServiceEntry that serves `host` (already an FQDN), if any."""
        found = self.services.get(host) or self.entry_hosts.get(host)
        if found is None:
            found = next((e for p, e in self.entry_wildcards if host_matches(p, host)), None)
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
