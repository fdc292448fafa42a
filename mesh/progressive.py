"""Progressive delivery with Flagger: the objects of a model whose rollout Flagger owns.

In this mode ml-mesh emits the ServiceAccount, ONE target Deployment named after the model, a
Flagger `Canary`, the `MetricTemplate`s its analysis reads and the PodDisruptionBudget of
the primary (`primary_disruption_budget`). Flagger then creates and owns everything that routes the model: the
Deployment `<model>-primary`, the Services `<model>`, `<model>-primary`, `<model>-canary`
(Flagger v1.44 pkg/router/kubernetes_default.go, with every provider) and

- `routing: istio` (provider `istio`): the DestinationRules `<model>-primary` and
  `<model>-canary` and the VirtualService `<model>` (pkg/router/istio.go; RULES.md 80);
- `routing: gateway-api` (provider `gatewayapi:v1`): the HTTPRoute `<model>`, parented by
  `spec.service.gatewayRefs`, one rule to `<model>-primary` and `<model>-canary` with the
  Canary's port and weights (pkg/router/gateway_api.go `Reconcile`, `SetRoutes`); no
  DestinationRule.

ml-mesh must not emit any of them: Flagger would overwrite ours, and Pulumi would fight it on
every update.
"""

from __future__ import annotations

from mesh.ambient import server_reporter, service_labels
from mesh.config import Progressive, StackConfig
from mesh.gatewayapi.common import gateway_duration
from mesh.gatewayapi.ingress import gateway_parents
from mesh.ingress import gateway_ref
from mesh.k8s import metadata
from mesh.llm_metrics import flagger_ttft_query, serves_llm
from mesh.promql import DURATION_BUCKETS, REQUESTS, Matcher, selector
from mesh.traffic import request_policy
from models.presets import server_ports
from models.scaling import disruption_budget, horizontal_pod_autoscaler
from models.workloads import service_account, target_deployment

COMPONENT = "progressive-delivery"
API_VERSION = "flagger.app/v1beta1"
# Flagger's providers (pkg/apis/flagger/v1beta1/provider.go; the CRD's spec.provider enum):
# Istio's own APIs, or the Gateway API's v1 HTTPRoute, which Istio serves from 1.22 on.
ISTIO_PROVIDER = "istio"
GATEWAY_API_PROVIDER = "gatewayapi:v1"
# Ambient: ingress gateways call a Service's waypoint only when the Service carries this label
# (istio/istio 1.24.0 pilot/pkg/serviceregistry/kube/controller/ambient/services.go; 1.30.3
# pilot/pkg/serviceregistry/ambient/services.go `ingressUseWaypointFromLabels`).


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


# Flagger's built-in latency metric, and ours where the built-in cannot see the canary.
BUILTIN_LATENCY = "request-duration"
LATENCY = "ml-mesh-request-duration"


def provider(config: StackConfig) -> str:
    return GATEWAY_API_PROVIDER if config.gateway_api() else ISTIO_PROVIDER


def success_rate_template_name(name: str) -> str:
    return f"{name}-request-success-rate"


def latency_template_name(name: str) -> str:
    return f"{name}-request-duration"


def _canary_requests(config: StackConfig) -> list[Matcher]:
    """The server-side requests to the canary pods: counted once, by the reporter that sees
    them arrive (`mesh.ambient.server_reporter`: the pods' sidecar, or the waypoint in
    ambient). `{{ target }}` is the target Deployment `<m>`, whose pods are the canary; the
    regex match is anchored, so `<m>-primary` is not counted. The scope names workloads, not
    Services, so it is the same whichever router sends requests there: Flagger's Istio router
    and its Gateway API router both route to `<m>-canary`, which selects exactly these pods
    (pkg/router/kubernetes_default.go)."""
    return [
        ("reporter", "=", server_reporter(config)),
        ("destination_workload_namespace", "=", "{{ namespace }}"),
        ("destination_workload", "=~", "{{ target }}"),
    ]


