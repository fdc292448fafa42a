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
"""

from __future__ import annotations

from mesh.config import LLM_SERVERS, Model, StackConfig
from mesh.egress import service_entry_hosts
from mesh.k8s import istio_networking, metadata
from models.presets import server_ports

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
    if not config.egress_restricted():
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


def namespace_security_objects(config: StackConfig) -> list[dict]:
    return [obj for obj in (peer_authentication(config), sidecar(config)) if obj is not None]


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
    own pods, or the `<m>-primary` copies Flagger makes)."""
    if not config.authorization_enabled():
        return None
    workload = workload or name
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
    model = config.models[name]
    # The callers' namespaces, and the loadtester's in Flagger mode (its AuthorizationPolicy
    # then admits it on the canary workload only).
    callers = sorted({c.partition("/")[0] for c in workload_callers(config, name, name)})
    servers = [
        _namespace_peer(config.gateway.namespace, config.gateway_pod_labels()),
        *(_namespace_peer(namespace) for namespace in callers),
    ]
    selector = (
        {"matchLabels": {"app": name}}
        if workloads == [name]
        else {"matchExpressions": [{"key": "app", "operator": "In", "values": workloads}]}
    )
    ingress = [{"from": servers, "ports": _ports(p.number for p in server_ports(model))}]
    if config.security.metrics_namespaces:
        ingress.append(
            {
                "from": [_namespace_peer(n) for n in config.security.metrics_namespaces],
                "ports": _ports(METRICS_PORTS),
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}),
        "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def model_security_objects(config: StackConfig, name: str) -> list[dict]:
    """Flagger runs a model as two workloads, `<m>` (the canary) and `<m>-primary`: both get
    the model's policy, or the primary would be open to every workload of the mesh; only the
    canary's admits the loadtester (`workload_callers`)."""
    workloads = [name, f"{name}-primary"] if config.models[name].progressive else [name]
    policies = [authorization_policy(config, name, workload) for workload in workloads]
    policies.append(network_policy(config, name, workloads))
    return [policy for policy in policies if policy is not None]
