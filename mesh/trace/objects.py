"""The objects a trace reads, indexed once: by kind and namespace, with the pods that the
workloads would run and the lookups every step needs.

Objects are plain dicts as `kubectl get -o yaml` or `python -m mesh render` print them. Nothing
here knows how ml-mesh builds them: a trace works on any set of objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh.trace.model import MeshSettings, Sidecar

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod")
INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
NATIVE_SIDECAR_ANNOTATION = "sidecar.istio.io/nativeSidecar"
INJECT_LABEL = "sidecar.istio.io/inject"


def d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return d(obj.get("metadata"))


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any], default: str = "default") -> str:
    return str(meta(obj).get("namespace") or default)


def spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    return d(obj.get("spec"))


def ref(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')} {namespace_of(obj)}/{name_of(obj)}"


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) or a plain label map
    (Istio's `selector.matchLabels`, a Service's `selector`). An empty selector selects all."""
    selector = d(selector)
    match_labels = d(selector.get("matchLabels")) if "matchLabels" in selector else None
    expressions = items(selector.get("matchExpressions"))
    if match_labels is None and not expressions:
        match_labels = selector  # a plain map
    for key, value in (match_labels or {}).items():
        if labels.get(key) != str(value):
            return False
    for expression in expressions:
        expression = d(expression)
        key, operator = expression.get("key"), expression.get("operator")
        values = [str(v) for v in items(expression.get("values"))]
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def exported_to(obj: Mapping[str, Any], namespace: str) -> bool:
    """Whether a ServiceEntry or DestinationRule is visible to proxies of `namespace`:
    `exportTo` unset or `*` exports everywhere, `.` to the object's own namespace, a name to
    that namespace (pilot/pkg/model/push_context.go, the exportTo indexes)."""
    exported = [str(e) for e in items(spec_of(obj).get("exportTo"))] or ["*"]
    return (
        "*" in exported
        or namespace in exported
        or ("." in exported and namespace_of(obj) == namespace)
    )


def svc_fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def qualify(host: str, namespace: str) -> str:
    """Istio resolves a short name in the namespace of the object naming it
    (pilot/pkg/model/config.go ResolveShortnameToFQDN): `a` and `a.b`... only the bare short
    name gets `.<ns>.svc.cluster.local`; anything with a dot is taken as written."""
    if "." in host or host == "*" or host.startswith("*"):
        return host
    return svc_fqdn(host, namespace)


@dataclass(frozen=True)
class Pod:
    """The pods a workload runs, as one template: labels, annotations, service account and the
    pod spec. `replicas` None means an autoscaler owns the count (at least 1)."""

    workload: str  # Kind namespace/name
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account: str
    replicas: int | None
    spec: Mapping[str, Any]

    @property
    def ready(self) -> bool:
        return self.replicas is None or self.replicas > 0

    def containers(self) -> list[dict[str, Any]]:
        return [d(c) for c in items(self.spec.get("containers"))]

    def init_containers(self) -> list[dict[str, Any]]:
        return [d(c) for c in items(self.spec.get("initContainers"))]

    def container_port(self, target: Any) -> tuple[dict[str, Any] | None, int] | None:
        """The container and port number a Service targetPort reaches. A name must be a
        declared container port; a number is forwarded whether declared or not (Kubernetes
        resolves only named targetPorts), so an undeclared one has no known container."""
        for container in self.containers():
            for port in items(container.get("ports")):
                port = d(port)
                if str(port.get("name")) == str(target) or str(port.get("containerPort")) == str(
                    target
                ):
                    return container, int(port["containerPort"])
        if isinstance(target, int) or str(target).isdigit():
            return None, int(target)
        return None

    def run_as_user(self, container: Mapping[str, Any]) -> int | None:
        """The UID a container runs as: its own securityContext, else the pod's."""
        return self._security(container, "runAsUser")

    def run_as_group(self, container: Mapping[str, Any]) -> int | None:
        return self._security(container, "runAsGroup")

    def _security(self, container: Mapping[str, Any], key: str) -> Any:
        own = d(container.get("securityContext")).get(key)
        return own if own is not None else d(self.spec.get("securityContext")).get(key)