def success_rate_query(config: StackConfig) -> str:
    """Percent of the canary's requests it served, over `{{ interval }}`.

    Flagger's built-in Istio `request-success-rate` (v1.44 pkg/metrics/observers/istio.go)
    with the same labels (`reporter="destination"` with sidecars: counted once, by the canary
    pods' own proxy, which is also where a 403 of the AuthorizationPolicy is recorded;
    `reporter="waypoint"` in ambient, see `_canary_requests`) but with
    `response_code!~NOT_SERVED` instead of `!~"5.*"`: the built-in counts a 403 as a success,
    so a load test refused by the policy would promote a canary that never answered one
    request. No traffic at all makes the ratio NaN, which Flagger takes as "no values found":
    a failed check, never a pass (pkg/metrics/providers/prometheus.go `RunQuery`).
    """
    scope = _canary_requests(config)
    served = selector(REQUESTS, [*scope, ("response_code", "!~", NOT_SERVED)])
    every = selector(REQUESTS, scope)
    window = "[{{ interval }}]"
    return f"sum(rate({served}{window})) / sum(rate({every}{window})) * 100"


def latency_query(config: StackConfig) -> str:
    """The canary's P99 request duration in milliseconds, over `{{ interval }}`: Flagger's
    built-in Istio `request-duration` (pkg/metrics/observers/istio.go) with the reporter of
    `_canary_requests`. No traffic gives no value: a failed check."""
    buckets = selector(DURATION_BUCKETS, _canary_requests(config))
    return f"histogram_quantile(0.99, sum(rate({buckets}[{{{{ interval }}}}])) by (le))"


def builtin_latency(config: StackConfig) -> bool:
    """Whether Flagger's built-in `request-duration` measures the canary pods.

    Only with provider `istio` on sidecars. Flagger picks the built-in's observer by provider
    (pkg/metrics/observers/factory.go `Observer`): for `gatewayapi:*` it is the HttpObserver,
    which reads `http_request_duration_seconds_bucket` of instrumented apps (http.go), a metric
    no model server exports; the Istio observer reads `reporter="destination"`, which no pod
    reports in ambient. Either would find no values and fail every check, rolling back every
    canary; the analysis then reads our own template (`latency_template`) instead.
    """
    return not config.gateway_api() and not config.ambient()


def _template(config: StackConfig, name: str, template: str, query: str) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "MetricTemplate",
        "metadata": metadata(template, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "provider": {"type": "prometheus", "address": config.telemetry.prometheus.address},
            "query": query,
        },
    }


def success_rate_template(config: StackConfig, name: str) -> dict:
    """The model's own MetricTemplate (flagger.app/v1beta1).

    One per model, in the model's component beside the Canary that uses it: a model's rollout
    then depends on nothing outside its component, turning one model over to Flagger (or back)
    adds and removes objects of that model only, and the Canary is created after it and
    deleted before it (mesh.program DEPENDS_ON_KINDS). The query is the same for every model
    (it reads `{{ target }}`). Flagger's Prometheus provider needs `address` although the
    schema does not require it (pkg/metrics/providers/prometheus.go `NewPrometheusProvider`).
    """
    return _template(config, name, success_rate_template_name(name), success_rate_query(config))


def latency_template(config: StackConfig, name: str) -> dict | None:
    """The model's latency MetricTemplate, where Flagger's built-in cannot measure the canary
    (`builtin_latency`); placed like the success rate's (`success_rate_template`)."""
    if builtin_latency(config):
        return None
    return _template(config, name, latency_template_name(name), latency_query(config))


def ttft_template_name(name: str) -> str:
    return f"{name}-ttft-p95"


def ttft_template(config: StackConfig, name: str) -> dict | None:
    """A vllm or sglang model's MetricTemplate of the canary's p95 time to first token in
    milliseconds (mesh.llm_metrics `flagger_ttft_query`); none for other servers."""
    if not serves_llm(config, name):
        return None
    return _template(config, name, ttft_template_name(name), flagger_ttft_query(config, name))


def metrics(config: StackConfig, name: str) -> list[dict]:
    """Our success rate (`success_rate_query`) and the P99 latency (Flagger's built-in Istio
    one, or ours: `builtin_latency`), each over one analysis interval. Our latency metric is
    not named `request-duration`: Flagger runs its built-in query for any metric so named,
    templateRef or not (as for SUCCESS_RATE)."""
    progressive = config.models[name].progressive
    assert progressive is not None, "only models in progressive mode have an analysis"
    latency: dict = {"name": BUILTIN_LATENCY}
    if not builtin_latency(config):
        latency = {
            "name": LATENCY,
            "templateRef": {"name": latency_template_name(name), "namespace": config.namespace},
        }
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
            **latency,
            "interval": progressive.interval,
            "thresholdRange": {"max": progressive.max_latency_ms},
        },
        *(
            [
                {
                    "name": "ml-mesh-ttft-p95",
                    "templateRef": {
                        "name": ttft_template_name(name),
                        "namespace": config.namespace,
                    },
                    "interval": progressive.interval,
                    "thresholdRange": {"max": progressive.max_ttft_ms},
                }
            ]
            if serves_llm(config, name)
            else []
        ),
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


