"""Mesh security of the serving namespace: mutual TLS, who may call a model, and where the model
pods may connect to.

- PeerAuthentication `default` (namespace-wide) in STRICT mode: sidecars accept only mutual TLS,
  so every caller has a verified identity. DestinationRules say ISTIO_MUTUAL for the same reason
  on the client side (see `client_tls`).
- AuthorizationPolicy per model (ALLOW, selector `app=<model>`): the ingress gateway's identity
  and the model's configured callers (in Flagger mode, on the canary pods, also the
  loadtester), on the model server's inference API only. An ALLOW policy
  denies everything it does not match, so admin APIs (Triton's model control, shared memory,
  trace and log settings; TF Serving's config reload) stay closed.
- Sidecar `default` (namespace-wide): egress only to this namespace, istio-system, the model
  store and the telemetry providers' Services, with `outboundTrafficPolicy: REGISTRY_ONLY`, so
  a compromised server cannot reach anything else through its proxy.

Health probes keep working under both STRICT mTLS and the ALLOW policies because Istio rewrites
HTTP probes to the pilot-agent on port 15020 (excluded from traffic capture), which calls the app
from 127.0.0.6, bypassing the inbound proxy; `sidecar.istio.io/rewriteAppHTTPProbers` pins that
on every pod (see models.workloads.pod_annotations).

In ambient mode (`dataplane: ambient`, docs/ambient.md) the same intent is split by who can
enforce it: ztunnel enforces L4 only, the waypoint L7 (Istio's docs, "Use Layer 7 features":
a selector policy with L7 rules is enforced by ztunnel as DENY):

- L4 AuthorizationPolicy `<model>` (selector, ztunnel): only the waypoint's identity on the
  server ports, since every caller's connection reaches the pod from the waypoint
  (`ambient_l4_policy`);
- L7 AuthorizationPolicy `<model>-waypoint` (`targetRefs` to the model's Services, the
  waypoint): the gateway and callers, on the inference API, as the sidecar policy above
  (`ambient_l7_policy`);
- PeerAuthentication as above: ztunnel enforces STRICT/PERMISSIVE for the whole pod;
- no Sidecar: nothing in an ambient pod reads it (IST0167); the store's ServiceEntries go through
  the waypoint instead, where `store_access_policy` admits only the model pods;
- NetworkPolicy: HBONE (15008) from the waypoint pods, the metrics namespaces' (enrolled)
  Prometheus and the kubelet's SNATed probes (`ambient_network_policy`);
- with egress restricted, NetworkPolicy `<model>-egress`: what can be enforced instead of
  REGISTRY_ONLY, which ztunnel does not apply: DNS, the waypoint, the store, 443 to any
  address (`ambient_egress_policy`; hosts cannot be named, `mesh check` warns MESH0025).
"""

from __future__ import annotations

from mesh import ambient
from mesh.config import LLM_SERVERS, Model, StackConfig
from mesh.egress import (
    AWS_STS,
    IMDS_ADDRESS,
    MODEL_STORE,
    egress_objects,
    service_entry_hosts,
)
from mesh.gatewayapi.common import (
    AGENT_METRICS_PORT,
    EXT_PROC_PORT,
    PICKER_METRICS_PORT,
    has_pools,
    picker_name,
    picker_pod_labels,
    pool_name,
)
from mesh.k8s import istio_networking, metadata
from models.presets import scrape_port, server_ports

COMPONENT = "security"
NAMESPACE_WIDE = "default"  # the conventional name of namespace-wide PeerAuthentication/Sidecar
MESH_NAMESPACE = "istio-system"