class Objects:
    """Every object by kind, with pods and namespaces derived once."""

    def __init__(self, objects: Iterable[Mapping[str, Any]], settings: MeshSettings | None = None):
        self.settings = settings or MeshSettings()
        self.all = [dict(o) for o in objects if isinstance(o, Mapping) and o.get("kind")]
        self.by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for obj in self.all:
            self.by_kind[str(obj["kind"])].append(obj)
        self.namespaces = {name_of(n): n for n in self.by_kind["Namespace"]}
        self.pods = [
            pod
            for kind in WORKLOAD_KINDS
            for w in self.by_kind[kind]
            if not _owned(w)
            for pod in _pods(w)
        ]
        self.services = {
            svc_fqdn(name_of(s), namespace_of(s)): s for s in self.by_kind["Service"] if name_of(s)
        }
        # Answers that depend on the objects alone, kept for the next trace that asks (a
        # stack's journeys ask the same lookups thousands of times). The objects are read,
        # never changed, once indexed.
        self.memo: dict[Any, Any] = {}

    def kind(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        found = self.by_kind.get(kind, [])
        if namespace is None:
            return found
        return [o for o in found if namespace_of(o) == namespace]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels; Kubernetes 1.21+ always sets kubernetes.io/metadata.name."""
        key = ("namespace_labels", namespace)
        if key not in self.memo:
            labels = {
                str(k): str(v)
                for k, v in d(meta(self.namespaces.get(namespace, {})).get("labels")).items()
            }
            labels["kubernetes.io/metadata.name"] = namespace
            self.memo[key] = labels
        return dict(self.memo[key])

    def injected(
        self,
        namespace: str,
        pod_labels: Mapping[str, str],
        pod_annotations: Mapping[str, str] | None = None,
        host_network: bool = False,
    ) -> bool:
        """Whether the sidecar injector adds istio-proxy to a pod: the namespace is labelled
        istio-injection=enabled or istio.io/rev=<revision>, and the pod does not opt out with
        sidecar.istio.io/inject=false (the injector webhooks' selectors, manifests/charts/
        istio-control/istio-discovery/templates/mutatingwebhook.yaml; pkg/kube/inject/inject.go
        `injectRequired`)."""
        pod_annotations = pod_annotations or {}
        labels = self.namespace_labels(namespace)
        if pod_labels.get(INJECT_LABEL) == "false":
            return False
        if INJECT_LABEL not in pod_labels and pod_annotations.get(INJECT_LABEL) == "false":
            return False  # the annotation form, honoured where the label is absent
        if host_network:
            return False  # pkg/kube/inject/inject.go injectRequired skips hostNetwork pods
        if labels.get(INJECTION_LABEL) == "disabled":
            return False
        return (
            labels.get(INJECTION_LABEL) == "enabled"
            or REVISION_LABEL in labels
            or pod_labels.get(INJECT_LABEL) == "true"
        )

    def sidecar_mode(self, pod: Pod) -> Sidecar:
        """Classic or native sidecar, ztunnel (ambient: mesh.trace.ambient `enrolled`), or
        none. Istio 1.24+ honours the per-pod annotation
        `sidecar.istio.io/nativeSidecar` (pkg/kube/inject/inject.go, the `nativeSidecar`
        decision in RunTemplate); without it istiod's ENABLE_NATIVE_SIDECARS decides."""
        if not self.injected(
            pod.namespace, pod.labels, pod.annotations, bool(pod.spec.get("hostNetwork"))
        ):
            from mesh.trace.ambient import enrolled

            if not pod.spec.get("hostNetwork") and enrolled(
                self, pod.namespace, pod.labels, "sidecar.istio.io/status" in pod.annotations
            ):
                return "ambient"
            return "none"
        annotation = pod.annotations.get(NATIVE_SIDECAR_ANNOTATION)
        if annotation is not None:
            return "native" if annotation == "true" else "classic"
        return "native" if self.settings.native_sidecars_default else "classic"

    def pods_for(self, namespace: str, selector: Mapping[str, Any] | None) -> list[Pod]:
        key = ("pods_for", namespace, repr(selector))  # equal reprs: equal selectors
        if key not in self.memo:
            self.memo[key] = [
                p for p in self.pods if p.namespace == namespace and selects(selector, p.labels)
            ]
        return list(self.memo[key])

    def endpoints(self, service: Mapping[str, Any]) -> list[Pod]:
        """The pods a Service selects; a Service without a selector gets no endpoints from
        Kubernetes (its EndpointSlices are managed by hand, which the objects do not show)."""
        selector = d(spec_of(service).get("selector"))
        if not selector:
            return []
        return self.pods_for(namespace_of(service), selector)

    def pod(self, workload: str) -> Pod | None:
        """A pod by `namespace/name` of its workload, or by the full `Kind namespace/name`."""
        for pod in self.pods:
            if pod.workload == workload or pod.workload.split(" ", 1)[1] == workload:
                return pod
        return None


def _owned(workload: Mapping[str, Any]) -> bool:
    """A ReplicaSet or Pod some controller owns (in a `kubectl get` dump) is already counted
    through its owner's template."""
    return workload.get("kind") in ("ReplicaSet", "Pod") and bool(
        items(meta(workload).get("ownerReferences"))
    )


def _pods(workload: Mapping[str, Any]) -> list[Pod]:
    spec = spec_of(workload)
    if workload.get("kind") == "Pod":
        spec = {"replicas": 1, "template": {"metadata": meta(workload), "spec": spec}}
    template = d(spec.get("template"))
    labels = {str(k): str(v) for k, v in d(meta(template).get("labels")).items()}
    annotations = {str(k): str(v) for k, v in d(meta(template).get("annotations")).items()}
    pod_spec = d(template.get("spec"))
    replicas = spec.get("replicas") if workload.get("kind") != "DaemonSet" else None
    return [
        Pod(
            workload=ref(workload),
            namespace=namespace_of(workload),
            labels=labels,
            annotations=annotations,
            service_account=str(pod_spec.get("serviceAccountName") or "default"),
            replicas=replicas if isinstance(replicas, int) else None,
            spec=pod_spec,
        )
    ]


def load_files(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Objects from YAML files (multi-document, or a `kind: List` as kubectl prints it)."""
    found: list[dict[str, Any]] = []
    for path in paths:
        for document in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "List":
                found += [d(i) for i in items(document.get("items"))]
            elif isinstance(document, dict):
                found.append(document)
    return found
