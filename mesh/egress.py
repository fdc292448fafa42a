"""ServiceEntries that let model pods reach the model bucket (and STS, for IAM roles)."""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.k8s import istio_networking, metadata

COMPONENT = "egress"
MODEL_STORE = "model-store"
AWS_STS = "aws-sts"


def s3_hosts(config: StackConfig) -> list[str]:
    bucket, region = config.storage.bucket, config.storage.region
    return [
        f"{bucket}.s3.{region}.amazonaws.com",  # virtual-hosted, regional (SDK default)
        f"{bucket}.s3.amazonaws.com",  # virtual-hosted, global (older SDKs, us-east-1)
        f"s3.{region}.amazonaws.com",  # path-style, regional
    ]


def sts_hosts(config: StackConfig) -> list[str]:
    return [f"sts.{config.storage.region}.amazonaws.com", "sts.amazonaws.com"]


def uses_iam_roles(config: StackConfig) -> bool:
    return any(model.role_arn for model in config.models.values())


def _service_entry(config: StackConfig, name: str, hosts: list[str]) -> dict:
    return {
        "apiVersion": istio_networking(config),
        "kind": "ServiceEntry",
        "metadata": metadata(name, config.namespace, COMPONENT),
        "spec": {
            "hosts": hosts,
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            # TLS: the SDKs speak HTTPS end to end; the sidecar routes on SNI.
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        },
    }


def egress_objects(config: StackConfig) -> list[dict]:
    objects = [_service_entry(config, MODEL_STORE, s3_hosts(config))]
    if uses_iam_roles(config):
        objects.append(_service_entry(config, AWS_STS, sts_hosts(config)))
    return objects
