"""ServiceEntries that let model pods reach the model store (and STS, for IAM roles; the
instance metadata service, for the node's role).

The store is AWS S3 by default, or an S3-compatible endpoint (`storage.endpoint`, e.g. MinIO).
An endpoint inside the cluster is a Kubernetes Service already known to the mesh and needs no
ServiceEntry; one outside gets its own.

In ambient the same entries are reached through the namespace's waypoint (the namespace's
`istio.io/use-waypoint` binds ServiceEntries as it binds Services: Istio's docs "Egress
gateways" for ambient), where mesh.security.store_access_policy admits the model pods only;
the instance metadata entry is the exception (`_instance_metadata_entry`).
"""

from __future__ import annotations

from mesh.ambient import NO_WAYPOINT, USE_WAYPOINT_LABEL
from mesh.config import StackConfig, StorageEndpoint
from mesh.k8s import istio_networking, metadata

COMPONENT = "egress"
MODEL_STORE = "model-store"
AWS_STS = "aws-sts"
INSTANCE_METADATA = "instance-metadata"
# IMDS has no DNS name the SDKs use: they dial the link-local address. The ServiceEntry's host
# is only its name in the registry; `addresses` is what the proxy matches the connection on.
IMDS_ADDRESS = "169.254.169.254"
IMDS_HOST = "instance-metadata.aws.internal"


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


def _tls_port(number: int = 443) -> dict:
    # TLS: the SDKs speak HTTPS end to end; the sidecar routes on SNI.
    return {"number": number, "name": "tls", "protocol": "TLS"}


def _endpoint_port(endpoint: StorageEndpoint) -> dict:
    if endpoint.tls:
        return _tls_port(endpoint.effective_port())
    return {"number": endpoint.effective_port(), "name": "http", "protocol": "HTTP"}


def _instance_metadata_entry(config: StackConfig) -> dict:
    """IMDS at 169.254.169.254:80 as a registry entry, for `storage.nodeCredentials`.

    The SDKs ask IMDSv2 for a token (PUT /latest/api/token), then for the node role's
    credentials (GET /latest/meta-data/iam/security-credentials/...). An IP destination is
    known to the proxy only through a ServiceEntry with `addresses` (pilot builds the
    outbound listener on them) and, with no name to resolve, `resolution: STATIC` with the
    address as its endpoint. TCP, not HTTP: the proxy forwards the bytes as they are, so no
    header it might add can make IMDSv2 refuse the token request (it issues no token to a
    request with X-Forwarded-For, its guard against reverse proxies: aws.amazon.com/blogs/
    security/defense-in-depth-open-firewalls-reverse-proxies-ssrf-vulnerabilities-ec2-
    instance-metadata-service/).

    In ambient the entry opts out of the namespace's waypoint (`istio.io/use-waypoint: none`,
    reserved for that: pilot/pkg/serviceregistry/ambient/waypoints.go `getUseWaypoint`):
    through it, the waypoint pod would call the metadata service of ITS node and hand out that
    node's role; ztunnel then sends the connection from the model pod itself, as the sidecar
    did.
    """
    entry = _service_entry(
        config,
        INSTANCE_METADATA,
        [IMDS_HOST],
        {"number": 80, "name": "tcp", "protocol": "TCP"},
    )
    entry["spec"] |= {
        "addresses": [IMDS_ADDRESS],
        "resolution": "STATIC",
        "endpoints": [{"address": IMDS_ADDRESS}],
    }
    if config.ambient():
        entry["metadata"]["labels"] = {
            USE_WAYPOINT_LABEL: NO_WAYPOINT,
            **entry["metadata"]["labels"],
        }
    return entry


def _service_entry(config: StackConfig, name: str, hosts: list[str], port: dict) -> dict:
    return {
        "apiVersion": istio_networking(config),
        "kind": "ServiceEntry",
        "metadata": metadata(name, config.namespace, COMPONENT),
        "spec": {
            "hosts": hosts,
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [port],
        },
    }


def egress_objects(config: StackConfig) -> list[dict]:
    endpoint = config.storage.endpoint
    objects = []
    if endpoint is None:
        objects.append(_service_entry(config, MODEL_STORE, s3_hosts(config), _tls_port()))
    elif not endpoint.in_cluster():
        objects.append(
            _service_entry(config, MODEL_STORE, [endpoint.host], _endpoint_port(endpoint))
        )
    if uses_iam_roles(config):
        objects.append(_service_entry(config, AWS_STS, sts_hosts(config), _tls_port()))
    if config.storage.node_credentials:
        # Also without the stack's Sidecar: a mesh-wide REGISTRY_ONLY (meshConfig
        # outboundTrafficPolicy) would blackhole IMDS just the same.
        objects.append(_instance_metadata_entry(config))
    return objects


def service_entry_hosts(config: StackConfig) -> list[str]:
    """Every host the ServiceEntries of this stack declare."""
    return [host for entry in egress_objects(config) for host in entry["spec"]["hosts"]]
