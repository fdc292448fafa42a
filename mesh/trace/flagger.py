"""The objects Flagger creates for an Istio or Gateway API Canary, so a trace can follow
requests into a model whose routing Flagger owns.

Follows Flagger v1.44 (fluxcd/flagger):

- names: apex `spec.service.name` (default targetRef.name), `<apex>-primary`,
  `<apex>-canary` (pkg/apis/flagger/v1beta1/canary.go `GetServiceNames`);
- the primary Deployment `<target>-primary`: a copy of the target whose selector label (`app`)
  becomes `<value>-primary` in the selector and the pod labels, every other label kept, with
  the target's replicas (1 when it has none) (pkg/canary/deployment_controller.go
  `createPrimaryDeployment`, pkg/canary/util.go `makePrimaryLabels`);
- Services `<apex>` and `<apex>-primary` select `app=<value>-primary`, `<apex>-canary`
  selects `app=<value>`; one port `spec.service.port`, named `portName` (default `http`),
  targetPort `spec.service.targetPort` (default the port) (pkg/router/kubernetes_default.go);
- DestinationRules `<apex>-primary` and `<apex>-canary`, host = the Service, no subsets, the
  Canary's trafficPolicy; VirtualService `<apex>`: hosts `spec.service.hosts` plus the apex
  name, gateways as given (`mesh` added only when none is), one HTTP route to the primary and
  the canary Services without a port, with the Canary's timeout and retries
  (pkg/router/istio.go `reconcileVirtualService`);
- provider `gatewayapi:<version>` instead of the DestinationRules and the VirtualService: the
  HTTPRoute `<apex>` (`gateway.networking.k8s.io/<version>`), parentRefs
  `spec.service.gatewayRefs` as stored (with the CRD's defaults `group`/`kind` of a Gateway), hostnames `spec.service.hosts` (the apex name not
  added), one rule matching PathPrefix `/` (without `service.match`) to the primary and the
  canary Services on `spec.service.port`, with `timeouts.request` from `service.timeout`
  (pkg/router/gateway_api.go `Reconcile`, `SetRoutes`, `makeBackendRef`). The labels of
  `spec.service.apex`/`primary`/`canary` go on the Services (kubernetes_default.go
  `reconcileService`), the apex's on the HTTPRoute too.

The state modelled is an analysis in progress: the canary at the first step weight, its pods
scaled up, so both destinations are live and both are traced. Not modelled: A/B analyses
(`analysis.match`, a second route), mirroring (`analysis.mirror`), session affinity, the
HTTPRoute filters of `service.headers`/`rewrite`/`mirror`/`corsPolicy`. Objects already
present (e.g. from `kubectl get` of a cluster) are not made again.
"""

from __future__ import annotations

import copy
from typing import Any

from mesh.trace.objects import d, items, name_of, namespace_of, spec_of

API = "networking.istio.io/v1"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_PROVIDER = "gatewayapi"
# The defaults of the Canary CRD's `spec.service.gatewayRefs[]`, which the API server stores in
# the Canary and Flagger then copies into the parentRefs (artifacts/flagger/crd.yaml).
REF_DEFAULTS = {"group": GATEWAY_API_GROUP, "kind": "Gateway"}
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
ROUTE_FIELDS = ("match", "rewrite", "headers", "corsPolicy", "timeout", "retries")


def first_step(analysis: dict[str, Any]) -> int:
    """The canary's weight in the first analysis step; 0 for a blue/green analysis
    (`iterations` without step weights), which tests the canary without live traffic."""
    steps = items(analysis.get("stepWeights"))
    if "iterations" in analysis and "stepWeight" not in analysis and not steps:
        return 0
    if steps:
        return int(steps[0])
    return int(analysis.get("stepWeight", 10) or 10)


def _meta(name: str, namespace: str, custom: Any = None) -> dict[str, Any]:
    """Flagger's metadata of a made object: the custom labels of `spec.service.<role>`, then
    the selector label naming the object (kubernetes_default.go `reconcileService`)."""
    return {"name": name, "namespace": namespace, "labels": {**_labels(custom), "app": name}}


def _labels(custom: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in d(d(custom).get("labels")).items()}


def _gateway_api_version(provider: str) -> str | None:
    """The HTTPRoute version of a Gateway API provider, by Flagger's prefix tests in their
    order (pkg/router/factory.go `MeshRouter`): `gatewayapi:v1beta1`, then `gatewayapi:v1`.
    None for any other provider (a bare `gatewayapi` falls to Flagger's Istio default)."""
    for version in ("v1beta1", "v1"):
        if provider.startswith(f"{GATEWAY_API_PROVIDER}:{version}"):
            return version
    return None


