"""The DestinationRule traffic policy of a model: circuit breaking (connection pool limits and
outlier detection), the load balancer, and mutual TLS towards the model's pods.

Protected stacks get circuit breaking by default; a model's own `trafficPolicy` replaces the
default section by section (set `connectionPool` and the default outlier detection stays).
Dev gets only what it configures, one setting away.
"""

from __future__ import annotations

from mesh.config import StackConfig, TrafficPolicy
from mesh.security import client_tls

# Limits per calling proxy (each gateway pod or sidecar) towards one version: inference calls
# are slow and expensive, so a caller queues at most this much before failing fast (503).
PROTECTED_CONNECTION_POOL = {"http": {"http1MaxPendingRequests": 256, "http2MaxRequests": 1024}}
# A pod that fails 5 calls in a row leaves the pool for 30s (longer each time it happens again);
# at most half of a version's pods are ever ejected, so a bad version still gets its share.
PROTECTED_OUTLIER_DETECTION = {
    "consecutive5xxErrors": 5,
    "interval": "10s",
    "baseEjectionTime": "30s",
    "maxEjectionPercent": 50,
}


def _configured(policy: TrafficPolicy | None) -> dict:
    if policy is None:
        return {}
    return policy.model_dump(by_alias=True, exclude_none=True)


def traffic_policy(config: StackConfig, name: str) -> dict | None:
    """`spec.trafficPolicy` of the model's DestinationRule, or None when there is nothing to set
    (an empty trafficPolicy is invalid, rule 31 of RULES.md)."""
    policy: dict = {}
    if config.protected:
        policy["connectionPool"] = PROTECTED_CONNECTION_POOL
        policy["outlierDetection"] = PROTECTED_OUTLIER_DETECTION
    policy.update(_configured(config.models[name].traffic_policy))
    tls = client_tls(config)
    if tls is not None:
        policy["tls"] = tls
    return policy or None
