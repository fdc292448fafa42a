"""Every object of the hardened stacks validates against the real schemas: Istio 1.30's CRDs
(strict: unknown fields rejected, like `kubectl apply`) and Kubernetes' OpenAPI for the oldest
supported (1.28) and a current release."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest

from mesh.config import parse_config
from mesh.plan import build_plan
from tests.conftest import shared_path, stack_raw, with_value

KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")


def _everything_on_dev() -> dict:
    """Dev with every optional security and resilience feature set."""
    raw = stack_raw("dev")
    for path, value in {
        "security.mtls": "STRICT",
        "security.authorization": True,
        "security.restrictEgress": True,
        "gateway.tls": {"credentialName": "dev-tls", "mode": "MUTUAL"},
        "storage.endpoint": {"host": "minio.minio.svc.cluster.local", "port": 9000, "tls": False},
        "storage.credentialsSecret": {"name": "minio-keys"},
        "models.sentiment.callers": ["notebooks/data-science"],
        "models.sentiment.fault": {
            "delay": {"fixedDelay": "1500ms", "percent": 12.5},
            "abort": {"httpStatus": 503, "percent": 1},
        },
        "models.sentiment.trafficPolicy": {
            "connectionPool": {
                "tcp": {"maxConnections": 50, "connectTimeout": "3s"},
                "http": {
                    "http1MaxPendingRequests": 10,
                    "http2MaxRequests": 100,
                    "maxRequestsPerConnection": 20,
                    "maxRetries": 2,
                    "idleTimeout": "5m",
                },
            },
            "outlierDetection": {
                "consecutive5xxErrors": 3,
                "consecutiveGatewayErrors": 2,
                "interval": "5s",
                "baseEjectionTime": "1m",
                "maxEjectionPercent": 34,
                "minHealthPercent": 50,
            },
            "loadBalancer": {"simple": "LEAST_REQUEST"},
        },
        "models.sentiment.autoscaling": {
            "maxReplicas": 5,
            "targetCpuUtilization": 60,
            "metric": {"name": "requests_per_second", "averageValue": "500m"},
        },
    }.items():
        raw = with_value(raw, path, value)
    return raw


STACKS = {
    "prod": lambda: (stack_raw("prod"), "prod"),
    "dev": lambda: (stack_raw("dev"), "dev"),
    "dev with everything on": lambda: (_everything_on_dev(), "dev"),
}


@pytest.fixture(params=sorted(STACKS))
def objects(request) -> list[dict]:
    raw, stack = STACKS[request.param]()
    return build_plan(parse_config(raw, stack)).objects()


def _istio_schema(api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    path = shared_path("istio", "schemas-strict", group, version, f"{kind}.json")
    return json.loads(path.read_text())


def test_istio_objects_match_the_strict_crd_schemas(objects):
    istio = [o for o in objects if ".istio.io/" in o["apiVersion"]]
    assert istio
    for obj in istio:
        schema = _istio_schema(obj["apiVersion"], obj["kind"])
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
        assert errors == [], f"{obj['kind']}/{obj['metadata']['name']}: {errors}"


def _built_in(api_version: str) -> bool:
    """Kubernetes' own API groups: none (core), dot-less (apps, policy) or *.k8s.io."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_match_the_api_schemas(objects, version):
    core = [o for o in objects if _built_in(o["apiVersion"])]
    assert {"Deployment", "PodDisruptionBudget"} <= {o["kind"] for o in core}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_everything_on_stack_really_has_everything():
    objects = build_plan(parse_config(_everything_on_dev(), "dev")).objects()
    kinds = {o["kind"] for o in objects}
    assert {
        "PeerAuthentication",
        "AuthorizationPolicy",
        "Sidecar",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    } <= kinds
    (vs,) = [o for o in objects if o["kind"] == "VirtualService"]
    assert all("fault" in route for route in vs["spec"]["http"])