def expand(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`objects` plus what Flagger makes of each Istio Canary among them."""
    present = {(o.get("kind"), namespace_of(o), name_of(o)) for o in objects}
    deployments = {
        (namespace_of(o), name_of(o)): o for o in objects if o.get("kind") == "Deployment"
    }
    made: list[dict[str, Any]] = []
    for canary in (o for o in objects if o.get("kind") == "Canary"):
        spec = spec_of(canary)
        provider = str(spec.get("provider", "istio"))
        if provider != "istio" and _gateway_api_version(provider) is None:
            continue
        namespace = namespace_of(canary)
        target = deployments.get((namespace, str(d(spec.get("targetRef")).get("name"))))
        if target is None:
            continue
        for obj in _generated(canary, target):
            key = (obj["kind"], namespace, obj["metadata"]["name"])
            if key not in present:
                made.append(obj)
    return [*objects, *made]


def _generated(canary: dict[str, Any], target: dict[str, Any]) -> list[dict[str, Any]]:
    spec = spec_of(canary)
    service = d(spec.get("service"))
    namespace = namespace_of(canary)
    target_name = name_of(target)
    apex = str(service.get("name") or target_name)
    primary, canary_name = f"{apex}-primary", f"{apex}-canary"
    selector = d(d(spec_of(target).get("selector")).get("matchLabels"))
    # Flagger's -selector-labels default, in order (cmd/flagger/main.go; deployment_controller
    # `getSelectorLabel`).
    label = next((k for k in SELECTOR_LABELS if k in selector), "app")
    value = str(selector.get(label, target_name))

    primary_deployment = copy.deepcopy(target)
    primary_deployment["metadata"] = {
        **d(target.get("metadata")),
        "name": f"{target_name}-primary",
    }
    primary_spec = primary_deployment["spec"]
    primary_spec["selector"] = {"matchLabels": {label: f"{value}-primary"}}
    template_meta = primary_spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = {**d(template_meta.get("labels")), label: f"{value}-primary"}
    primary_spec["replicas"] = spec_of(target).get("replicas") or 1

    port = {
        "name": str(service.get("portName", "http")),
        "port": service.get("port"),
        "targetPort": service.get("targetPort", service.get("port")),
        "protocol": "TCP",
    }
    if service.get("appProtocol"):
        port["appProtocol"] = service["appProtocol"]

    def svc(name: str, pods: str, role: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, namespace, service.get(role)),
            "spec": {"type": "ClusterIP", "selector": {label: pods}, "ports": [dict(port)]},
        }

    def rule(name: str) -> dict[str, Any]:
        rule_spec: dict[str, Any] = {"host": name}
        if service.get("trafficPolicy"):
            rule_spec["trafficPolicy"] = service["trafficPolicy"]
        return {
            "apiVersion": API,
            "kind": "DestinationRule",
            "metadata": _meta(name, namespace),
            "spec": rule_spec,
        }

    services = [
        primary_deployment,
        svc(apex, f"{value}-primary", "apex"),
        svc(primary, f"{value}-primary", "primary"),
        svc(canary_name, value, "canary"),
    ]
    weight = first_step(d(spec.get("analysis")))
    version = _gateway_api_version(str(spec.get("provider", "istio")))
    if version is not None:
        return [*services, _http_route(spec, namespace, apex, version, weight)]
    route: dict[str, Any] = {
        "route": [
            {"destination": {"host": primary}, "weight": 100 - weight},
            {"destination": {"host": canary_name}, "weight": weight},
        ]
    }
    for key in ROUTE_FIELDS:
        if key in service:
            route[key] = service[key]
    hosts = [str(h) for h in items(service.get("hosts"))]
    if apex not in hosts and "*" not in hosts:
        hosts.append(apex)
    gateways = [str(g) for g in items(service.get("gateways"))] or ["mesh"]
    virtual_service = {
        "apiVersion": API,
        "kind": "VirtualService",
        "metadata": _meta(apex, namespace),
        "spec": {"hosts": hosts, "gateways": gateways, "http": [route]},
    }
    return [*services, rule(primary), rule(canary_name), virtual_service]


def _http_route(
    spec: dict[str, Any], namespace: str, apex: str, version: str, weight: int
) -> dict[str, Any]:
    """The HTTPRoute of Flagger's Gateway API router at `weight` (see the module docstring)."""
    service = d(spec.get("service"))
    port = service.get("port")

    def backend(name: str, share: int) -> dict[str, Any]:
        return {"group": "", "kind": "Service", "name": name, "port": port, "weight": share}

    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [
            backend(f"{apex}-primary", 100 - weight),
            backend(f"{apex}-canary", weight),
        ],
    }
    if service.get("timeout"):
        rule["timeouts"] = {"request": service["timeout"]}
    return {
        "apiVersion": f"{GATEWAY_API_GROUP}/{version}",
        "kind": "HTTPRoute",
        "metadata": _meta(apex, namespace, service.get("apex")),
        "spec": {
            "parentRefs": [{**REF_DEFAULTS, **d(ref)} for ref in items(service.get("gatewayRefs"))],
            "hostnames": [str(h) for h in items(service.get("hosts"))],
            "rules": [rule],
        },
    }