# TF Serving's gRPC API: prediction and model status. ModelService/HandleReloadConfigRequest
# (replaces the served models) is left out on purpose.
TF_GRPC_PATHS = (
    "/tensorflow.serving.PredictionService/*",
    "/tensorflow.serving.ModelService/GetModelStatus",
)
# Triton's KServe v2 gRPC API without repository control, shared-memory registration, trace and
# log settings.
TRITON_GRPC_METHODS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelConfig",
    "ModelStatistics",
    "ModelInfer",
    "ModelStreamInfer",
)
TRITON_GRPC_PATHS = (
    *(f"/inference.GRPCInferenceService/{method}" for method in TRITON_GRPC_METHODS),
    "/grpc.health.v1.Health/Check",
)


def security_api(config: StackConfig) -> str:
    """security.istio.io/v1 came with Istio 1.22, like networking v1; older meshes get v1beta1."""
    version = "v1" if config.istio.api_version == "v1" else "v1beta1"
    return f"security.istio.io/{version}"


def client_tls(config: StackConfig) -> dict | None:
    """DestinationRule `tls` for calls to a model: Istio mutual TLS whenever STRICT is on."""
    return {"mode": "ISTIO_MUTUAL"} if config.mtls_mode() == "STRICT" else None


def peer_authentication(config: StackConfig) -> dict | None:
    mode = config.mtls_mode()
    if mode is None:
        return None
    return {
        "apiVersion": security_api(config),
        "kind": "PeerAuthentication",
        "metadata": metadata(NAMESPACE_WIDE, config.namespace, COMPONENT),
        "spec": {"mtls": {"mode": mode}},
    }


def collector_hosts(config: StackConfig) -> list[str]:
    """The Services of the configured tracing and access-log providers.

    A proxy gets a cluster for a provider only if its Sidecar imports the provider's Service
    (istio/istio#53701); the mesh default tracer is assumed in istio-system, imported anyway.
    """
    telemetry = config.telemetry
    collectors = (telemetry.tracing.collector, telemetry.access_logging.collector)
    return list(dict.fromkeys(c.host for c in collectors if c is not None))


def egress_hosts(config: StackConfig) -> list[str]:
    """Sidecar egress hosts: this namespace, the mesh's own, every model-store host (and IMDS,
    with storage.nodeCredentials), and the telemetry providers' Services."""
    hosts = ["./*", f"{MESH_NAMESPACE}/*"]
    hosts += [f"./{host}" for host in service_entry_hosts(config)]
    services = list(collector_hosts(config))
    endpoint = config.storage.endpoint
    if endpoint is not None and endpoint.in_cluster():
        services.insert(0, endpoint.host)
    for host in dict.fromkeys(services):
        # <service>.<namespace>.svc.cluster.local; the two namespaces above are imported whole
        service_namespace = host.split(".")[1]
        if service_namespace not in (config.namespace, MESH_NAMESPACE):
            hosts.append(f"{service_namespace}/{host}")
    return hosts


