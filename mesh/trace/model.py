"""What a trace is about: a source workload, a request, the steps it takes and where it ends.

Plain frozen dataclasses, so a journey table can hold them and `--json` can dump them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

# What intercepts a pod's traffic: nothing, an Istio sidecar (classic or native), or, in
# ambient mode, the node's ztunnel (mesh.trace.ambient).
Sidecar = Literal["none", "classic", "native", "ambient"]

# Where a request can end, and whether that is the request working. "served": a process that
# speaks the request's protocol got it; "egress": it left the mesh through a registered
# ServiceEntry; "passthrough": through the PassthroughCluster (outboundTrafficPolicy ALLOW_ANY);
# "direct": never captured by a proxy (no sidecar, UID 1337, excluded port), so it reached its
# destination without any mesh rule applying; "redirected": a 301 to HTTPS.
OK_VERDICTS = frozenset({"served", "egress", "passthrough", "direct", "redirected"})
VERDICTS = OK_VERDICTS | {
    "denied",  # 403 from an AuthorizationPolicy (RBAC: access denied)
    "dropped",  # a NetworkPolicy drops the packets: the client times out
    "reset",  # the connection is closed: mTLS STRICT against plaintext, a TLS mismatch
    "refused",  # nothing listens: no gateway server on the port, no proxy yet, no container port
    "no-route",  # 404 NR: no virtual host or no route matched
    "no-cluster",  # 503 NC: the route names a subset, port or host that has no cluster
    "no-endpoints",  # 503 UH: the cluster has no pods
    "blackholed",  # REGISTRY_ONLY: the BlackHoleCluster (502 for HTTP, reset for TLS/TCP)
    "wrong-protocol",  # e.g. gRPC delivered to an HTTP/1.1 REST port
    "aborted",  # fault injection answered instead of the server
    "picker-failed",  # FailClose: the InferencePool's endpoint picker (ext_proc) failed: 500
    "unfollowed-redirect",  # a 301 to HTTPS that the client (gRPC) does not follow
    "unmodelled",  # a path this trace does not follow (TLS passthrough routes)
}


@dataclass(frozen=True)
class Workload:
    """Who sends a request: a pod (by namespace, labels and service account) or a gateway.

    `sidecar` is what intercepts the pod's traffic: "none" (not in the mesh), or an Istio sidecar
    in classic or native mode. `gateway` marks an ingress gateway pod: its listeners come from
    Gateway servers, not from the services of the mesh.
    """

    namespace: str
    service_account: str = "default"
    labels: tuple[tuple[str, str], ...] = ()
    sidecar: Sidecar = "classic"
    gateway: bool = False
    name: str = ""

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def principal(self, trust_domain: str) -> str:
        return f"{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def describe(self) -> str:
        kind = "gateway" if self.gateway else "pod"
        mesh = "" if self.gateway else f", sidecar {self.sidecar}"
        if self.sidecar == "ambient" and not self.gateway:
            mesh = ", ambient: ztunnel"
        who = self.name or ",".join(f"{k}={v}" for k, v in self.labels) or "-"
        return f"{kind} {self.namespace}/{who} (sa {self.service_account}{mesh})"


@dataclass(frozen=True)
class Request:
    """One request as the client sends it.

    `host` is the Host/:authority header (HTTP) or the TLS SNI, or an IP address; `port` the
    port the client dials. `tls`: the client starts TLS itself (HTTPS to a gateway, or the AWS
    SDK speaking HTTPS to S3 through its sidecar). `protocol` is what runs inside: HTTP/1.1,
    gRPC (HTTP/2, content-type application/grpc) or opaque TCP.
    """

    port: int
    host: str
    protocol: Literal["http", "grpc", "tcp"] = "http"
    tls: bool = False
    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def header_map(self) -> dict[str, str]:
        """Header names are case-insensitive; Envoy lower-cases them. gRPC requests carry
        content-type application/grpc unless the caller says otherwise."""
        headers = {k.lower(): v for k, v in self.headers}
        if self.protocol == "grpc":
            headers.setdefault("content-type", "application/grpc")
        return headers

    def authority(self) -> str:
        """The Host header without a `:port` suffix (Envoy matches both forms, Istio generates
        the domains with and without the port)."""
        host = self.host
        if host.startswith("["):
            return host.split("]")[0] + "]"
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    def describe(self) -> str:
        scheme = {"http": "http", "grpc": "grpc", "tcp": "tcp"}[self.protocol]
        if self.tls:
            scheme += "+tls"
        if self.protocol == "tcp":
            return f"{scheme} {self.host}:{self.port}"
        return f"{scheme} {self.method} {self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Step:
    """One decision on the way, named after the Istio or Kubernetes object that made it."""

    at: str  # gateway, route, destination, endpoints, networkpolicy, mtls, authz, server, ...
    detail: str


@dataclass(frozen=True)
class Outcome:
    verdict: str
    detail: str
    status: int | None = None  # the HTTP status the client sees, where there is one

    @property
    def ok(self) -> bool:
        return self.verdict in OK_VERDICTS


@dataclass(frozen=True)
class Branch:
    """Where one share of the requests goes after the route: a weighted destination or the
    mirror. `cluster` is Envoy's cluster name, `outbound|<port>|<subset>|<host>`."""

    kind: Literal["route", "mirror"]
    share: float  # percent of the route's requests (mirror: percent copied)
    outcome: Outcome
    steps: tuple[Step, ...] = ()
    cluster: str | None = None
    host: str | None = None
    subset: str | None = None
    port: int | None = None
    workload: str | None = None  # Deployment namespace/name that serves it
    container: str | None = None
    container_port: int | None = None


