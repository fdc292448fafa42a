"""The model store: an S3 bucket on AWS or an S3-compatible endpoint, and how pods read it."""

from __future__ import annotations

from pydantic import Field

from mesh.config.base import _Config
from mesh.config.formats import Bucket, DnsSubdomain, Flag, Fqdn, Port, Region, SecretKey


class StorageEndpoint(_Config):
    """An S3-compatible store (MinIO, Ceph RGW, ...) instead of AWS S3."""

    host: Fqdn = Field(description="e.g. minio.minio.svc.cluster.local or s3.example.com")
    port: Port | None = Field(default=None, description="default 443 with tls, 80 without")
    tls: Flag = True

    def effective_port(self) -> int:
        return self.port or (443 if self.tls else 80)

    def in_cluster(self) -> bool:
        """A Kubernetes Service of this cluster (<service>.<namespace>.svc.cluster.local)."""
        labels = self.host.split(".")
        return len(labels) == 5 and labels[2:] == ["svc", "cluster", "local"]

    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        default = 443 if self.tls else 80
        port = "" if self.effective_port() == default else f":{self.effective_port()}"
        return f"{scheme}://{self.host}{port}"


class CredentialsSecret(_Config):
    """An existing Secret in the serving namespace holding an S3 access key pair."""

    name: DnsSubdomain
    access_key_id_key: SecretKey = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: SecretKey = "AWS_SECRET_ACCESS_KEY"


class Storage(_Config):
    bucket: Bucket
    region: Region = Field(description="AWS region, or the region an S3-compatible store signs")
    endpoint: StorageEndpoint | None = None
    credentials_secret: CredentialsSecret | None = Field(
        default=None,
        description="read the model store with this key pair instead of an IAM role (roleArn)",
    )
    node_credentials: Flag = Field(
        default=False,
        description="read the store with the node's IAM role through the instance metadata "
        "service (169.254.169.254:80), for models without roleArn when there is no "
        "credentialsSecret; with egress restricted this adds the ServiceEntry "
        "instance-metadata, which opens the node role's credentials to every pod of the "
        "namespace",
    )
