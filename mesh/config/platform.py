"""What the target cluster is: `ml-mesh:platform`.

The stack's objects depend on facts about the cluster that its objects cannot show: which
Kubernetes and Istio run there, whether Istio CNI sets up the pods' iptables, how the GPU nodes
are labelled, and which kube-prometheus-stack release loads PrometheusRules. Each setting has
the default that works on the widest part of the supported matrix (docs/platform.md, "Supported
platforms"), and `StackConfig` derives behaviour from them (native sidecars, the model download's
UID, GPU placement, rule labels) and refuses combinations that cannot work.

The ingress gateway install is not here: `gateway.selector`, `gateway.namespace` and
`gateway.serviceAccount` already say which pods serve the Gateway and under which identity.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from mesh.config.base import _Config
from mesh.config.formats import Flag, LabelValue

# The supported matrix (docs/platform.md, "Supported platforms"), as minor versions. Kubernetes: 1.28 is
# the oldest ml-mesh supports, the newest is the newest whose schemas the conformance tests have
# (kubernetes-validate 1.37). Istio: 1.22 is the first to serve networking.istio.io/v1.
KUBERNETES_MINORS = range(28, 38)
ISTIO_MINORS = range(22, 32)
KUBERNETES_VERSIONS = tuple(f"1.{minor}" for minor in KUBERNETES_MINORS)
ISTIO_VERSIONS = tuple(f"1.{minor}" for minor in ISTIO_MINORS)

# Kubernetes SidecarContainers (KEP-753): alpha and off by default in 1.28, beta and on by
# default from 1.29, GA in 1.33. With the gate off the API server drops an init container's
# `restartPolicy: Always`, so a native istio-proxy becomes a plain init container whose probes
# fail validation and the ReplicaSet never creates a pod.
NATIVE_SIDECARS_KUBERNETES = (1, 29)
SIDECARS_GA_KUBERNETES = (1, 33)
# Istio honours the per-pod annotation `sidecar.istio.io/nativeSidecar` from 1.24.0
# (istio/istio#53490); 1.22 and 1.23 read only istiod's ENABLE_NATIVE_SIDECARS.
NATIVE_ANNOTATION_ISTIO = (1, 24)
# From Istio 1.27.0 istiod's ENABLE_NATIVE_SIDECARS defaults to `auto`: native where every kubelet
# is 1.33+ (pkg/kube/inject/webhook.go `DetectNativeSidecar`); before, it defaults to false.
NATIVE_AUTO_ISTIO = (1, 27)

_VERSION = re.compile(r"^1\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?$")

GpuNodes = Literal["device-plugin", "gpu-operator", "custom"]
GatewayApiChannel = Literal["standard", "experimental"]
# Ambient mode is GA from Istio 1.24 (the 1.24 release announcement: ztunnel, waypoints and
# their APIs); the Service label `istio.io/ingress-use-waypoint` is read from 1.24.0 on
# (istio/istio 1.24.0 pilot/pkg/serviceregistry/kube/controller/ambient/services.go).
AMBIENT_ISTIO = (1, 24)
# The label the GPU Operator's GPU Feature Discovery puts on every node with an NVIDIA GPU; the
# device plugin alone labels nothing (the `nvidia.com/gpu` extended resource steers scheduling).
GPU_OPERATOR_LABEL = {"nvidia.com/gpu.present": "true"}


def _quoted(value: Any) -> Any:
    """YAML reads 1.30 unquoted as the number 1.3: refuse numbers rather than guess."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f'{value!r} is a number: write the version as a quoted string, e.g. "1.30" '
            "(YAML reads 1.30 unquoted as 1.3)"
        )
    return value


def _in(product: str, supported: range) -> AfterValidator:
    def check(value: str) -> str:
        match = _VERSION.match(value)
        if match is None or int(match.group(1)) not in supported:
            first, last = supported[0], supported[-1]
            raise ValueError(
                f"{value!r} is not a supported {product} version: ml-mesh supports {product} "
                f'1.{first} to 1.{last}; give the minor version, e.g. "1.{first}"'
            )
        return value

    return AfterValidator(check)


def minor(version: str) -> tuple[int, int]:
    """(1, 30) of "1.30" or "1.30.2"."""
    major, minor_, *_ = version.split(".")
    return int(major), int(minor_)


