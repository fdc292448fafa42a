"""A kind is always read with its API group: an Istio Gateway is not a Gateway API Gateway.

Istio's analyzers select their inputs by GroupVersionKind (`pkg/config/schema/gvk`, e.g.
`gvk.Gateway` is `networking.istio.io/v1/Gateway`, `gvk.KubernetesGateway` is
`gateway.networking.k8s.io/v1/Gateway`), never by the bare kind. The index keys objects the
same way: an object of the group a rule expects for its kind is filed under the bare kind
(`Gateway`), any other group under `Kind.group` (`Gateway.gateway.networking.k8s.io`), so a rule
that asks for `Gateway` never sees a Gateway API Gateway, and one that wants it asks by name.
Versions are not part of the key: the API server serves every version of a group's kind as the
same object (`networking.istio.io/v1beta1` and `/v1` VirtualServices are one resource).
"""

from __future__ import annotations

from typing import Any

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_SECURITY = "security.istio.io"
ISTIO_TELEMETRY = "telemetry.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
# Markers examples/cluster/snapshot.sh writes into a snapshot (`SecretsListed`: the Secrets of
# the namespace it names were listed). No cluster serves this group.
SNAPSHOT_GROUP = "snapshot.ml-mesh.dev"

# The API group each bare kind the rules ask for stands for.
KIND_GROUPS: dict[str, str] = {
    "Gateway": ISTIO_NETWORKING,
    "VirtualService": ISTIO_NETWORKING,
    "DestinationRule": ISTIO_NETWORKING,
    "ServiceEntry": ISTIO_NETWORKING,
    "Sidecar": ISTIO_NETWORKING,
    "WorkloadEntry": ISTIO_NETWORKING,
    "EnvoyFilter": ISTIO_NETWORKING,
    "AuthorizationPolicy": ISTIO_SECURITY,
    "PeerAuthentication": ISTIO_SECURITY,
    "RequestAuthentication": ISTIO_SECURITY,
    "Telemetry": ISTIO_TELEMETRY,
    "Namespace": "",
    "Service": "",
    "Pod": "",
    "Node": "",
    "Secret": "",
    "ConfigMap": "",
    "ServiceAccount": "",
    "Deployment": "apps",
    "ReplicaSet": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "HorizontalPodAutoscaler": "autoscaling",
    "PodDisruptionBudget": "policy",
    "NetworkPolicy": "networking.k8s.io",
    "PrometheusRule": "monitoring.coreos.com",
    "Canary": "flagger.app",
    "MetricTemplate": "flagger.app",
    "HTTPRoute": GATEWAY_API,
    "GRPCRoute": GATEWAY_API,
    "ReferenceGrant": GATEWAY_API,
    "InferencePool": "inference.networking.k8s.io",
}

# Kinds without a namespace (the rest are namespaced).
CLUSTER_SCOPED = frozenset({"Namespace", "Node", "ClusterRole", "ClusterRoleBinding"})


def api_group(obj: dict[str, Any]) -> str:
    """`networking.istio.io` of `networking.istio.io/v1`; `""` (core) of `v1`."""
    group, _, _version = str(obj.get("apiVersion", "")).rpartition("/")
    return group


def kind_key(obj: dict[str, Any]) -> str:
    """The key the index files `obj` under: its bare kind if its group is the one that kind
    stands for (or a kind no rule asks for), else `Kind.group`."""
    kind = str(obj.get("kind"))
    group = api_group(obj)
    expected = KIND_GROUPS.get(kind)
    if expected is None or expected == group:
        return kind
    return f"{kind}.{group}" if group else f"{kind}.core"


def object_key(obj: dict[str, Any], default_namespace: str) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): what the API server keys an object by, so a stack's
    object and its live version in the cluster have the same key. Cluster-scoped kinds have
    no namespace; a namespaced object without one lands in `default_namespace`, as Pulumi
    applies it (the stack's namespace)."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    kind = str(obj.get("kind"))
    namespace = (
        "" if kind in CLUSTER_SCOPED else str(metadata.get("namespace") or default_namespace)
    )
    return (api_group(obj), kind, namespace, str(metadata.get("name", "")))
