"""Gateway API Inference Extension pools as Istio 1.30 serves them (tag 1.30.3, with istiod's
ENABLE_GATEWAY_API_INFERENCE_EXTENSION).

- istiod mirrors every InferencePool in a headless shadow Service `<pool>-ip-<hash>`
  (pilot/pkg/config/kube/gateway/inferencepool_collection.go `InferencePoolServiceName`,
  `translateShadowServiceToService`): ClusterIP None, the pool's `selector.matchLabels` as
  selector, one port `http-<i>` 54321+i per target port (targetPort the pool's, appProtocol the
  pool's), and labels naming the endpoint picker: its Service, port and failure mode (FailClose
  unless the pool says otherwise). `expand` adds them, as mesh.trace.flagger adds Flagger's.
- A backendRef `{group: inference.networking.k8s.io, kind: InferencePool}` (conversion.go
  `buildDestination`, case gvk.InferencePool): a name with a dot is an InvalidDestination,
  which drops the rule from the translation (`convertHTTPRoute` returns the error; the rule
  generates no route); a missing pool or shadow Service is an InvalidDestinationNotFound
  ("backend(<name>) not found"): the destination keeps no host, its cluster is
  `UnknownService` (route.go `GetDestinationCluster`) and gateway semantics answer a missing
  cluster with 500 (route.go `ClusterNotFoundResponseCode` INTERNAL_SERVER_ERROR). Otherwise
  the destination is the shadow host on its first port (54321).
- The endpoint picker: on a Gateway's pods only (listener_builder.go `HasInferencePool` adds
  the ext_proc filter to Gateways with a pool), the route carries `ExtProcPerRoute` calling
  `outbound|<port>||<picker Service host>` with `FailureModeAllow` = failure mode FailOpen
  (route.go, the InferencePoolExtensionRefs branch; route_collections.go). When the call
  fails, Envoy's ext_proc filter with failure_mode_allow false answers a local 500
  (envoy test/extensions/filters/http/ext_proc/filter_test.cc: `sendLocalReply(
  InternalServerError, ..., "ext_proc_error_gRPC_error_<code>")`); with it true the request
  goes on without the picker's choice, to any pod of the shadow cluster. The picker's answer
  itself (which pod) is not modelled: the trace follows the pool's first endpoint, as it does
  for a Service.
- A sidecar (a mesh route with a pool backend) builds no ext_proc filter: it routes to the
  shadow Service's cluster like any Service, without a picker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from mesh.trace.objects import d, items, meta, name_of, namespace_of, spec_of, svc_fqdn

POOL_GROUP = "inference.networking.k8s.io"
POOL_KIND = "InferencePool"
SHADOW_PORT = 54321
MAX_NAME = 63
HASH_SIZE = 8
POOL_LABEL = "istio.io/inferencepool-name"
PICKER_SERVICE_LABEL = "istio.io/inferencepool-extension-service"
PICKER_PORT_LABEL = "istio.io/inferencepool-extension-port"
FAILURE_MODE_LABEL = "istio.io/inferencepool-extension-failure-mode"


def is_pool_ref(ref: dict[str, Any]) -> bool:
    return ref.get("group") == POOL_GROUP and ref.get("kind") == POOL_KIND


def shadow_name(pool: str) -> str:
    """`InferencePoolServiceName`: `<pool>-ip-<sha256(pool)[:8]>`, the pool name cut so that
    the whole fits 63 characters."""
    digest = hashlib.sha256(pool.encode()).hexdigest()[:HASH_SIZE]
    separator = "-ip-"
    name = f"{pool}{separator}{digest}"
    if len(name) > MAX_NAME:
        name = f"{pool[: MAX_NAME - len(separator) - HASH_SIZE]}{separator}{digest}"
    return name


def failure_mode(pool: dict[str, Any]) -> str:
    """FailClose unless the pool names another mode (inferencepool_collection.go)."""
    given = d(spec_of(pool).get("endpointPickerRef")).get("failureMode")
    return str(given) if given and given != "FailClose" else "FailClose"


def shadow_service(pool: dict[str, Any]) -> dict[str, Any] | None:
    """`translateShadowServiceToService` for one pool; None for a pool istiod skips (no
    endpointPickerRef port)."""
    spec = spec_of(pool)
    picker = d(spec.get("endpointPickerRef"))
    port = d(picker.get("port")).get("number")
    if port is None:
        return None
    ports = []
    for index, target in enumerate(items(spec.get("targetPorts"))):
        entry: dict[str, Any] = {
            "name": f"http-{index}",
            "protocol": "TCP",
            "port": SHADOW_PORT + index,
            "targetPort": d(target).get("number"),
        }
        if spec.get("appProtocol"):
            entry["appProtocol"] = spec["appProtocol"]
        ports.append(entry)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": shadow_name(name_of(pool)),
            "namespace": namespace_of(pool),
            "labels": {
                POOL_LABEL: name_of(pool),
                PICKER_SERVICE_LABEL: str(picker.get("name", "")),
                PICKER_PORT_LABEL: str(port),
                FAILURE_MODE_LABEL: failure_mode(pool),
            },
        },
        "spec": {
            "selector": dict(d(d(spec.get("selector")).get("matchLabels"))),
            "type": "ClusterIP",
            "clusterIP": "None",
            "ports": ports,
        },
    }


def expand(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with the shadow Service istiod creates for every InferencePool (kept as
    they are where a Service of that name is already among them: a cluster dump)."""
    present = {(namespace_of(o), name_of(o)) for o in objects if o.get("kind") == "Service"}
    added = []
    for pool in objects:
        if pool.get("kind") != POOL_KIND:
            continue
        shadow = shadow_service(pool)
        if shadow is None or (namespace_of(shadow), name_of(shadow)) in present:
            continue
        added.append(shadow)
    return [*objects, *added]