def sidecar(config: StackConfig) -> dict | None:
    """REGISTRY_ONLY egress of the namespace's sidecars; none in ambient, where no proxy in
    the pods would read it (Istio reports a Sidecar in an ambient namespace as IST0167)."""
    if not config.egress_restricted() or config.ambient():
        return None
    return {
        "apiVersion": istio_networking(config),
        "kind": "Sidecar",
        "metadata": metadata(NAMESPACE_WIDE, config.namespace, COMPONENT),
        "spec": {
            "egress": [{"hosts": egress_hosts(config)}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def store_access_policy(config: StackConfig) -> dict | None:
    """Ambient egress, the way Istio documents it ("Egress gateways" for ambient): a
    ServiceEntry in a namespace bound to a waypoint (`istio.io/use-waypoint`) is reached
    through that waypoint, where an AuthorizationPolicy attached to the entry (`targetRefs`,
    kind ServiceEntry) decides who may use it. With egress restricted, only the models' own
    service accounts may use the store and STS entries (the download runs as the pod's
    identity: models.workloads._fetch_container).

    What it does not do is what the sidecar's REGISTRY_ONLY did: ztunnel forwards a connection
    to any destination outside the registry as it is (istio/istio#54281, istio/ztunnel#369),
    and sends a registered host's traffic straight out when the waypoint is not ready or the
    pod resolved the host itself (no ztunnel DNS capture, so no ServiceEntry VIP). docs/ambient.md
    says so; a NetworkPolicy egress allow-list of addresses is the platform's tool for that.
    """
    if not (config.ambient() and config.egress_restricted()):
        return None
    entries = [
        entry["metadata"]["name"]
        for entry in egress_objects(config)
        if entry["metadata"]["name"] in (MODEL_STORE, AWS_STS)
    ]
    if not entries:
        return None
    readers = [principal(config, f"{config.namespace}/{name}") for name in sorted(config.models)]
    return {
        "apiVersion": security_api(config),
        "kind": "AuthorizationPolicy",
        "metadata": metadata(MODEL_STORE, config.namespace, COMPONENT),
        "spec": {
            "targetRefs": [
                {"group": "networking.istio.io", "kind": "ServiceEntry", "name": entry}
                for entry in entries
            ],
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": readers}}]}],
        },
    }


def namespace_security_objects(config: StackConfig) -> list[dict]:
    objects = (peer_authentication(config), sidecar(config), store_access_policy(config))
    return [obj for obj in objects if obj is not None]


def principal(config: StackConfig, account: str) -> str:
    """`<ns>/<sa>` as the SPIFFE principal Istio's mTLS gives it: `<trustDomain>/ns/<ns>/sa/<sa>`."""
    namespace, _, name = account.partition("/")
    return f"{config.security.trust_domain}/ns/{namespace}/sa/{name}"


def workload_callers(config: StackConfig, name: str, workload: str) -> list[str]:
    """The service accounts (`<ns>/<sa>`) besides the gateway that may call `workload`.

    Every workload of the model admits `callers`. In Flagger mode the canary workload `<m>`
    also admits the loadtester: its `cmd` calls the `<m>-canary` Service, which selects only
    the canary pods (`app: <m>`), and those are the pods Flagger's success rate measures
    (`destination_workload=~"<m>"`), so without it the load test is refused with 403. The
    primary `<m>-primary` does not admit it: it serves the live traffic, and a tool that runs
    whatever command a webhook sends has no business there.
    """
    model = config.models[name]
    accounts = list(model.callers)
    test = model.progressive.load_test if model.progressive is not None else None
    if workload == name and test is not None and test.caller() not in accounts:
        accounts.append(test.caller())
    return accounts


def caller_principals(config: StackConfig, name: str, workload: str | None = None) -> list[str]:
    callers = workload_callers(config, name, workload or name)
    return [config.gateway_principal(), *(principal(config, c) for c in callers)]


def _operation(ports: list[int], methods: list[str], paths: list[str], **extra) -> dict:
    operation: dict = {"ports": [str(p) for p in ports], "methods": methods, "paths": paths}
    operation.update(extra)
    return {"operation": operation}


# The OpenAI-compatible API of vLLM and SGLang that callers may use: generation, embeddings and
# the model list (`/v1/models/<id>` for SGLang's retrieve). Everything else on the serving port
# stays closed by the ALLOW policy, which lists only these: vLLM 0.34's /metrics, /tokenize,
# /v1/load_lora_adapter, /start_profile, and in dev mode /sleep, /wake_up, /collective_rpc,
# /reset_prefix_cache (vllm entrypoints/serve/); SGLang 0.5.23's /flush_cache,
# /update_weights_from_disk, /start_profile, /load_lora_adapter, /generate, /abort_request
# and every other native route (sglang srt/entrypoints/http_server.py). Health endpoints are
# not listed: the kubelet's probes reach the server through the pilot-agent from inside the
# pod (`rewriteAppHTTPProbers`), never through the inbound listener the policy guards.
LLM_POST_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
LLM_GET_PATHS = ("/v1/models", "/v1/models/*")


def llm_operations(rest: list[int]) -> list[dict]:
    return [
        _operation(rest, ["POST"], list(LLM_POST_PATHS)),
        _operation(rest, ["GET"], list(LLM_GET_PATHS)),
    ]


def inference_operations(name: str, model: Model) -> list[dict]:
    """The model server's inference API, as AuthorizationPolicy operations.

    Istio matches paths exactly, by prefix (`/a*`), by suffix (`*a`) or `*`, never by
    `/v1/models/<m>*`, which would also match a model named `<m>2`.
    """
    ports = server_ports(model)
    rest = [ports[0].number]
    grpc = [p.number for p in ports if p.app_protocol == "grpc"]
    if model.server == "tensorflow-serving":
        base = f"/v1/models/{name}"
        operations = [
            # status (exact), metadata and per-version/label status
            _operation(rest, ["GET"], [base, f"{base}/*"]),
            # :predict, :classify, :regress, also per version or label
            _operation(rest, ["POST"], [f"{base}:*", f"{base}/*"]),
        ]
        if grpc:
            operations.append(_operation(grpc, ["POST"], list(TF_GRPC_PATHS)))
        return operations
    if model.server == "triton":
        # A Triton repository holds models whose names the stack does not know: every model
        # of this pod's repository, but not the per-model trace settings.
        operations = [
            _operation(rest, ["GET"], ["/v2", "/v2/health/live", "/v2/health/ready"]),
            _operation(rest, ["GET", "POST"], ["/v2/models/*"], notPaths=["*/trace/setting"]),
        ]
        if grpc:
            operations.append(_operation(grpc, ["POST"], list(TRITON_GRPC_PATHS)))
        return operations
    if model.server in LLM_SERVERS:
        return llm_operations(rest)
    assert model.custom is not None, "config validation guarantees a custom block"
    paths = model.custom.inference_paths
    operation: dict = {"ports": [str(p.number) for p in ports]}
    if paths:
        operation["paths"] = list(paths)
    return [{"operation": operation}]


def authorization_policy(
    config: StackConfig, name: str, workload: str | None = None
) -> dict | None:
    """The ALLOW policy of model `name`, for the pods labelled `app: <workload>` (the model's
    own pods, or the `<m>-primary` copies Flagger makes); in ambient the L4 half
    (`ambient_l4_policy`)."""
    if not config.authorization_enabled():
        return None
    workload = workload or name
    if config.ambient():
        return ambient_l4_policy(config, name, workload)
    return {
        "apiVersion": security_api(config),
        "kind": "AuthorizationPolicy",
        "metadata": metadata(workload, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "selector": {"matchLabels": {"app": workload}},
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": caller_principals(config, name, workload)}}],
                    "to": inference_operations(name, config.models[name]),
                }
            ],
        },
    }


def _metrics_port(model: Model) -> int | None:
    """Where Prometheus scrapes the server in ambient (no pilot-agent merge on 15020):
    models.presets `scrape_port`. For vLLM and SGLang that is the serving port, so an
    enrolled Prometheus is admitted there at L4 (ztunnel sees no paths): its identity can
    reach the API directly, not only /metrics (docs/ambient.md)."""
    port = scrape_port(model)
    return port.number if port is not None else None


def ambient_l4_policy(config: StackConfig, name: str, workload: str) -> dict:
    """ztunnel's half of the model's policy (selector `app: <workload>`: a selector policy is
    enforced by the destination's ztunnel).

    Every Service of the model is bound to the waypoint (the namespace's
    `istio.io/use-waypoint`, `istio.io/ingress-use-waypoint` on the Services), so a caller's
    request reaches the pod from the waypoint, and the destination ztunnel sees the WAYPOINT's
    identity, not the caller's (Istio's docs, "Enforce authorization policies": the L4 policy
    must admit the waypoint). Admitting only it on the server ports makes the waypoint, and so
    the L7 policy, unavoidable: a connection straight to a pod IP, or one sent past a waypoint
    that is not ready, is refused. Only principals and ports: ztunnel cannot evaluate L7
    attributes and would turn such a rule into DENY. Ports are the container ports, what
    ztunnel sees after the Service's DNAT.

    With `security.metricsNamespaces`, Prometheus in those namespaces may also reach the
    server's own metrics port: in ambient a scrape is captured like any connection, so it
    must come from a meshed Prometheus (its identity names its namespace); a plaintext scrape
    has no identity and STRICT mTLS refuses it anyway (docs/ambient.md).
    """
    model = config.models[name]
    rules: list[dict] = [
        {
            "from": [{"source": {"principals": [ambient.waypoint_principal(config)]}}],
            "to": [{"operation": {"ports": [str(p.number) for p in server_ports(model)]}}],
        }
    ]
    metrics = _metrics_port(model)
    if config.security.metrics_namespaces and metrics is not None:
        rules.append(
            {
                "from": [{"source": {"namespaces": list(config.security.metrics_namespaces)}}],
                "to": [{"operation": {"ports": [str(metrics)]}}],
            }
        )
    return {
        "apiVersion": security_api(config),
        "kind": "AuthorizationPolicy",
        "metadata": metadata(workload, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "selector": {"matchLabels": {"app": workload}},
            "action": "ALLOW",
            "rules": rules,
        },
    }


def flagger_l7_policies(config: StackConfig, name: str) -> list[dict]:
    """Ambient with Flagger: Flagger's Services `<m>`, `<m>-primary` (both select the primary
    pods) and `<m>-canary` (the canary pods). A waypoint applies the policies of the Service a
    request was addressed to, before its routes pick a backend, so the policy of `<m>` and
    `<m>-primary` admits the callers and that of `<m>-canary` also the loadtester, which
    calls `<m>-canary` (`workload_callers`: the same split as the sidecar policies)."""
    return [
        _l7_policy(
            config, name, f"{name}-primary-waypoint", [name, f"{name}-primary"], f"{name}-primary"
        ),
        _l7_policy(config, name, f"{name}-canary-waypoint", [f"{name}-canary"], name),
    ]


def _l7_policy(
    config: StackConfig, name: str, policy: str, services: list[str], workload: str
) -> dict:
    """An ALLOW policy at the waypoint for `services`: the callers of `workload`
    (`caller_principals`) on the model's inference API."""
    callers = caller_principals(config, name, workload)
    return {
        "apiVersion": security_api(config),
        "kind": "AuthorizationPolicy",
        "metadata": metadata(policy, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "targetRefs": [
                {"group": "", "kind": "Service", "name": service} for service in services
            ],
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": callers}}],
                    "to": inference_operations(name, config.models[name]),
                }
            ],
        },
    }


