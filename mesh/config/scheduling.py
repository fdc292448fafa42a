"""How many pods a version runs and where: autoscaling of a model, GPU node placement."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import _METRIC_NAME, LabelKey, LabelValue, Quantity


class CustomMetric(_Config):
    """A per-pod metric served by the custom metrics API (e.g. prometheus-adapter)."""

    name: Annotated[str, Field(pattern=_METRIC_NAME.pattern)]
    average_value: Quantity = Field(description="target average value per pod, e.g. 10 or 500m")


class Autoscaling(_Config):
    """A HorizontalPodAutoscaler per version, from `replicas` up to `maxReplicas`."""

    max_replicas: Annotated[int, Field(strict=True, ge=1, le=1000)]
    target_cpu_utilization: Annotated[int, Field(strict=True, ge=1, le=100)] | None = Field(
        default=None,
        description="percent of the CPU request; 70 when no custom metric is given",
    )
    metric: CustomMetric | None = None

    def cpu_target(self) -> int | None:
        if self.target_cpu_utilization is None and self.metric is None:
            return DEFAULT_CPU_TARGET
        return self.target_cpu_utilization


DEFAULT_CPU_TARGET = 70


class Toleration(_Config):
    key: LabelKey
    operator: Literal["Exists", "Equal"] = "Exists"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _value_matches_operator(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ConfigPathError(("value",), "must be empty with operator Exists")
        if self.operator == "Equal" and self.value is None:
            raise ConfigPathError(("value",), "is required with operator Equal")
        return self


class GpuScheduling(_Config):
    """Where pods that request `nvidia.com/gpu` may run.

    The nodeSelector comes from platform.gpuNodes (`StackConfig.gpu_node_selector`): the GPU
    Operator's label `nvidia.com/gpu.present=true` exists only where GPU Feature Discovery runs,
    so on nodes with the device plugin alone (EKS accelerated AMIs) it would keep GPU pods
    Pending. `nodeSelector` here is for platform.gpuNodes `custom` only.
    """

    node_selector: dict[LabelKey, LabelValue] | None = Field(
        default=None,
        description="node labels of GPU nodes; only with platform.gpuNodes: custom (required "
        "there); default: from platform.gpuNodes",
    )
    tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu", effect="NoSchedule")]


class Scheduling(_Config):
    gpu: GpuScheduling = GpuScheduling()