# The editor schema (`python -m mesh schema`) shows the form; the range is checked on parse.
_VERSION_SCHEMA = {"pattern": _VERSION.pattern}
KubernetesVersion = Annotated[
    str,
    BeforeValidator(_quoted),
    _in("Kubernetes", KUBERNETES_MINORS),
    Field(strict=True, json_schema_extra=_VERSION_SCHEMA),
]
IstioVersion = Annotated[
    str,
    BeforeValidator(_quoted),
    _in("Istio", ISTIO_MINORS),
    Field(strict=True, json_schema_extra=_VERSION_SCHEMA),
]


class Platform(_Config):
    """The target cluster. Defaults: the oldest of the supported matrix (Kubernetes 1.28,
    Istio 1.22), no Istio CNI, GPU nodes with the device plugin only, no monitoring release;
    what the stack renders with them works on every supported version."""

    kubernetes_version: KubernetesVersion = Field(
        default="1.28",
        description="minor version of the cluster's oldest kubelet and API server, "
        f'"{KUBERNETES_VERSIONS[0]}" to "{KUBERNETES_VERSIONS[-1]}"',
    )
    istio_version: IstioVersion = Field(
        default="1.22",
        description="minor version of the Istio control plane (istiod, the injector) that "
        f'serves the namespace, "{ISTIO_VERSIONS[0]}" to "{ISTIO_VERSIONS[-1]}"',
    )
    istio_cni: Flag = Field(
        default=False,
        description="the mesh uses the Istio CNI node agent (pod iptables set up before any "
        "container starts) instead of the istio-init container",
    )
    gpu_nodes: GpuNodes = Field(
        default="device-plugin",
        description="how GPU nodes are labelled: `device-plugin` (NVIDIA device plugin only: "
        "no label, the nvidia.com/gpu resource request steers scheduling), `gpu-operator` "
        "(nvidia.com/gpu.present=true from GPU Feature Discovery), `custom` "
        "(scheduling.gpu.nodeSelector)",
    )
    gateway_api_channel: GatewayApiChannel = Field(
        default="standard",
        description="the Gateway API CRD channel installed on the cluster (standard-install.yaml "
        "or experimental-install.yaml): `routing: gateway-api` emits experimental-channel "
        "fields (HTTPRoute `retry`) only with `experimental`",
    )
    inference_extension: Flag = Field(
        default=False,
        description="istiod runs with ENABLE_GATEWAY_API_INFERENCE_EXTENSION=true and the "
        "cluster has the InferencePool CRD (inference.networking.k8s.io/v1): models may use "
        'inferencePool (docs/llm.md, "Inference pools")',
    )
    monitoring_release: LabelValue | None = Field(
        default=None,
        description="the kube-prometheus-stack Helm release whose Prometheus loads the "
        "PrometheusRule: the rule gets `release: <monitoringRelease>`, the label its default "
        "ruleSelector matches",
    )

    def kubernetes(self) -> tuple[int, int]:
        return minor(self.kubernetes_version)

    def istio(self) -> tuple[int, int]:
        return minor(self.istio_version)

    def native_sidecars_supported(self) -> bool:
        """A pod can ask for a native istio-proxy: Kubernetes runs sidecar containers by
        default (1.29+, KEP-753) and Istio honours the per-pod annotation (1.24+,
        istio/istio#53490)."""
        return (
            self.kubernetes() >= NATIVE_SIDECARS_KUBERNETES
            and self.istio() >= NATIVE_ANNOTATION_ISTIO
        )

    def istiod_native_by_default(self) -> bool:
        """What istiod's ENABLE_NATIVE_SIDECARS gives a pod without the annotation, at its
        default: `auto` from Istio 1.27, native where every kubelet is 1.33+
        (pkg/kube/inject/webhook.go `DetectNativeSidecar`); false before."""
        return self.istio() >= NATIVE_AUTO_ISTIO and self.kubernetes() >= SIDECARS_GA_KUBERNETES

    def gpu_node_selector(self) -> dict[str, str] | None:
        """The nodeSelector GPU pods get from `gpuNodes`; None for `custom` (the stack's
        scheduling.gpu.nodeSelector)."""
        if self.gpu_nodes == "gpu-operator":
            return dict(GPU_OPERATOR_LABEL)
        if self.gpu_nodes == "device-plugin":
            return {}
        return None