def ambient_l7_policy(config: StackConfig, name: str) -> dict | None:
    """The waypoint's half: the sidecar policy's callers and inference operations, attached to
    the model's Services (`targetRefs`, group "" kind Service: mesh.ambient.
    model_service_names), so the waypoint enforces it for every request to them. A policy
    with `targetRefs` may not also have a selector (the CRD's CEL rule "only one of targetRefs
    or selector can be set").

    Ports in it are compared with the Service port at a waypoint: the waypoint builds one
    inbound chain per Service port with that port as its target
    (pilot/pkg/networking/core/listener_waypoint.go `buildWaypointInternal`), not the pod's.
    A model's Service ports equal its container ports (models.workloads.service), so the
    operations read the same in both modes.
    """
    if not config.authorization_enabled():
        return None
    services = ambient.model_service_names(config, name)
    return _l7_policy(config, name, f"{name}-waypoint", services, name)


def workload_selector(name: str, workloads: list[str]) -> dict:
    """The pods of a model's workloads: `app: <m>`, or in Flagger mode `<m>` and
    `<m>-primary` (the copies Flagger makes carry `app: <m>-primary`)."""
    if workloads == [name]:
        return {"matchLabels": {"app": name}}
    return {"matchExpressions": [{"key": "app", "operator": "In", "values": workloads}]}


