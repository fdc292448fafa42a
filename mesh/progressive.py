"""Progressive delivery with Flagger: the objects of a model whose rollout Flagger owns.

In this mode ml-mesh emits the ServiceAccount, ONE target Deployment named after the model, a
Flagger `Canary`, the `MetricTemplate` its success rate reads and the PodDisruptionBudget of
the primary (`primary_disruption_budget`). Flagger then creates and owns everything that routes the model: the
Deployment `<model>-primary`, the Services `<model>`, `<model>-primary`, `<model>-canary`, the
DestinationRules `<model>-primary` and `<model>-canary` and the VirtualService `<model>` (Flagger
v1.44 pkg/router/istio.go and kubernetes_default.go; RULES.md 80). ml-mesh must not emit any of
them: Flagger would overwrite ours, and Pulumi would fight it on every update.
"""

from __future__ import annotations

from mesh.ambient import server_reporter, service_labels
from mesh.config import Progressive, StackConfig
from mesh.ingress import gateway_ref
from mesh.k8s import metadata
from mesh.promql import REQUESTS, Matcher, selector
from mesh.traffic import request_policy
from models.presets import server_ports
from models.scaling import disruption_budget, horizontal_pod_autoscaler
from models.workloads import service_account, target_deployment

COMPONENT = "progressive-delivery"
API_VERSION = "flagger.app/v1beta1"


# The analysis metric that replaces Flagger's built-in `request-success-rate`. Not that name:
# Flagger runs its built-in query for any metric so named, templateRef or not (v1.44
# pkg/controller/scheduler_metrics.go `runBuiltinMetricChecks`).
SUCCESS_RATE = "ml-mesh-request-success-rate"
# Istio `response_code`s that mean the canary did not serve the request: every 5xx (as in
# Flagger's built-in), 401 and 403 (refused, e.g. by our AuthorizationPolicy: `RBAC: access
# denied`), 404 (no such model or route: the server never ran it) and 0 (the connection was
# reset before any response). 400 and 429 stay successes: they answer a client's bad input or
# rate, which a healthy canary answers the same way, and counting them would roll back a good
# version whenever a live client misbehaves. PromQL anchors the regex (`^(?:...)$`).
NOT_SERVED = "5.*|401|403|404|0"


def success_rate_template_name(name: str) -> str:
    return f"{name}-request-success-rate"


def success_rate_query(reporter: str = "destination") -> str:
    """Percent of the canary's requests it served, over `{{ interval }}`.

    Flagger's built-in Istio `request-success-rate` (v1.44 pkg/metrics/observers/istio.go)
    with the same labels (`reporter="destination"`: counted once, by the canary pods' own
    proxy, which is also where a 403 of the AuthorizationPolicy is recorded) but with
    `response_code!~NOT_SERVED` instead of `!~"5.*"`: the built-in counts a 403 as a success,
    so a load test refused by the policy would promote a canary that never answered one
    request. No traffic at all makes the ratio NaN, which Flagger takes as "no values found":
    a failed check, never a pass (pkg/metrics/providers/prometheus.go `RunQuery`).
    `{{ target }}` is the target Deployment `<m>`, whose pods are the canary; the regex match
    is anchored, so `<m>-primary` is not counted. `reporter` follows the data plane
    (mesh.ambient.server_reporter): in ambient the waypoint counts the canary's requests.
    """
    scope: list[Matcher] = [
        ("reporter", "=", reporter),
        ("destination_workload_namespace", "=", "{{ namespace }}"),
        ("destination_workload", "=~", "{{ target }}"),
    ]
    served = selector(REQUESTS, [*scope, ("response_code", "!~", NOT_SERVED)])
    every = selector(REQUESTS, scope)
    window = "[{{ interval }}]"
    return f"sum(rate({served}{window})) / sum(rate({every}{window})) * 100"


