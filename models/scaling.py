"""How many pods a version runs and where: autoscaling, disruption budgets, spreading across
zones and nodes, and GPU node placement.

With `models.<m>.autoscaling`, each version gets a HorizontalPodAutoscaler (autoscaling/v2) from
its `replicas` up to `maxReplicas`, and its Deployment leaves `spec.replicas` out: the HPA owns
the field, so `pulumi up` never resets a scaled-out version (see `owns_replicas`).
"""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.k8s import metadata

COMPONENT = "model-server"
GPU = "nvidia.com/gpu"
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"


def _labels(name: str, version: str) -> dict[str, str]:
    # The labels of models.workloads.selector_labels, repeated: workloads imports this module.
    return {"app": name, "version": version}


def owns_replicas(config: StackConfig, name: str, version: str) -> bool:
    """Whether an HPA sets this version's replica count (a version at 0 replicas is parked)."""
    model = config.models[name]
    return model.autoscaling is not None and model.versions[version].replicas > 0


def horizontal_pod_autoscaler(
    config: StackConfig, name: str, version: str, deployment: str | None = None
) -> dict | None:
    """The HPA of a version's Deployment (`<m>-<v>`, or `deployment`: Flagger's target `<m>`,
    whose HPA Flagger copies for the primary through the Canary's autoscalerRef)."""
    if not owns_replicas(config, name, version):
        return None
    model = config.models[name]
    scaling = model.autoscaling
    assert scaling is not None
    metrics: list[dict] = []
    cpu = scaling.cpu_target()
    if cpu is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu},
                },
            }
        )
    if scaling.metric is not None:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": scaling.metric.name},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": scaling.metric.average_value,
                    },
                },
            }
        )
    deployment = deployment or f"{name}-{version}"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(deployment, config.namespace, COMPONENT, _labels(name, version)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": model.versions[version].replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": metrics,
        },
    }


def pod_disruption_budget(config: StackConfig, name: str, version: str) -> dict | None:
    """At most one pod of a version down at a time for voluntary disruptions (node drains).

    `maxUnavailable` rather than `minAvailable`: it never blocks a drain of a single-replica
    version and follows autoscaling. `AlwaysAllow` lets a drain evict pods that are not ready
    anyway (a crash-looping version must not hold a node hostage).
    """
    if config.models[name].versions[version].replicas == 0:
        return None
    labels = _labels(name, version)
    return disruption_budget(config, f"{name}-{version}", labels, labels)


def disruption_budget(
    config: StackConfig, object_name: str, labels: dict[str, str], selector: dict[str, str]
) -> dict:
    """The PodDisruptionBudget of `pod_disruption_budget` for the pods `selector` matches: a
    version's, or Flagger's primary (mesh.progressive.primary_disruption_budget)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(object_name, config.namespace, COMPONENT, labels),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(selector)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def topology_spread(name: str, version: str) -> list[dict]:
    """Spread a version's pods over zones, then nodes.

    ScheduleAnyway: a preference, so a zone short of capacity (or of GPU nodes) slows nothing
    down. `matchLabelKeys: [pod-template-hash]` spreads each rollout's new pods on their own
    (Kubernetes 1.27+).
    """
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": _labels(name, version)},
            "matchLabelKeys": ["pod-template-hash"],
        }
        for key in (ZONE, HOSTNAME)
    ]


def gpu_placement(config: StackConfig, resources: dict) -> dict:
    """nodeSelector and tolerations of the GPU nodes, for pods that request a GPU.

    The nodeSelector follows platform.gpuNodes (`StackConfig.gpu_node_selector`): the GPU
    Operator's `nvidia.com/gpu.present=true`, none with the device plugin alone (it labels no
    node; the `nvidia.com/gpu` request already keeps the pod off nodes without GPUs), or
    scheduling.gpu.nodeSelector for `custom`. The tolerations are scheduling.gpu's on every
    platform: a toleration of a taint a node does not have changes nothing.
    """
    if GPU not in resources["limits"]:
        return {}
    gpu = config.scheduling.gpu
    placement: dict = {}
    selector = config.gpu_node_selector()
    if selector:
        placement["nodeSelector"] = selector
    if gpu.tolerations:
        placement["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in gpu.tolerations
        ]
    return placement


def scaling_objects(config: StackConfig, name: str, version: str) -> list[dict]:
    objects = (
        horizontal_pod_autoscaler(config, name, version),
        pod_disruption_budget(config, name, version),
    )
    return [obj for obj in objects if obj is not None]
