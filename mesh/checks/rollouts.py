"""Rollouts that need capacity the cluster may not have, or that take a version down
(ml-mesh's own rules, codes MESH0001 and MESH0002; not Istio's).

A GPU pod is scheduled only where a whole GPU is free. With `maxSurge: 1` (the default
`rollout: surge`) the Deployment controller starts a new pod before it stops an old one, so a
rollout of a version with `n` GPUs per pod needs `n` GPUs free on a matching node; on a cluster
whose GPUs are all taken the new pod stays Pending until `progressDeadlineSeconds`, the
Deployment reports ProgressDeadlineExceeded and Flagger rolls back. The rule warns until
`models.<m>.rollout` says which it is: `surge` (the spare GPUs exist) or `replace` (maxSurge 0,
maxUnavailable 1: the old pod's GPU is reused). In progressive mode Flagger runs the
canary's pods beside the primary during each analysis: that needs replicas x GPUs spare
whatever the strategy, so a progressive GPU model is always warned, with that count.
"""

from __future__ import annotations

from collections.abc import Iterator

from mesh.checks.findings import GPU_ROLLOUT_NEEDS_SPARE, ROLLOUT_TAKES_VERSION_DOWN, Finding
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _labels, _list, _spec
from mesh.checks.paths import _finding, _model
from mesh.checks.quantity import parse_quantity

GPU = "nvidia.com/gpu"


def _gpus(deployment: dict) -> int:
    """Whole GPUs the pod's containers are limited to; a count that is no whole quantity is
    left to mesh.checks.kubernetes (MESH0010), never a traceback here."""
    pod = _dict(_dict(_spec(deployment).get("template")).get("spec"))
    total = 0
    for container in _list(pod.get("containers")):
        count = _dict(_dict(_dict(container).get("resources")).get("limits")).get(GPU, 0)
        try:
            total += int(parse_quantity(count or 0))
        except ValueError:
            continue
    return total


def rollouts(index: _Index) -> Iterator[Finding]:
    for deployment in index.by_kind["Deployment"]:
        name = _model(index, deployment)
        if name is None:
            continue
        model = index.config.models[name]
        version = str(_labels(deployment).get("version"))
        spec = _spec(deployment)
        if spec.get("replicas", 1) == 0:
            continue  # parked: no pod to replace
        surge = _dict(_dict(spec.get("strategy")).get("rollingUpdate")).get("maxSurge", 0)
        gpus = _gpus(deployment)
        if gpus and model.progressive is not None:
            pods = spec.get("replicas") or 1
            yield _finding(
                index,
                deployment,
                GPU_ROLLOUT_NEEDS_SPARE,
                "warning",
                f"models.{name}.progressive",
                f"during each analysis Flagger scales the canary to {pods} pod(s) beside the "
                f"primary's, so the cluster needs {pods * gpus} spare GPU(s) on GPU nodes, "
                "whatever models.<m>.rollout says, or the canary stays Pending until "
                f"progressDeadlineSeconds ({spec.get('progressDeadlineSeconds')}s) and Flagger "
                "rolls back",
            )
        elif gpus and surge and model.rollout is None:
            yield _finding(
                index,
                deployment,
                GPU_ROLLOUT_NEEDS_SPARE,
                "warning",
                f"models.{name}.rollout",
                f"maxSurge {surge}: each rollout starts a pod with {gpus} GPU(s) before an old "
                f"one stops, so it needs {gpus} spare GPU(s) on a GPU node, or the pod stays "
                f"Pending until progressDeadlineSeconds ({spec.get('progressDeadlineSeconds')}s) "
                "and the rollout fails. Set rollout 'surge' if the cluster has them, "
                "or 'replace' (maxSurge 0, maxUnavailable 1) to free an old pod's GPU first",
            )
        if version in model.single_pod_replacements():
            yield _finding(
                index,
                deployment,
                ROLLOUT_TAKES_VERSION_DOWN,
                "warning",
                f"models.{name}.rollout",
                f"'replace' with 1 replica: each rollout stops the only pod of version "
                f"{version!r} ({model.routed_versions()[version]}) before the new one is ready, "
                f"so nothing serves it for up to {model.startup_budget().deadline}s (refused in "
                "protected stacks); give it 2 replicas or use 'surge'",
            )
