"""What a stack promises, as journeys that `mesh.trace` follows through the stack's objects.

A journey is a source, a request and what must happen: `ok` (it must work), `refused` (it must
not: an unknown caller, an admin API, an unregistered host under the egress lock-down) or
nothing (shown for information: e.g. IMDS where the pods have other credentials). The journeys
come from the config (hosts, ports, match rules, callers, the store, credentials, telemetry);
the answers come only from the objects, so a builder that breaks a promise fails its journey.

- ingress: per model host, REST and gRPC over HTTPS and HTTP (with the redirect), a request of
  each A/B rule (it must reach the rule's version), the mirrored copy, an admin API, and a
  host nobody serves;
- in-mesh: each `callers` entry with and without a sidecar, and an unknown caller;
- pods: every container that talks to the store (S3 as its SDK addresses it, STS for IAM roles,
  IMDS when nothing else gives credentials), a host outside the registry, the proxy's
  tracing collector, Prometheus scraping the pod, the kubelet's probes;
- Flagger: the loadtester calling `<m>-canary`, and the gateway through Flagger's routes;
- pools (`inferencePool`): per version, the endpoint picker scraping each pod of its pool on
  the pilot-agent's :15020 (it must work), the picker scraping the server port's `/metrics` in
  plaintext (it must not: why the design scrapes 15020), and the gateway's ext_proc call to the
  picker (it must work).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Literal

import re2

from mesh.config import LLM_SERVERS, MatchRule, Model, StackConfig
from mesh.gatewayapi.common import (
    AGENT_METRICS_PATH,
    AGENT_METRICS_PORT,
    has_pools,
    picker_name,
    pool_name,
)
from mesh.plan import build_plan
from mesh.security import METRICS_PORTS
from mesh.trace import Objects, Request, Trace, Workload, pools, proxy_cluster, trace, trace_process
from mesh.trace.apiroutes import ext_proc_trace
from mesh.trace.flagger import expand
from mesh.trace.model import MeshSettings, Outcome, Step, pool_of
from mesh.trace.objects import Pod, d, items, name_of, spec_of, svc_fqdn
from mesh.trace.simulate import pod_source
from mesh.trace.upstream import deliver_to_port, peer_authentication_mode
from models.presets import downloads_model, server_ports
from models.workloads import FETCH_CONTAINER, SERVER_CONTAINER

Expect = Literal["ok", "refused"] | None
UNKNOWN_CALLER = ("other-team", "default")
UNREGISTERED = "registry.example.org"
IMDS = "169.254.169.254"
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"


@dataclass(frozen=True)
class Journey:
    group: Literal["ingress", "mesh", "pod", "flagger", "pool"]
    model: str
    name: str
    expect: Expect
    trace: Trace
    subset: str | None = None  # the version a match rule must reach
    port: int | None = None  # the container port it must reach
    mirrored: bool = False  # the mirrored copy must be served too

    @property
    def passed(self) -> bool:
        if self.expect is None:
            return True
        if self.expect == "refused":
            return not self.trace.ok
        if not self.trace.ok:
            return False
        live = [b for b in self.trace.branches if b.kind == "route" and b.share > 0]
        if self.mirrored:
            copies = [b for b in self.trace.branches if b.kind == "mirror"]
            if not copies or not all(b.outcome.ok for b in copies):
                return False
        if self.subset and any(self.version(b) != self.subset for b in live):
            return False
        return not (self.port and any(b.container_port != self.port for b in live))

    def version(self, branch) -> str | None:
        """The version a branch reaches: its subset (VirtualService routing), else the version
        of the per-version Service `<model>-<version>` it was sent to (Gateway API routing), or
        of the pool `<model>-<version>` whose shadow Service it was sent to."""
        if branch.subset:
            return branch.subset
        name = (branch.host or "").split(".", 1)[0]
        name = pool_of(name) or name
        prefix = f"{self.model}-"
        return name[len(prefix) :] if name.startswith(prefix) else None

    def problem(self) -> str:
        """Why a failed journey failed, for the person at the terminal."""
        if self.expect == "refused":
            return f"{self.name}: expected a refusal, but it works ({self.trace.final().detail})"
        final = self.trace.final()
        if not self.trace.ok:
            return f"{self.name}: {final.verdict}: {final.detail}"
        live = [b for b in self.trace.branches if b.kind == "route" and b.share > 0]
        reached = ", ".join(f"{self.version(b)}:{b.container_port}" for b in live)
        return f"{self.name}: reaches {reached}, expected {self.subset or ''}:{self.port or ''}"


# --- tracing now or when asked -------------------------------------------------------------

# Set while `journeys(..., traced=False)` asks its questions: each trace is taken only when a
# reader first looks at it (see `DeferredTrace`).
_DEFERRED: ContextVar[bool] = ContextVar("deferred_traces", default=False)


class DeferredTrace:
    """A trace taken on first use: every attribute of the Trace, computed once. `mesh diff`
    counts the journeys of a model that no change can reach without tracing them (their
    answer is the same on both sides); anything that reads one still gets the real trace."""

    __slots__ = ("_call", "_result")

    def __init__(self, call: Callable[[], Trace]):
        self._call = call
        self._result: Trace | None = None

    def resolved(self) -> Trace:
        if self._result is None:
            self._result = self._call()
        return self._result

    def __getattr__(self, name: str):
        return getattr(self.resolved(), name)


def _run(function: Callable[..., Trace], *args) -> Trace:
    """`function(*args)` now, or deferred while `journeys(..., traced=False)` runs."""
    if _DEFERRED.get():
        return DeferredTrace(lambda: function(*args))  # type: ignore[return-value]
    return function(*args)


# --- sources -------------------------------------------------------------------------------


def gateway_workload(config: StackConfig, objects: Objects) -> Workload:
    """The ingress gateway pods: the selector's labels in `gateway.namespace`, running as the
    install's service account. When the traced objects include the gateway's Deployment
    (`--with` a `kubectl get deploy -n istio-system -o yaml`), its serviceAccountName is the
    truth; otherwise the one the stack derives (`StackConfig.gateway_service_account`, from
    the Helm charts' conventions), which is also what the policies admit. In gateway-api
    routing Istio deploys the Gateway's pods itself, labelled
    `gateway.networking.k8s.io/gateway-name: <name>` (pilot/pkg/config/kube/gatewaycommon/
    deploymentcontroller.go), running as `<name>-istio`."""
    labels = config.gateway_pod_labels()
    installed = objects.pods_for(config.gateway.namespace, labels)
    account = installed[0].service_account if installed else config.gateway_service_account()
    return Workload(
        namespace=config.gateway.namespace,
        service_account=account,
        labels=tuple(sorted((installed[0].labels if installed else labels).items())),
        gateway=True,
        name=labels.get("app", config.gateway.name),
    )


def mesh_sidecar(config: StackConfig) -> str:
    """How a caller in the stack's mesh is captured: its sidecar, or ztunnel in ambient."""
    return "ambient" if config.ambient() else "classic"


def caller_workload(reference: str, sidecar: str = "classic") -> Workload:
    namespace, _, account = reference.partition("/")
    return Workload(namespace, account, sidecar=sidecar, name=account)  # type: ignore[arg-type]


# --- requests ------------------------------------------------------------------------------


def rest_request(name: str, model: Model, host: str, port: int, tls: bool) -> Request:
    """An inference call of the model's REST API."""
    if model.server == "tensorflow-serving":
        path = f"/v1/models/{name}:predict"
    elif model.server == "triton":
        path = f"/v2/models/{name}/infer"
    elif model.server in LLM_SERVERS:
        path = "/v1/chat/completions"
    else:
        assert model.custom is not None
        paths = model.custom.inference_paths or ["/"]
        path = paths[0].rstrip("*") or "/"
    return Request(port=port, host=host, tls=tls, method="POST", path=path)


def grpc_request(model: Model, host: str, port: int, tls: bool) -> Request:
    path = {
        "tensorflow-serving": "/tensorflow.serving.PredictionService/Predict",
        "triton": "/inference.GRPCInferenceService/ModelInfer",
    }.get(model.server, "/grpc.health.v1.Health/Check")
    return Request(port=port, host=host, tls=tls, protocol="grpc", method="POST", path=path)


def admin_request(name: str, model: Model, host: str, port: int, tls: bool) -> Request | None:
    """A management API the policy must keep closed."""
    if model.server == "triton":
        path = f"/v2/repository/models/{name}/load"
        return Request(port=port, host=host, tls=tls, method="POST", path=path)
    if model.server == "tensorflow-serving" and len(server_ports(model)) > 1:
        return None  # TF Serving's only admin call is gRPC (see admin_grpc_request)
    if model.server in LLM_SERVERS:
        # Loads weights into the serving engine: vLLM's LoRA route (with
        # VLLM_ALLOW_RUNTIME_LORA_UPDATING), SGLang's weight reload (always served).
        path = "/v1/load_lora_adapter" if model.server == "vllm" else "/update_weights_from_disk"
        return Request(port=port, host=host, tls=tls, method="POST", path=path)
    if model.custom is not None and model.custom.inference_paths:
        return Request(port=port, host=host, tls=tls, method="POST", path="/admin")
    return None


def sample_header(condition: dict[str, str]) -> str | None:
    """A header value that satisfies an Istio StringMatch (exact, prefix or an RE2 regex whose
    optional groups can be left out), or None when no simple value does."""
    if "exact" in condition:
        return condition["exact"]
    if "prefix" in condition:
        return condition["prefix"] + "x"
    pattern = condition["regex"]
    candidate = pattern
    while True:
        reduced = re2.sub(r"\([^()]*\)\?", "", candidate)
        if reduced == candidate:
            break
        candidate = reduced
    candidate = candidate.strip("^$").replace("(", "").replace(")", "").replace(".*", "")
    return candidate if re2.fullmatch(pattern, candidate) else None


def rule_headers(rule: MatchRule) -> tuple[tuple[str, str], ...] | None:
    values = []
    for header, condition in rule.istio_headers().items():
        value = sample_header(condition)
        if value is None:
            return None
        values.append((header, value))
    return tuple(values)


# --- journeys ------------------------------------------------------------------------------


def ingress_journeys(config: StackConfig, objects: Objects, name: str) -> list[Journey]:
    model = config.models[name]
    gateway = gateway_workload(config, objects)
    ports = server_ports(model)
    grpc = next((p.number for p in ports if p.app_protocol == "grpc"), None)
    rest_port = ports[0].number
    tls = config.gateway.tls is not None
    redirect = tls and config.gateway.tls.https_redirect  # type: ignore[union-attr]
    secured = config.authorization_enabled()
    found: list[Journey] = []

    def add(label: str, request: Request, expect: Expect, **extra) -> None:
        found.append(
            Journey("ingress", name, label, expect, _run(trace, objects, gateway, request), **extra)
        )

    hosts = config.model_hosts(name)
    schemes = [("https", 443, True)] if tls else []
    schemes.append(("http", 80, False))
    for host in hosts:
        for scheme, port, over_tls in schemes:
            redirected = scheme == "http" and redirect
            add(
                f"REST {scheme} {host}",
                rest_request(name, model, host, port, over_tls),
                "ok",
                port=None if redirected else rest_port,
            )
            if grpc is not None and model.progressive is None:
                # gRPC clients do not follow the redirect: plain gRPC must fail there.
                add(
                    f"gRPC {scheme} {host}",
                    grpc_request(model, host, port, over_tls),
                    "refused" if redirected else "ok",
                    port=None if redirected else grpc,
                )
    # What the routes decide is the same on every host: the first one shows it.
    host, main_port, main_tls = hosts[0], schemes[0][1], schemes[0][2]
    for rule, match in model.ordered_matches():
        headers = rule_headers(match)
        request = rest_request(name, model, host, main_port, main_tls)
        if headers is None:
            # Shown, not skipped: the person reading the table learns the rule went untested.
            found.append(
                Journey(
                    "ingress",
                    name,
                    f"match {rule} {host}",
                    None,
                    Trace(
                        gateway,
                        request,
                        (),
                        Outcome(
                            "unmodelled",
                            "no simple header value satisfies the rule's regex; ask with "
                            "`mesh trace --request ... -H 'name: value'`",
                        ),
                    ),
                )
            )
            continue
        add(
            f"match {rule} {host}",
            replace(request, headers=headers),
            "ok",
            subset=match.version,
            port=rest_port,
        )
    if model.mirror is not None and model.mirror.percent > 0:
        add(
            f"mirror {host}",
            rest_request(name, model, host, main_port, main_tls),
            "ok",
            mirrored=True,
        )
    if secured:
        admin = admin_request(name, model, host, main_port, main_tls)
        if admin is not None:
            add(f"admin API {admin.path}", admin, "refused")
        if model.server == "tensorflow-serving" and grpc is not None:
            path = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
            reload = Request(
                port=main_port, host=host, tls=main_tls, protocol="grpc", method="POST", path=path
            )
            add("admin API gRPC HandleReloadConfigRequest", reload, "refused")
    unknown = f"unknown.{config.gateway.domain}"
    add(
        f"unserved host {unknown}",
        rest_request(name, model, unknown, 443 if tls else 80, tls),
        "refused",
    )
    return found


def mesh_journeys(config: StackConfig, objects: Objects, name: str) -> list[Journey]:
    model = config.models[name]
    ports = server_ports(model)
    host = config.service_host(name)
    strict = config.mtls_mode() == "STRICT"
    secured = config.authorization_enabled()
    found: list[Journey] = []
    callers = list(model.callers)
    captured = mesh_sidecar(config)
    outside = "outside the mesh" if config.ambient() else "without sidecar"
    for caller in callers:
        for port in ports:
            source = caller_workload(caller, captured)
            request = (
                grpc_request(model, host, port.number, False)
                if port.app_protocol == "grpc"
                else rest_request(name, model, host, port.number, False)
            )
            kind = "gRPC" if port.app_protocol == "grpc" else "REST"
            found.append(
                Journey(
                    "mesh",
                    name,
                    f"{kind} from {caller}",
                    "ok",
                    _run(trace, objects, source, request),
                    port=port.number,
                )
            )
        bare = caller_workload(caller, sidecar="none")
        request = rest_request(name, model, host, ports[0].number, False)
        expect: Expect = "refused" if (strict or secured) else "ok"
        found.append(
            Journey(
                "mesh",
                name,
                f"REST from {caller} {outside}",
                expect,
                _run(trace, objects, bare, request),
            )
        )
    stranger = Workload(*UNKNOWN_CALLER, sidecar=captured, name="unknown caller")  # type: ignore[arg-type]
    request = rest_request(name, model, host, ports[0].number, False)
    found.append(
        Journey(
            "mesh",
            name,
            f"REST from {'/'.join(UNKNOWN_CALLER)} (not a caller)",
            "refused" if secured else "ok",
            _run(trace, objects, stranger, request),
        )
    )
    return found


def _store_request(config: StackConfig, container: str, model: Model) -> tuple[str, Request]:
    """The first request a container makes to the model store, as its SDK addresses it: the
    AWS CLI v2 (botocore) virtual-hosted and regional by default, path style with
    `--endpoint-url`; Triton's S3 client always path style (triton-inference-server/core
    src/filesystem/implementations/s3.h, `S3FileSystem`: `/*useVirtualAdressing*/ false`)."""
    storage = config.storage
    endpoint = storage.endpoint
    if endpoint is not None:
        request = Request(
            port=endpoint.effective_port(),
            host=endpoint.host,
            tls=endpoint.tls,
            path=f"/{storage.bucket}/",
        )
        return f"store {endpoint.host}:{endpoint.effective_port()}", request
    if container == SERVER_CONTAINER and model.server == "triton":
        host = f"s3.{storage.region}.amazonaws.com"
        return f"S3 path-style {host}", Request(port=443, host=host, tls=True)
    host = f"{storage.bucket}.s3.{storage.region}.amazonaws.com"
    return f"S3 virtual-hosted regional {host}", Request(port=443, host=host, tls=True)


def _other_s3_hosts(config: StackConfig, used: str) -> list[tuple[str, str]]:
    """The S3 addressing styles the SDK does not use here, shown for information: a client
    configured differently (path style, the global endpoint) meets these."""
    if config.storage.endpoint is not None:
        return []
    bucket, region = config.storage.bucket, config.storage.region
    styles = [
        ("virtual-hosted regional", f"{bucket}.s3.{region}.amazonaws.com"),
        ("virtual-hosted global", f"{bucket}.s3.amazonaws.com"),
        ("path-style regional", f"s3.{region}.amazonaws.com"),
        ("path-style global", "s3.amazonaws.com"),
    ]
    return [(style, host) for style, host in styles if host != used]


def pod_journeys(config: StackConfig, objects: Objects, name: str) -> list[Journey]:
    model = config.models[name]
    found: list[Journey] = []
    store_reader = FETCH_CONTAINER if downloads_model(model) else SERVER_CONTAINER
    credentials = model.role_arn is not None or config.storage.credentials_secret is not None
    restricted = config.egress_restricted()
    for pod in _model_pods(objects, config, name):
        label = pod.workload.split("/", 1)[1]

        def add(what: str, expect: Expect, result: Trace, _label: str = label) -> None:
            found.append(Journey("pod", name, f"{_label} {what}", expect, result))

        what, request = _store_request(config, store_reader, model)
        add(
            f"{store_reader} → {what}",
            "ok",
            _run(trace_process, objects, pod, store_reader, request),
        )
        for style, host in _other_s3_hosts(config, request.host):
            other = Request(port=443, host=host, tls=True)
            add(
                f"{store_reader} → S3 {style} {host}",
                None,
                _run(trace_process, objects, pod, store_reader, other),
            )
        if model.role_arn is not None:
            sts = Request(port=443, host=f"sts.{config.storage.region}.amazonaws.com", tls=True)
            add(
                f"{store_reader} → STS (IAM role)",
                "ok",
                _run(trace_process, objects, pod, store_reader, sts),
            )
        imds = Request(port=80, host=IMDS, method="PUT", path="/latest/api/token")
        add(
            f"{store_reader} → IMDS {IMDS}",
            None if credentials else "ok",
            _run(trace_process, objects, pod, store_reader, imds),
        )
        ambient = objects.sidecar_mode(pod) == "ambient"
        for what, expect, request in _unregistered(restricted, ambient):
            add(
                f"{SERVER_CONTAINER} → {what}",
                expect,
                _run(trace_process, objects, pod, SERVER_CONTAINER, request),
            )
        for what, collector in (
            ("tracing", config.telemetry.tracing.collector),
            ("access logs", config.telemetry.access_logging.collector),
        ):
            if collector is not None and not ambient:  # no istio-proxy in an ambient pod
                add(
                    f"istio-proxy → {what} collector {collector.host}",
                    "ok",
                    _run(proxy_cluster, objects, pod, collector.host, collector.port),
                )
        for namespace in config.security.metrics_namespaces[:1]:
            if ambient:
                enrolled = config.mtls_mode() == "STRICT" or config.authorization_enabled()
                found.extend(_ambient_scrape(name, label, objects, pod, namespace, enrolled))
                continue
            found.append(
                Journey(
                    "pod",
                    name,
                    f"{label} Prometheus ({namespace}) scrape :15020",
                    "ok",
                    _run(scrape, objects, pod, namespace, METRICS_PORTS[0]),
                )
            )
        found.append(
            Journey(
                "pod", name, f"{label} kubelet readiness probe", "ok", _run(probe, objects, pod)
            )
        )
    return found


def _unregistered(restricted: bool, ambient: bool) -> list[tuple[str, Expect, Request]]:
    """A server calling a host outside the registry, and what the stack promises of it.

    With sidecars, REGISTRY_ONLY refuses it whatever the port. In ambient nothing in Istio
    does (ztunnel applies no outbound traffic policy: istio/istio#54281); what the stack
    enforces is the egress NetworkPolicy (mesh.security.ambient_egress_policy), which names
    ports and addresses, never hosts: TLS to any address stays open (shown, not promised:
    `mesh check` warns MESH0025), any other port is refused."""
    tls = Request(port=443, host=UNREGISTERED, tls=True)
    if not ambient:
        return [(f"{UNREGISTERED} (not registered)", "refused" if restricted else None, tls)]
    plain = Request(port=80, host=UNREGISTERED)
    return [
        (f"{UNREGISTERED}:443 (not registered; no policy can name the host)", None, tls),
        (f"{UNREGISTERED}:80 (not registered)", "refused" if restricted else None, plain),
    ]


def _model_pods(objects: Objects, config: StackConfig, name: str) -> list[Pod]:
    """The ready pods of the stack's namespace whose `app` label is the model's name or its
    Flagger primary's (`<name>-primary`), in the order of `objects.pods`. The pods are indexed
    by `app` once per namespace (kept in `objects.memo`, as the trace keeps its lookups), not
    scanned once per model: a stack's journeys ask this for every model."""
    key = ("model_pods", config.namespace)
    index = objects.memo.get(key)
    if index is None:
        index = {}
        for position, pod in enumerate(objects.pods):
            if pod.namespace == config.namespace and pod.ready:
                index.setdefault(pod.labels.get("app"), []).append((position, pod))
        objects.memo[key] = index
    own, primary = index.get(name, []), index.get(f"{name}-primary", [])
    return [pod for _, pod in (sorted(own + primary) if own and primary else own or primary)]


def scrape(
    objects: Objects,
    pod: Pod,
    namespace: str,
    port: int,
    path: str = "/stats/prometheus",
    enrolled: bool = False,
) -> Trace:
    """Prometheus scraping the pod's merged metrics on the agent port (no sidecar), or, in
    ambient, the application's metrics port: `enrolled`, Prometheus's namespace is in ambient
    too, so its ztunnel tunnels the scrape of the pod's address as HBONE with Prometheus's
    identity (a pod address has no waypoint: waypoints take Service traffic); otherwise a
    plaintext scrape."""
    source = Workload(
        namespace,
        "prometheus",
        (("app.kubernetes.io/name", "prometheus"),),
        sidecar="ambient" if enrolled else "none",  # type: ignore[arg-type]
        name="prometheus",
    )
    request = Request(port=port, host=pod.workload, path=path)
    found = pod.container_port(port)
    container = found[0] if found else None
    first = (
        [Step("ztunnel", f"{namespace} is in ambient: ztunnel tunnels the scrape (HBONE)")]
        if enrolled
        else []
    )
    outcome, _, _, steps = deliver_to_port(
        objects, source, pod, container, port, "http", request, mtls=enrolled, steps=first
    )
    if outcome.ok and objects.sidecar_mode(pod) != "ambient":
        outcome = Outcome("served", "pilot-agent serves the merged app and Envoy metrics")
    return Trace(source, request, tuple(steps), outcome)


SCRAPE_PORT = "prometheus.io/port"
SCRAPE_PATH = "prometheus.io/path"


def _ambient_scrape(
    name: str, label: str, objects: Objects, pod: Pod, namespace: str, enrolled: bool
):
    """An ambient pod has no pilot-agent to merge metrics on :15020: Prometheus scrapes the
    port the pod's `prometheus.io/port` annotation names, through the pod's ztunnel. Under
    STRICT mTLS, or with the L4 policy (which admits identities only), that takes a Prometheus
    enrolled in ambient (`enrolled`; Istio's Prometheus integration, "TLS settings": with
    STRICT mTLS the scraper needs Istio's certificates, which ztunnel gives an enrolled pod):
    docs/ambient.md states it as a prerequisite of `security.metricsNamespaces`."""
    port = pod.annotations.get(SCRAPE_PORT)
    if port is None or not port.isdigit():
        return []
    path = pod.annotations.get(SCRAPE_PATH, "/metrics")
    how = ", enrolled in ambient" if enrolled else ""
    return [
        Journey(
            "pod",
            name,
            f"{label} Prometheus ({namespace}{how}) scrape :{port}",
            "ok",
            _run(scrape, objects, pod, namespace, int(port), path, enrolled),
        )
    ]


def probe(objects: Objects, pod: Pod) -> Trace:
    """The kubelet's readiness probe of the server container. With a sidecar, the injector
    rewrites HTTP probes to the agent, `:15020/app-health/<container>/readyz`, unless the pod
    says `sidecar.istio.io/rewriteAppHTTPProbers: "false"` (the mesh default
    `sidecarInjectorWebhook.rewriteAppHTTPProbe` is true; pkg/kube/inject/app_probe.go
    `ShouldRewriteAppHTTPProbers`, `patchRewriteProbe`); 15020 is not captured. A probe that is
    not rewritten meets the inbound sidecar in plaintext. Node traffic passes NetworkPolicy."""
    source = Workload("kube-node", "kubelet", sidecar="none", name="kubelet")
    server = next(c for c in pod.containers() if c.get("name") == SERVER_CONTAINER)
    readiness = server.get("readinessProbe") or {}
    get = readiness.get("httpGet")
    if get is None:
        kind = next(iter(readiness), "no probe")
        return Trace(
            source,
            Request(port=0, host=pod.workload),
            (),
            Outcome("served", f"{kind}: not an HTTP call through the network"),
        )
    found = pod.container_port(get.get("port"))
    number = found[1] if found else 0
    if objects.sidecar_mode(pod) == "ambient":
        # The CNI SNATs the kubelet's probes to 169.254.7.127 and its in-pod rules accept
        # them before ztunnel (cni/pkg/iptables/iptables.go, the probe ACCEPT rule).
        request = Request(port=number, host=pod.workload, path=str(get.get("path", "/")))
        return Trace(
            source,
            request,
            (Step("probe", "SNATed to 169.254.7.127: let through by the in-pod rules"),),
            Outcome("served", "the kubelet calls the server; ztunnel does not see the probe"),
        )
    sidecar = objects.sidecar_mode(pod) != "none"
    rewritten = sidecar and pod.annotations.get(REWRITE_PROBES, "true") != "false"
    if rewritten:
        request = Request(
            port=15020, host=pod.workload, path=f"/app-health/{SERVER_CONTAINER}/readyz"
        )
        steps = (Step("probe", "rewritten to the pilot-agent (not captured, node traffic)"),)
        return Trace(
            source,
            request,
            steps,
            Outcome(
                "served",
                f"pilot-agent calls {get.get('path')} on port {number} from inside the pod",
            ),
        )
    request = Request(port=number, host=pod.workload, path=str(get.get("path", "/")))
    if not sidecar:
        return Trace(source, request, (), Outcome("served", "the kubelet calls the server"))
    mode, why = peer_authentication_mode(objects, pod, number)
    if mode == "STRICT":
        return Trace(
            source,
            request,
            (Step("mtls", why),),
            Outcome("reset", "the plaintext probe meets STRICT mTLS"),
        )
    return Trace(source, request, (), Outcome("served", f"{mode} accepts the plaintext probe"))


def flagger_journeys(config: StackConfig, objects: Objects, name: str) -> list[Journey]:
    model = config.models[name]
    progressive = model.progressive
    if progressive is None or progressive.load_test is None:
        return []
    caller = progressive.load_test.caller()
    source = Workload(
        caller.partition("/")[0],
        caller.partition("/")[2],
        (("app", "loadtester"),),
        sidecar=mesh_sidecar(config),  # type: ignore[arg-type]
        name="flagger-loadtester",
    )
    host = f"{name}-canary.{config.namespace}"
    request = rest_request(name, model, host, server_ports(model)[0].number, False)
    return [
        Journey(
            "flagger",
            name,
            f"loadtester {caller} → {host}",
            "ok",
            _run(trace, objects, source, request),
        )
    ]


def pool_journeys(config: StackConfig, objects: Objects, name: str) -> list[Journey]:
    """The pools' own traffic, per version, read from the objects: the InferencePool `<m>-<v>`,
    the picker Service its endpointPickerRef names and the pods that Service selects, the pods
    the pool selects and its first target port.

    - `picker <p> scrape <pod> :15020`: the picker (no sidecar) reads the pilot-agent's merged
      metrics; 15020 is not captured, the model's NetworkPolicy must admit the picker pods;
    - `picker <p> scrape of the server port <pod> :<port>/metrics`: the same read of the
      server's own port in plaintext: the NetworkPolicy admits the picker on 15020 only, and
      STRICT mTLS at the server's sidecar refuses plaintext: refused;
    - `gateway → picker <p>:<port>`: the Gateway's ext_proc call (mesh.trace.apiroutes
      `ext_proc_trace`): TLS SIMPLE per the chart's DestinationRule, to pods without a sidecar.
    """
    if not has_pools(config, name):
        return []
    found: list[Journey] = []
    namespace = config.namespace
    gateway = gateway_workload(config, objects)
    for version in sorted(config.models[name].versions):
        pool_id = pool_name(name, version)
        pool = next(
            (p for p in objects.kind(pools.POOL_KIND, namespace) if name_of(p) == pool_id), None
        )
        spec = spec_of(pool or {})
        ref = d(spec.get("endpointPickerRef"))
        picker = str(ref.get("name") or picker_name(pool_id))
        service = objects.services.get(svc_fqdn(picker, namespace))
        picker_pods = [p for p in objects.endpoints(service) if p.ready] if service else []
        targets = [d(t).get("number") for t in items(spec.get("targetPorts"))]
        servers = [
            p
            for p in objects.pods_for(namespace, d(d(spec.get("selector")).get("matchLabels")))
            if p.ready
        ]
        if pool is None or not picker_pods or not servers or not targets:
            missing = (
                f"no InferencePool {namespace}/{pool_id}"
                if pool is None
                else f"no pod of Service {namespace}/{picker}"
                if not picker_pods
                else "no pod of the pool"
            )
            found.append(
                Journey(
                    "pool",
                    name,
                    f"picker {picker} scrape :{AGENT_METRICS_PORT}",
                    "ok",
                    Trace(
                        Workload(namespace, picker, sidecar="none", name=picker),
                        Request(port=AGENT_METRICS_PORT, host=pool_id, path=AGENT_METRICS_PATH),
                        (),
                        Outcome("refused", missing),
                    ),
                )
            )
            continue
        source = picker_pods[0]
        for server in servers:
            label = server.workload.split("/", 1)[1]
            found.append(
                Journey(
                    "pool",
                    name,
                    f"picker {picker} scrape {label} :{AGENT_METRICS_PORT}",
                    "ok",
                    _run(
                        pod_scrape, objects, source, server, AGENT_METRICS_PORT, AGENT_METRICS_PATH
                    ),
                )
            )
            found.append(
                Journey(
                    "pool",
                    name,
                    f"picker {picker} scrape of the server port {label} :{targets[0]}/metrics",
                    "refused",
                    _run(pod_scrape, objects, source, server, int(targets[0]), "/metrics"),
                )
            )
        port = d(ref.get("port")).get("number")
        caller = pools.Picker(pool_id, namespace, picker, int(port or 0), pools.failure_mode(pool))
        found.append(
            Journey(
                "pool",
                name,
                f"gateway → picker {picker}:{port}",
                "ok",
                _run(ext_proc_trace, objects, gateway, caller),
            )
        )
        # Anyone else: the picker has no sidecar, so only its NetworkPolicy (protected stacks,
        # mesh.security `picker_network_policies`) keeps the rest of the cluster off its
        # ext_proc port.
        stranger = Workload(*UNKNOWN_CALLER, sidecar="none", name="unknown caller")  # type: ignore[arg-type]
        found.append(
            Journey(
                "pool",
                name,
                f"{'/'.join(UNKNOWN_CALLER)} → picker {picker}:{port}",
                "refused" if config.network_policy_enabled() else "ok",
                _run(ext_proc_trace, objects, stranger, caller),
            )
        )
    return found


def pod_scrape(objects: Objects, source_pod: Pod, pod: Pod, port: int, path: str) -> Trace:
    """One pod reading another's metrics by pod address, as the picker's metrics data source
    does (`http://<pod IP>:<port><path>`). A source without a sidecar speaks plaintext; a
    source with one is not modelled (its sidecar would send the pod address through its
    outbound listeners)."""
    source = pod_source(objects, source_pod)
    request = Request(port=port, host=pod.workload, path=path)
    if source.sidecar != "none":
        return Trace(
            source,
            request,
            (),
            Outcome("unmodelled", f"the scraping pod has a sidecar ({source.sidecar})"),
        )
    found = pod.container_port(port)
    container = found[0] if found else None
    steps = [Step("capture", "no sidecar: plaintext to the pod address")]
    outcome, _, _, steps = deliver_to_port(
        objects, source, pod, container, port, "http", request, mtls=False, steps=steps
    )
    if outcome.ok and port == AGENT_METRICS_PORT and objects.sidecar_mode(pod) != "none":
        outcome = Outcome("served", "pilot-agent serves the merged app and Envoy metrics")
    return Trace(source, request, tuple(steps), outcome)


def mesh_settings(config: StackConfig | None) -> MeshSettings:
    """What the trace assumes of the mesh, from the stack's `platform`: Istio CNI (pod iptables
    before any container, so a classic pod's init container not running as UID 1337 is
    refused), and istiod's ENABLE_NATIVE_SIDECARS default for pods without the per-pod
    annotation (`Platform.istiod_native_by_default`)."""
    if config is None:
        return MeshSettings()
    platform = config.platform
    return MeshSettings(
        cni=platform.istio_cni, native_sidecars_default=platform.istiod_native_by_default()
    )


def stack_objects(config: StackConfig, extra: list[dict] | None = None) -> Objects:
    """The objects the cluster will hold (the plan's and those its Helm charts create, as
    mesh.charts models them: `Plan.cluster_objects`), plus any from the cluster, with what
    Flagger and istiod (the InferencePools' shadow Services) would create, on the mesh the
    stack's platform describes."""
    objects = pools.expand(expand([*build_plan(config).cluster_objects(), *(extra or [])]))
    return Objects(objects, mesh_settings(config))


def journeys(
    config: StackConfig,
    extra: list[dict] | None = None,
    objects: Objects | None = None,
    models: Collection[str] | None = None,
    traced: bool = True,
) -> list[Journey]:
    """Every journey `config` promises, traced through `objects` (default: the stack's own
    plan, plus `extra`). `mesh diff` asks the same questions of the base's objects. `models`
    limits the journeys to those models' own; `traced=False` asks the questions and takes each
    trace only when it is first read (`DeferredTrace`)."""
    objects = objects if objects is not None else stack_objects(config, extra)
    found: list[Journey] = []
    token = _DEFERRED.set(not traced)
    try:
        for name in sorted(config.models):
            if models is not None and name not in models:
                continue
            found += ingress_journeys(config, objects, name)
            found += mesh_journeys(config, objects, name)
            found += flagger_journeys(config, objects, name)
            found += pod_journeys(config, objects, name)
            found += pool_journeys(config, objects, name)
    finally:
        _DEFERRED.reset(token)
    return found


# --- output --------------------------------------------------------------------------------


def _policy(result: Trace) -> str:
    for branch in result.branches:
        for step in branch.steps:
            if step.at == "authz" and not step.detail.startswith("-"):
                return step.detail.split(":", 1)[0]
    return "-"


def _port(result: Trace) -> str:
    ports = sorted({b.container_port for b in result.branches if b.container_port})
    return ",".join(str(p) for p in ports) or "-"


def row(journey: Journey) -> tuple[str, ...]:
    final = journey.trace.final()
    status = f" {final.status}" if final.status else ""
    verdict = "-" if journey.expect is None else "ok" if journey.passed else "FAIL"
    expected = {"ok": "works", "refused": "refused", None: "info"}[journey.expect]
    return (
        journey.group,
        journey.name,
        expected,
        f"{final.verdict}{status}",
        verdict,
        journey.trace.split() or "-",
        _port(journey.trace),
        _policy(journey.trace),
    )


def table(found: list[Journey], verbose: bool = False) -> str:
    """Per model a table: journey, what it must do, what it does, the version split, the
    container port and the deciding AuthorizationPolicy; with `verbose`, every step."""
    lines: list[str] = []
    header = ("GROUP", "JOURNEY", "EXPECT", "OUTCOME", "RESULT", "SPLIT", "PORT", "POLICY")
    for model in sorted({j.model for j in found}):
        rows = [header, *(row(j) for j in found if j.model == model)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines.append(f"## {model}")
        for index, values in enumerate(rows):
            lines.append(
                "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
            )
            journey = [j for j in found if j.model == model][index - 1] if index else None
            if journey is not None and (verbose or not journey.passed):
                lines += [f"    {line}" for line in steps(journey)]
        lines.append("")
    return "\n".join(lines)


def steps(journey: Journey) -> list[str]:
    result = journey.trace
    lines = [f"{result.source.describe()} → {result.request.describe()}"]
    lines += [f"{s.at}: {s.detail}" for s in result.steps]
    for branch in result.branches:
        lines.append(
            f"{branch.kind} {round(branch.share, 2):g}% {branch.cluster or branch.workload}: "
            f"{branch.outcome.verdict}: {branch.outcome.detail}"
        )
        lines += [f"  {s.at}: {s.detail}" for s in branch.steps]
    if not result.branches:
        lines.append(f"{result.outcome.verdict}: {result.outcome.detail}")
    if not journey.passed:
        lines.append(f"FAILED: {journey.problem()}")
    return lines


def to_json(found: list[Journey]) -> list[dict]:
    return [
        {
            "group": j.group,
            "model": j.model,
            "journey": j.name,
            "expect": j.expect,
            "passed": j.passed,
            "subset": j.subset,
            "port": j.port,
            "trace": j.trace.to_json(),
        }
        for j in found
    ]