def gateway_refs(config: StackConfig, name: str) -> list[dict]:
    """`spec.service.gatewayRefs`, which Flagger copies as they are into the HTTPRoute's
    `parentRefs` (pkg/router/gateway_api.go `toV1ParentRefs`).

    The ingress Gateway per listener (mesh.gatewayapi.ingress `gateway_parents`, the same
    parents as an ml-mesh route), and the apex Service `<m>` as a GAMMA parent (`group: ""`, `kind: Service`,
    as Flagger's own Linkerd Gateway API tutorial does): mesh callers dial `<m>`, so their
    sidecars, or the waypoint in ambient, apply the weights too. For a Service parent Istio
    ignores `hostnames` and routes the Service's own host (istio/istio 1.30.3
    pilot/pkg/config/kube/gateway/route_collections.go, HTTPRoute collection: `vsHosts` of a
    mesh parent); no `port`: Flagger's Services have the one port (see `service`).
    """
    return [*gateway_parents(config), {"group": "", "kind": "Service", "name": name}]


def gateway_api_route_policy(config: StackConfig, name: str) -> dict:
    """The timeout Flagger's Gateway API router copies verbatim into the HTTPRoute's
    `timeouts.request` (pkg/router/gateway_api.go `makeHTTPRouteTimeouts`), so written in the
    Gateway API's Duration format, which the HTTPRoute schema enforces. Retries are refused by
    validation: that router copies none (mesh.config.stack `_mode_rules`)."""
    timeout = config.models[name].timeout
    return {} if timeout is None else {"timeout": gateway_duration(timeout)}


def service_metadata(config: StackConfig) -> dict:
    """Labels Flagger puts on the Services it makes (`spec.service.apex`, `.primary`,
    `.canary`: pkg/router/kubernetes_default.go `reconcileService`). In ambient every
    Service of a model carries `istio.io/ingress-use-waypoint`, so the ingress gateway sends
    to the waypoint that enforces the L7 policy; Flagger's Services are the model's Services.
    Flagger also labels its HTTPRoute with the apex's, which Istio ignores there."""
    labels = service_labels(config)
    return (
        {role: {"labels": dict(labels)} for role in ("apex", "primary", "canary")} if labels else {}
    )


def service(config: StackConfig, name: str) -> dict:
    """What Flagger needs to build the Services and the route (VirtualService or HTTPRoute).

    Only the REST port: Flagger's route has a single HTTP rule, so with more ports it would
    send gRPC requests to the REST port. `portDiscovery` stays off for that reason, and the
    Services then have one port, which lets Istio route gateway and mesh traffic without a port
    in the destination. Istio APIs: the gateway comes first in `gateways` and `mesh` is listed
    explicitly: Flagger adds `mesh` only when no gateway is given. Gateway API: `gatewayRefs`
    (`gateway_refs`), the hosts as the HTTPRoute's `hostnames`.
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
    }
    if config.gateway_api():
        return {
            **spec,
            "gatewayRefs": gateway_refs(config, name),
            "hosts": config.model_hosts(name),
            **gateway_api_route_policy(config, name),
            **service_metadata(config),
        }
    return {
        **spec,
        "gateways": [gateway_ref(config), "mesh"],
        # Flagger appends the in-mesh host (the short name `<model>`) itself.
        "hosts": config.model_hosts(name),
        **request_policy(model),  # the same timeout and retries as ml-mesh's own routes
        **service_metadata(config),
    }


def canary(config: StackConfig, name: str) -> dict:
    model = config.models[name]
    assert model.progressive is not None, "only models in progressive mode have a Canary"
    return {
        "apiVersion": API_VERSION,
        "kind": "Canary",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "provider": provider(config),
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
    latency = latency_template(config, name)
    ttft = ttft_template(config, name)
    return [
        service_account(config, name),
        target_deployment(config, name),
        *([hpa] if hpa is not None else []),
        *([budget] if budget is not None else []),
        success_rate_template(config, name),
        *([latency] if latency is not None else []),
        *([ttft] if ttft is not None else []),
        canary(config, name),
    ]
