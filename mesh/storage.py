"""How a pod reads the model store: which endpoint, and with which credentials.

Credentials come only from an IAM role for the service account (IRSA, `models.<m>.roleArn`; the
EKS webhook injects a web identity token) or from keys of an existing Secret
(`storage.credentialsSecret`) passed as `secretKeyRef`s, so no key is ever written into a
Deployment or into the Pulumi state.
"""

from __future__ import annotations

from mesh.config import Storage


def credential_env(storage: Storage) -> list[dict]:
    """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the credentials Secret, if there is one."""
    secret = storage.credentials_secret
    if secret is None:
        return []
    return [
        {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}},
        }
        for variable, key in (
            ("AWS_ACCESS_KEY_ID", secret.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", secret.secret_access_key_key),
        )
    ]


def region_env(storage: Storage) -> list[dict]:
    return [
        {"name": "AWS_REGION", "value": storage.region},
        {"name": "AWS_DEFAULT_REGION", "value": storage.region},
    ]


def endpoint_args(storage: Storage) -> list[str]:
    """`aws s3` arguments for an S3-compatible endpoint; botocore then addresses buckets
    path-style (`host/bucket/key`), which in-cluster stores such as MinIO need."""
    if storage.endpoint is None:
        return []
    return ["--endpoint-url", storage.endpoint.url()]


def triton_repository(storage: Storage, path: str) -> str:
    """Triton's S3 URL: `s3://bucket/path` on AWS; for another store Triton wants
    `s3://[https://]host:port/bucket/path` (plain HTTP without the scheme)."""
    endpoint = storage.endpoint
    if endpoint is None:
        return f"s3://{storage.bucket}/{path}"
    scheme = "https://" if endpoint.tls else ""
    return f"s3://{scheme}{endpoint.host}:{endpoint.effective_port()}/{storage.bucket}/{path}"