def _metrics_rule(config: StackConfig, ports) -> dict:
    """The NetworkPolicy ingress rule admitting `security.metricsNamespaces` on `ports`."""
    return {
        "from": [_namespace_peer(n) for n in config.security.metrics_namespaces],
        "ports": _ports(ports),
    }


def _ingress_policy(config: StackConfig, name: str, workloads: list[str], ingress: list) -> dict:
    """The model's default-deny ingress NetworkPolicy over its workloads' pods, both modes."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "podSelector": workload_selector(name, workloads),
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def ambient_network_policy(config: StackConfig, name: str, workloads: list[str]) -> dict:
    """L3/L4 under ztunnel, as Istio's docs "Ambient and Kubernetes NetworkPolicy" say it must
    be written for an ambient pod: mesh traffic arrives on 15008 (HBONE), whatever the server
    port, and the kubelet's probes arrive from 169.254.7.127 (Istio CNI SNATs them so ztunnel
    can let them through; the docs allow that address by `ipBlock`).

    Only the waypoint pods send HBONE to the model pods: every Service of the model is bound
    to it, and the L4 policy admits no one else. The probe rule opens the port the probes use
    (the REST port, models.workloads `_probe`), not every port as the docs' example does.

    With `security.metricsNamespaces`, Prometheus there may reach 15008: in ambient
    Prometheus scrapes the server's own metrics port (no pilot-agent merges metrics on 15020),
    and under STRICT mTLS only a Prometheus enrolled in ambient can (its ztunnel tunnels the
    scrape as HBONE with Prometheus's identity, which the L4 policy admits on the metrics port
    alone: `ambient_l4_policy`; Istio's Prometheus integration, "TLS settings": with STRICT
    mTLS the scraper needs Istio's certificates). The metrics port itself is opened only
    where a plaintext scrape could pass ztunnel at all: no STRICT mTLS and no L4 policy, which
    admits identities only.
    """
    model = config.models[name]
    waypoints = _namespace_peer(config.namespace, ambient.waypoint_pod_labels())
    ingress: list[dict] = [
        {"from": [waypoints], "ports": _ports([ambient.HBONE_PORT])},
        {
            "from": [{"ipBlock": {"cidr": f"{ambient.PROBE_SNAT_ADDRESS}/32"}}],
            "ports": _ports([server_ports(model)[0].number]),
        },
    ]
    if config.security.metrics_namespaces:
        metrics = _metrics_port(model)
        plaintext = config.mtls_mode() != "STRICT" and not config.authorization_enabled()
        ports = [ambient.HBONE_PORT, *([metrics] if metrics is not None and plaintext else [])]
        ingress.append(_metrics_rule(config, ports))
    return _ingress_policy(config, name, workloads, ingress)


# Where cluster DNS runs (CoreDNS/kube-dns: kube-system on EKS, GKE, AKS and kubeadm).
DNS_NAMESPACE = "kube-system"
# Every TLS destination outside the cluster: the S3 and STS hosts. A NetworkPolicy names
# addresses, never hosts, and S3's addresses are not the stack's to list.
TLS_PORT = 443


def _workload_selector(name: str, workloads: list[str]) -> dict:
    if workloads == [name]:
        return {"matchLabels": {"app": name}}
    return {"matchExpressions": [{"key": "app", "operator": "In", "values": workloads}]}


def ambient_egress_policy(config: StackConfig, name: str, workloads: list[str]) -> dict | None:
    """What can be enforced of `security.restrictEgress` in ambient, and only that.

    ztunnel applies no outbound traffic policy: it forwards a connection to a destination
    outside the registry as it is (istio/istio#54281, istio/ztunnel#369; Istio's
    "Egress gateways" for ambient: enrolling a namespace routes registered hosts through the
    waypoint "but does not prevent direct paths"), so the Sidecar's REGISTRY_ONLY has no
    ambient equivalent in Istio. The CNI's NetworkPolicy still applies to every packet that
    leaves an ambient pod, ztunnel's included ("ambient does not and will never bypass
    Kubernetes NetworkPolicy enforcement": Istio's docs, "Ambient and Kubernetes
    NetworkPolicy"). So the model pods may send only:

    - DNS (UDP and TCP 53) to the cluster's DNS in kube-system;
    - HBONE (15008) to the namespace's waypoint, which carries every call to a Service of the
      namespace and to the store's ServiceEntries (mesh.ambient);
    - the in-cluster store's namespace (`storage.endpoint` a Service of this cluster), on any
      port: ztunnel dials the store's pods (HBONE on 15008 when they are enrolled, else their
      target port, which the stack does not know);
    - IMDS (169.254.169.254/32, TCP 80) with `storage.nodeCredentials`;
    - TCP 443 (and an external `storage.endpoint`'s own port) to any address: the S3 and STS
      endpoints. This rule cannot name hosts: a compromised server can reach any TLS service
      on the internet. `mesh check` says so (MESH0025) and docs/ambient.md says what closes it.

    Everything else (plain HTTP, SSH, a registry on 5000, IMDS without nodeCredentials) is
    dropped by the CNI. Replies to inbound connections are not egress: NetworkPolicy is
    stateful. ztunnel's own connections (istiod, its CA) leave from the ztunnel pod, which
    this policy does not select.
    """
    if not (config.ambient() and config.egress_restricted()):
        return None
    endpoint = config.storage.endpoint
    rules: list[dict] = [
        {
            "to": [_namespace_peer(DNS_NAMESPACE)],
            "ports": [
                {"protocol": "UDP", "port": 53},
                {"protocol": "TCP", "port": 53},
            ],
        },
        {
            "to": [_namespace_peer(config.namespace, ambient.waypoint_pod_labels())],
            "ports": _ports([ambient.HBONE_PORT]),
        },
    ]
    if endpoint is not None and endpoint.in_cluster():
        rules.append({"to": [_namespace_peer(endpoint.host.split(".")[1])]})
    if config.storage.node_credentials:
        rules.append(
            {
                "to": [{"ipBlock": {"cidr": f"{IMDS_ADDRESS}/32"}}],
                "ports": _ports([80]),
            }
        )
    public = [TLS_PORT]
    if endpoint is not None and not endpoint.in_cluster():
        public = sorted({TLS_PORT, endpoint.effective_port()})
    rules.append({"ports": _ports(public)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(f"{name}-egress", config.namespace, COMPONENT, {"app": name}),
        "spec": {
            "podSelector": _workload_selector(name, workloads),
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    }


# Scraped by Prometheus without a sidecar: merged app + Istio metrics from the pilot-agent
# (15020, `/stats/prometheus`, where the injector points the prometheus.io annotations) and
# Envoy's own stats (15090, `http-envoy-prom`). Neither is captured inbound (the injector's
# excludeInboundPorts), so only the NetworkPolicy stands between them and a scraper.
METRICS_PORTS = (15020, 15090)


def _namespace_peer(namespace: str, pods: dict[str, str] | None = None) -> dict:
    peer: dict = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if pods:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return peer


def _ports(numbers) -> list[dict]:
    return [{"protocol": "TCP", "port": number} for number in numbers]


def network_policy(config: StackConfig, name: str, workloads: list[str]) -> dict | None:
    """L3/L4 under the AuthorizationPolicy (Istio's security best practices: defence in depth
    for traffic that bypasses the proxy). Default-deny ingress for the model's pods; the
    ingress gateway pods (its namespace and selector) and the callers' namespaces may reach the
    server's ports, the metrics namespaces the ports Prometheus scrapes. Ports are container
    ports: a NetworkPolicy sees the packet after the Service's DNAT. The kubelet's probes come
    from the node, which NetworkPolicy always admits, and go to 15020 anyway."""
    if not config.network_policy_enabled():
        return None
    if config.ambient():
        return ambient_network_policy(config, name, workloads)
    model = config.models[name]
    # The callers' namespaces, and the loadtester's in Flagger mode (its AuthorizationPolicy
    # then admits it on the canary workload only).
    callers = sorted({c.partition("/")[0] for c in workload_callers(config, name, name)})
    servers = [
        _namespace_peer(config.gateway.namespace, config.gateway_pod_labels()),
        *(_namespace_peer(namespace) for namespace in callers),
    ]
    ingress = [{"from": servers, "ports": _ports(p.number for p in server_ports(model))}]
    if config.security.metrics_namespaces:
        ingress.append(_metrics_rule(config, METRICS_PORTS))
    pickers = picker_peers(config, name)
    if pickers:
        ingress.append({"from": pickers, "ports": _ports([AGENT_METRICS_PORT])})
    return _ingress_policy(config, name, workloads, ingress)


def picker_network_policies(config: StackConfig, name: str) -> list[dict]:
    """Default-deny ingress for each endpoint picker's pods (`<pool>-epp`), as the model pods
    have: they run without a sidecar, so nothing else stands between their ext_proc port
    (which receives every request's body from the gateway) and the rest of the cluster. The
    ingress gateway pods may reach 9002, the metrics namespaces the picker's own metrics on
    9090 (the chart's `metrics` port); the kubelet's gRPC probes on 9003 come from the node."""
    if not config.network_policy_enabled() or not has_pools(config, name):
        return []
    gateway = _namespace_peer(config.gateway.namespace, config.gateway_pod_labels())
    policies = []
    for version in sorted(config.models[name].versions):
        pool = pool_name(name, version)
        ingress = [{"from": [gateway], "ports": _ports([EXT_PROC_PORT])}]
        if config.security.metrics_namespaces:
            ingress.append(_metrics_rule(config, [PICKER_METRICS_PORT]))
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": metadata(
                    picker_name(pool),
                    config.namespace,
                    COMPONENT,
                    {"app": name, "version": version},
                ),
                "spec": {
                    "podSelector": {"matchLabels": picker_pod_labels(pool)},
                    "policyTypes": ["Ingress"],
                    "ingress": ingress,
                },
            }
        )
    return policies


def picker_peers(config: StackConfig, name: str) -> list[dict]:
    """The model's endpoint picker pods (one per version's pool, in the serving namespace),
    which scrape the servers through the pilot-agent's :15020 (mesh/gatewayapi/pools.py)."""
    if not has_pools(config, name):
        return []
    return [
        {"podSelector": {"matchLabels": picker_pod_labels(pool_name(name, version))}}
        for version in sorted(config.models[name].versions)
    ]


def model_security_objects(config: StackConfig, name: str) -> list[dict]:
    """Flagger runs a model as two workloads, `<m>` (the canary) and `<m>-primary`: both get
    the model's policy, or the primary would be open to every workload of the mesh; only the
    canary's admits the loadtester (`workload_callers`)."""
    workloads = [name, f"{name}-primary"] if config.models[name].progressive else [name]
    policies = [authorization_policy(config, name, workload) for workload in workloads]
    if config.ambient() and config.authorization_enabled():
        if config.models[name].progressive:
            policies += flagger_l7_policies(config, name)
        else:
            policies.append(ambient_l7_policy(config, name))
    policies.append(network_policy(config, name, workloads))
    policies.append(ambient_egress_policy(config, name, workloads))
    policies += picker_network_policies(config, name)
    return [policy for policy in policies if policy is not None]
