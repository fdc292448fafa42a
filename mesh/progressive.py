"""Progressive delivery with Flagger: the objects of a model whose rollout Flagger owns.

In this mode ml-mesh emits the ServiceAccount, ONE target Deployment named after the model and a
Flagger `Canary`. Flagger then creates and owns everything that routes the model: the
Deployment `<model>-primary`, the Services `<model>`, `<model>-primary`, `<model>-canary`, the
DestinationRules `<model>-primary` and `<model>-canary` and the VirtualService `<model>` (Flagger
v1.44 pkg/router/istio.go and kubernetes_default.go; RULES.md 80). ml-mesh must not emit any of
them: Flagger would overwrite ours, and Pulumi would fight it on every update.
"""

from __future__ import annotations

from mesh.config import Progressive, StackConfig
from mesh.ingress import gateway_ref
from mesh.k8s import metadata
from mesh.traffic import request_policy
from models.presets import server_ports
from models.scaling import horizontal_pod_autoscaler
from models.workloads import service_account, target_deployment

COMPONENT = "progressive-delivery"
API_VERSION = "flagger.app/v1beta1"
# Model servers load large models slowly: the startup probe allows 10 minutes, so Flagger must
# wait longer than that before it calls a rollout stuck (its default is 600s).
PROGRESS_DEADLINE_SECONDS = 900


def metrics(progressive: Progressive) -> list[dict]:
    """Flagger's two built-in Istio checks, each over one analysis interval."""
    return [
        {
            "name": "request-success-rate",
            "interval": progressive.interval,
            "thresholdRange": {"min": progressive.min_success_rate},
        },
        {
            "name": "request-duration",
            "interval": progressive.interval,
            "thresholdRange": {"max": progressive.max_latency_ms},
        },
    ]


def steps(progressive: Progressive) -> dict:
    if progressive.step_weights is not None:
        return {"stepWeights": list(progressive.step_weights)}
    return {"maxWeight": progressive.maximum, "stepWeight": progressive.step}


def analysis(progressive: Progressive) -> dict:
    spec: dict = {
        "interval": progressive.interval,
        "threshold": progressive.threshold,
        **steps(progressive),
        "metrics": metrics(progressive),
    }
    if progressive.load_test is not None:
        test = progressive.load_test
        spec["webhooks"] = [
            {
                "name": "load-test",
                "type": "rollout",
                "url": test.url,
                "timeout": test.timeout,
                "metadata": {"cmd": test.cmd},
            }
        ]
    return spec


def service(config: StackConfig, name: str) -> dict:
    """What Flagger needs to build the Services and the VirtualService.

    Only the REST port: Flagger's VirtualService has a single HTTP route, so with more ports it
    would send gRPC requests to the REST port. `portDiscovery` stays off for that reason, and the
    Services then have one port, which lets Istio route gateway and mesh traffic without a port
    in the destination. The gateway comes first in `gateways` and `mesh` is listed explicitly:
    Flagger adds `mesh` only when no gateway is given.
    """
    model = config.models[name]
    rest = server_ports(model)[0]
    spec: dict = {
        "name": name,
        "port": rest.number,
        "targetPort": rest.name,
        "portName": rest.name,
        "appProtocol": rest.app_protocol,
        "portDiscovery": False,
        "gateways": [gateway_ref(config), "mesh"],
        # Flagger appends the in-mesh host (the short name `<model>`) itself.
        "hosts": config.model_hosts(name),
        **request_policy(model),  # the same timeout and retries as ml-mesh's own routes
    }
    return spec


def canary(config: StackConfig, name: str) -> dict:
    model = config.models[name]
    assert model.progressive is not None, "only models in progressive mode have a Canary"
    return {
        "apiVersion": API_VERSION,
        "kind": "Canary",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "service": service(config, name),
            "analysis": analysis(model.progressive),
            **autoscaler_ref(config, name),
        },
    }


def target_autoscaler(config: StackConfig, name: str) -> dict | None:
    """The target's HPA when the model autoscales; without it the target has no replicas."""
    version = config.models[name].target_version()
    return horizontal_pod_autoscaler(config, name, version, deployment=name)


def autoscaler_ref(config: StackConfig, name: str) -> dict:
    """Flagger scales the primary with a copy of the target's HPA (`<m>-primary`)."""
    if target_autoscaler(config, name) is None:
        return {}
    ref = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": name}
    return {"autoscalerRef": ref}


def progressive_objects(config: StackConfig, name: str) -> list[dict]:
    hpa = target_autoscaler(config, name)
    return [
        service_account(config, name),
        target_deployment(config, name),
        *([hpa] if hpa is not None else []),
        canary(config, name),
    ]