@dataclass(frozen=True)
class Trace:
    """A request from a source: the steps before the route forks, then one branch per
    destination (and the mirror). Without a route (refused early) there is no branch and
    `outcome` says why."""

    source: Workload
    request: Request
    steps: tuple[Step, ...]
    outcome: Outcome
    branches: tuple[Branch, ...] = ()
    route: str | None = None  # the name (or position) of the route that fired

    @property
    def ok(self) -> bool:
        """Every live branch works (a mirror's answer is discarded, so it does not count)."""
        live = [b for b in self.branches if b.kind == "route" and b.share > 0]
        return self.outcome.ok and all(b.outcome.ok for b in live)

    def failures(self) -> list[Branch]:
        return [b for b in self.branches if b.kind == "route" and b.share > 0 and not b.outcome.ok]

    def split(self) -> str:
        """`v1 90% / v2 10%`: the share of each subset (or Service: `fraud-v7`, the short name
        of an in-cluster host; or host) among the live branches."""
        parts = [
            f"{b.subset or _short(b.host)} {round(b.share, 2):g}%"
            for b in self.branches
            if b.kind == "route" and b.share > 0
        ]
        return " / ".join(parts)

    def final(self) -> Outcome:
        """The outcome a client most likely sees: the first failing live branch, else the
        first live branch, else the trace's own."""
        failing = self.failures()
        if failing:
            return failing[0].outcome
        live = [b for b in self.branches if b.kind == "route" and b.share > 0]
        return live[0].outcome if live and self.outcome.ok else self.outcome

    def to_json(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        data["split"] = self.split()
        data["final"] = asdict(self.final())
        return data


# istiod's shadow Service of an InferencePool: `<pool>-ip-<8 hex>` (mesh.trace.pools).
_SHADOW = re.compile(r"^(?P<pool>.+)-ip-[0-9a-f]{8}$")


def pool_of(name: str) -> str | None:
    """The InferencePool whose shadow Service `name` is, or None (the pool names ml-mesh
    writes are 40 characters at most, so istiod never cuts them in its Service name)."""
    match = _SHADOW.match(name)
    return match.group("pool") if match else None


def _short(host: str | None) -> str | None:
    """`fraud-v7` for `fraud-v7.ml-serving.svc.cluster.local`, `chat-v1 (pool)` for the shadow
    Service of pool chat-v1; other hosts as they are."""
    if host and host.endswith(".svc.cluster.local") and host.count(".") == 4:
        name = host.split(".", 1)[0]
        pool = pool_of(name)
        return f"{pool} (pool)" if pool else name
    return host


@dataclass(frozen=True)
class MeshSettings:
    """What the trace assumes of the mesh installation (istiod's and the injector's settings)
    where the objects do not say. Defaults are Istio 1.30's."""

    root_namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    # meshConfig.outboundTrafficPolicy.mode, overridden per namespace by a Sidecar.
    outbound_policy: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"
    # istiod's ENABLE_NATIVE_SIDECARS for pods without the `sidecar.istio.io/nativeSidecar`
    # annotation. Istio 1.30's default is `auto`: native where every kubelet is 1.33+
    # (pkg/kube/inject/webhook.go `DetectNativeSidecar`); the objects do not say the kubelet
    # version, so this assumes older nodes. ml-mesh's pods always carry the annotation.
    native_sidecars_default: bool = False
    cni: bool = False