def success_rate_template(config: StackConfig, name: str) -> dict:
    """The model's own MetricTemplate (flagger.app/v1beta1).

    One per model, in the model's component beside the Canary that uses it: a model's rollout
    then depends on nothing outside its component, turning one model over to Flagger (or back)
    adds and removes objects of that model only, and the Canary is created after it and
    deleted before it (mesh.program DEPENDS_ON_KINDS). The query is the same for every model
    (it reads `{{ target }}`). Flagger's Prometheus provider needs `address` although the
    schema does not require it (pkg/metrics/providers/prometheus.go `NewPrometheusProvider`).
    """
    return {
        "apiVersion": API_VERSION,
        "kind": "MetricTemplate",
        "metadata": metadata(
            success_rate_template_name(name), config.namespace, COMPONENT, {"app": name}
        ),
        "spec": {
            "provider": {"type": "prometheus", "address": config.telemetry.prometheus.address},
            "query": success_rate_query(server_reporter(config)),
        },
    }


def metrics(config: StackConfig, name: str) -> list[dict]:
    """Our success rate (`success_rate_query`) and Flagger's built-in Istio P99 latency,
    each over one analysis interval."""
    progressive = config.models[name].progressive
    assert progressive is not None, "only models in progressive mode have an analysis"
    return [
        {
            "name": SUCCESS_RATE,
            "templateRef": {
                "name": success_rate_template_name(name),
                "namespace": config.namespace,
            },
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


def analysis(config: StackConfig, name: str) -> dict:
    progressive = config.models[name].progressive
    assert progressive is not None, "only models in progressive mode have an analysis"
    spec: dict = {
        "interval": progressive.interval,
        "threshold": progressive.threshold,
        **steps(progressive),
        "metrics": metrics(config, name),
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
    labels = service_labels(config)
    if labels:
        # Ambient: Flagger's three Services carry `istio.io/ingress-use-waypoint` like
        # ml-mesh's own (Flagger copies `apex`/`primary`/`canary` metadata onto them:
        # pkg/apis/flagger/v1beta1/canary.go `CustomMetadata`), so ingress traffic meets the
        # waypoint and its L7 policy (mesh.security.flagger_l7_policies).
        spec |= {role: {"labels": dict(labels)} for role in ("apex", "primary", "canary")}
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
            # The target's own progressDeadlineSeconds (the model's start-up budget, which
            # Flagger copies to the primary): Flagger must not call a pod stuck that the
            # Deployment still waits for, nor the other way round (its default is 600s).
            "progressDeadlineSeconds": model.startup_budget().deadline,
            "service": service(config, name),
            "analysis": analysis(config, name),
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


def primary_name(name: str) -> str:
    """The Deployment Flagger copies the target to, and the value of its pods' `app` label
    (v1.44 pkg/canary/deployment_controller.go `createPrimaryDeployment`, pkg/canary/util.go
    `makePrimaryLabels`: the selector label gets `-primary`, every other label is kept)."""
    return f"{name}-primary"


def primary_disruption_budget(config: StackConfig, name: str) -> dict | None:
    """At most one pod of the primary down at a time for voluntary disruptions (node drains).

    The primary serves every live request between analyses, and Flagger creates no
    PodDisruptionBudget, so without this one a drain may evict all primary pods at once. It
    selects `app: <m>-primary` alone, the selector label Flagger gives the primary, so it
    never counts the target's (canary) pods, which Flagger scales to 0 between analyses. The
    same budget as a version's (models.scaling.pod_disruption_budget), skipped in the same
    case: the primary runs the target's replicas, so none when the target has none.
    """
    model = config.models[name]
    if model.versions[model.target_version()].replicas == 0:
        return None
    primary = primary_name(name)
    return disruption_budget(config, primary, {"app": name}, {"app": primary})


def progressive_objects(config: StackConfig, name: str) -> list[dict]:
    hpa = target_autoscaler(config, name)
    budget = primary_disruption_budget(config, name)
    return [
        service_account(config, name),
        target_deployment(config, name),
        *([hpa] if hpa is not None else []),
        *([budget] if budget is not None else []),
        success_rate_template(config, name),
        canary(config, name),
    ]