@dataclass(frozen=True)
class Picker:
    """The endpoint picker a pool's route calls: its Service host and port, and whether the
    request goes on when the call fails (FailOpen)."""

    pool: str
    namespace: str
    service: str
    port: int
    mode: str

    @property
    def host(self) -> str:
        return svc_fqdn(self.service, self.namespace)

    @property
    def fail_open(self) -> bool:
        return self.mode == "FailOpen"


@dataclass(frozen=True)
class PoolTarget:
    """A pool backendRef resolved: the shadow host and port, and its picker."""

    host: str
    port: int
    picker: Picker


def resolve(objects, ref: dict[str, Any], namespace: str) -> tuple[PoolTarget | None, str]:
    """A pool backendRef as `buildDestination` resolves it: the target, or why not ('' when
    resolved). The caller tells a dropped rule (a dotted name) from a missing backend."""
    name = str(ref.get("name", ""))
    pool_ns = str(ref.get("namespace") or namespace)
    pools = [p for p in objects.kind(POOL_KIND, pool_ns) if name_of(p) == name]
    if not pools:
        return None, f"backend({name}) not found: no InferencePool {pool_ns}/{name}"
    host = svc_fqdn(shadow_name(name), pool_ns)
    service = objects.services.get(host)
    if service is None:
        return (
            None,
            f"backend({host}) not found: InferencePool {pool_ns}/{name} has no shadow Service",
        )
    labels = d(meta(service).get("labels"))
    picker_port = str(labels.get(PICKER_PORT_LABEL, ""))
    if not labels.get(PICKER_SERVICE_LABEL) or not picker_port.isdigit():
        return None, "InferencePool service invalid, extensionRef labels not found"
    ports = items(spec_of(service).get("ports"))
    port = int(d(ports[0]).get("port", 0)) if ports else 0
    picker = Picker(
        name,
        pool_ns,
        str(labels[PICKER_SERVICE_LABEL]),
        int(picker_port),
        str(labels.get(FAILURE_MODE_LABEL, "FailClose")),
    )
    return PoolTarget(host, port, picker), ""


def dotted(ref: dict[str, Any]) -> bool:
    """A pool backendRef by host name, which istiod refuses ("the name of the InferencePool
    must be used, not the hostname")."""
    return is_pool_ref(ref) and "." in str(ref.get("name", ""))
