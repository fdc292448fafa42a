"""A Service per version, and the DestinationRules that keep the traffic policy on them.

HTTPRoute splits traffic between backendRefs, which are Services, not subsets: each version
gets `<model>-<version>`, selecting its pods by `app` and `version`, with the ports of the
model Service (names, appProtocol, targetPort), so the protocol Istio picks and the pod port it
reaches are the same whichever Service a request is routed through. The model Service stays:
mesh clients dial it, and the HTTPRoute binds it as its mesh parent.

Istio applies a DestinationRule to the cluster of its `host`, and the clusters a route sends
to are those of the version Services (`outbound|<port>||<model>-<version>.<ns>.svc...`), so
the model's traffic policy (mesh/resilience.py: circuit breaking, load balancer, mutual TLS)
goes on one DestinationRule per version host, without subsets. The limits then hold per
calling proxy and version, as the subset policies of `routing: istio` did.
"""

from __future__ import annotations

from mesh.ambient import service_labels
from mesh.config import StackConfig
from mesh.gatewayapi.common import version_service_host, version_service_name
from mesh.k8s import istio_networking, metadata
from mesh.resilience import traffic_policy
from models.workloads import COMPONENT as MODEL_COMPONENT
from models.workloads import selector_labels, service

TRAFFIC_COMPONENT = "traffic"


def version_service(config: StackConfig, name: str, version: str) -> dict:
    """The Service of one version: the model Service's ports, selecting that version's pods.
    In ambient it carries `istio.io/ingress-use-waypoint` like the model Service
    (mesh.ambient `service_labels`): the ingress routes reach the pods through these
    Services, so without it the gateway would skip the waypoint and its L7 policy."""
    model_service = service(config, name)
    labels = selector_labels(name, version)
    meta_labels = {**labels, **service_labels(config)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            version_service_name(name, version), config.namespace, MODEL_COMPONENT, meta_labels
        ),
        "spec": {**model_service["spec"], "selector": dict(labels)},
    }


def version_services(config: StackConfig, name: str) -> list[dict]:
    return [version_service(config, name, v) for v in sorted(config.models[name].versions)]


def version_destination_rules(config: StackConfig, name: str) -> list[dict]:
    """One DestinationRule per version Service, only when the model has a policy (an empty
    trafficPolicy is invalid, RULES.md 31). No exportTo: the ingress gateway pods (another
    namespace) route to these hosts too."""
    policy = traffic_policy(config, name)
    if policy is None:
        return []
    return [
        policy_rule(
            config,
            version_service_name(name, version),
            version_service_host(config, name, version),
            selector_labels(name, version),
            policy,
        )
        for version in sorted(config.models[name].versions)
    ]


def policy_rule(config: StackConfig, rule: str, host: str, labels: dict, policy: dict) -> dict:
    """A DestinationRule that only carries the model's traffic policy to one host."""
    return {
        "apiVersion": istio_networking(config),
        "kind": "DestinationRule",
        "metadata": metadata(rule, config.namespace, TRAFFIC_COMPONENT, labels),
        "spec": {"host": host, "trafficPolicy": policy},
    }
