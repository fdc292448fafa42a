"""The whole stack: `StackConfig`, all of `ml-mesh:*`, with the shared gateway, Istio and
image settings, and the rules that span models (hosts, names, protected stacks).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mesh.config import gateway_api, inference
from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import (
    DnsLabel,
    DnsSubdomain,
    Flag,
    Fqdn,
    Image,
    ServiceName,
    is_dns_subdomain,
)
from mesh.config.model import Model
from mesh.config.platform import (
    AMBIENT_ISTIO,
    NATIVE_ANNOTATION_ISTIO,
    NATIVE_SIDECARS_KUBERNETES,
    Platform,
)
from mesh.config.scheduling import Scheduling
from mesh.config.security import Security
from mesh.config.storage import Storage
from mesh.config.telemetry import Telemetry


class GatewayTls(_Config):
    credential_name: DnsLabel = Field(
        description="kubernetes.io/tls Secret in the namespace of the ingress gateway pods"
    )
    https_redirect: Flag = Field(default=True, description="redirect plain HTTP to HTTPS")
    mode: Literal["SIMPLE", "MUTUAL"] = Field(
        default="SIMPLE",
        description="MUTUAL also requires client certificates, verified against the ca.crt of "
        "the credential Secret",
    )


# The legacy gateway install: istioctl's default profile and the `istio-ingress` chart
# (istio/istio 1.30.3 manifests/charts/gateways/istio-ingress) run the pods under this service
# account, labelled `app: istio-ingressgateway`, `istio: ingressgateway`.
LEGACY_GATEWAY_APP = "istio-ingressgateway"
LEGACY_GATEWAY_ISTIO = "ingressgateway"
LEGACY_GATEWAY_SERVICE_ACCOUNT = "istio-ingressgateway-service-account"


class Gateway(_Config):
    """The shared Gateway, and which ingress gateway pods serve it.

    `namespace` and `serviceAccount` say who those pods are, because the model pods'
    AuthorizationPolicies admit them by their SPIFFE principal
    `<trustDomain>/ns/<namespace>/sa/<serviceAccount>`: a principal the selected pods do not
    have answers every request with 403. Without `serviceAccount` it is derived from the
    selector (see `derived_service_account`).
    """

    name: DnsLabel = "ml-gateway"
    domain: Fqdn = Field(description="each model is served at <model>.<domain>")
    selector: dict[str, str] = Field(
        default={"istio": LEGACY_GATEWAY_ISTIO},
        min_length=1,
        description="labels of the ingress gateway pods",
    )
    namespace: DnsLabel = Field(
        default="istio-system",
        description="namespace of the ingress gateway pods (part of their identity)",
    )
    service_account: DnsSubdomain | None = Field(
        default=None,
        description="service account of the ingress gateway pods; default from the selector: "
        "its `app` label (an istio/gateway Helm release), else "
        f"{LEGACY_GATEWAY_SERVICE_ACCOUNT} (istioctl / istio-ingress chart)",
    )
    tls: GatewayTls | None = None

    def derived_service_account(self) -> str | None:
        """The service account the pods `selector` picks run under, by install convention
        (istio/istio 1.30.3):

        - the `istio/gateway` Helm chart (manifests/charts/gateway, templates/_helpers.tpl,
          serviceaccount.yaml, deployment.yaml) names the ServiceAccount `serviceAccount.name`,
          else the release name, and labels the pods `app: <release>` and
          `istio: <release without the "istio-" prefix>`: an `app` label other than
          `istio-ingressgateway` is such a release, and its value the service account. A
          release that overrides `serviceAccount.name` or `labels.app` (or sets `name`) breaks
          the link: give `serviceAccount` then;
        - the legacy install (istioctl's default profile, the `istio-ingress` chart,
          manifests/charts/gateways/istio-ingress) labels its pods `app: istio-ingressgateway`,
          `istio: ingressgateway` and runs them as `istio-ingressgateway-service-account`.

        None when the selector is neither (say `istio: eastwest` alone: the `istio` label
        drops the "istio-" prefix of a release name, so the account cannot be told from it), or
        its `app` cannot name a ServiceAccount.
        """
        app = self.selector.get("app")
        if app is not None and app != LEGACY_GATEWAY_APP:
            return app if is_dns_subdomain(app) else None
        if app == LEGACY_GATEWAY_APP or self.selector.get("istio") == LEGACY_GATEWAY_ISTIO:
            return LEGACY_GATEWAY_SERVICE_ACCOUNT
        return None


class Istio(_Config):
    api_version: Literal["v1", "v1beta1", "v1alpha3"] = Field(
        default="v1",
        description="networking.istio.io version; v1 needs Istio 1.22+, v1beta1 Istio 1.8+",
    )
    revision: DnsLabel | None = Field(
        default=None, description="label the namespace istio.io/rev=<revision> instead"
    )
    native_sidecars: Flag | None = Field(
        default=None,
        description="run istio-proxy as a Kubernetes native sidecar, so init containers reach "
        "S3 through the mesh; needs platform.kubernetesVersion 1.29+ and "
        "platform.istioVersion 1.24+; default: true exactly there",
    )


class Images(_Config):
    model_fetcher: Image = Field(
        default="amazon/aws-cli:2.17.37",
        description="image of the init container that copies a model version from S3",
    )
    endpoint_picker: Image = Field(
        default="ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0",
        description="image of the inference pools' endpoint picker (the llm-d router's, the "
        "release of its chart); a digest goes after the tag (repo:tag@sha256:...)",
    )
    require_digests: Flag = Field(
        default=False,
        description="every container image must be pinned by digest (repo:tag@sha256:...): "
        "a tag-only image is a mesh check error, not the warning protected stacks give",
    )


class StackConfig(_Config):
    """All of `ml-mesh:*` for one stack."""

    namespace: DnsLabel = "ml-serving"
    protected: Flag = Field(
        default=False,
        description="a production stack: mTLS STRICT, authorization, egress lock-down and "
        "circuit breaking by default; gateway TLS required; fault injection refused; canary "
        "steps gated by `mesh diff`; the namespace protected from `pulumi destroy`",
    )
    max_weight_step: Annotated[int, Field(strict=True, ge=1, le=100)] = Field(
        default=25,
        description="protected stacks: the largest canary weight increase one change may make "
        "(checked by `python -m mesh diff`)",
    )
    dataplane: Literal["sidecar", "ambient"] = Field(
        default="sidecar",
        description="how pods join the mesh: `sidecar` (an injected istio-proxy per pod) or "
        "`ambient` (ztunnel on every node for L4 and mTLS, a waypoint proxy in the namespace "
        "for L7); ambient needs platform.istioVersion 1.24+",
    )
    routing: Literal["istio", "gateway-api"] = Field(
        default="istio",
        description="the routing API: `istio` (Gateway, VirtualService, DestinationRule "
        "subsets) or `gateway-api` (a Gateway of class istio, HTTPRoute and GRPCRoute "
        "splitting between per-version Services; DestinationRules keep the traffic policy)",
    )
    platform: Platform = Platform()
    gateway: Gateway
    storage: Storage
    istio: Istio = Istio()
    images: Images = Images()
    telemetry: Telemetry = Telemetry()
    security: Security = Security()
    scheduling: Scheduling = Scheduling()
    models: dict[ServiceName, Model] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_field(self) -> StackConfig:
        owners: dict[str, str] = {}
        for name, model in self.models.items():
            for version in model.versions:
                if len(name) + 1 + len(version) > 63:
                    raise ConfigPathError(
                        ("models", name, "versions", version),
                        f"'{name}-{version}' (the Deployment name) is longer than 63 characters",
                    )
            for index, host in enumerate(self.model_hosts(name)):
                if host in owners:
                    path: tuple[str | int, ...] = ("models", name)
                    path += ("hosts", index) if model.hosts else ()
                    raise ConfigPathError(
                        path,
                        f"host {host!r} is already served by model {owners[host]!r}; every "
                        "model needs its own host on the shared gateway",
                    )
                owners[host] = name
        return self

    @model_validator(mode="after")
    def _secure_storage(self) -> StackConfig:
        storage = self.storage
        if storage.credentials_secret is not None:
            for name, model in self.models.items():
                if model.role_arn:
                    raise ConfigPathError(
                        ("models", name, "roleArn"),
                        "storage.credentialsSecret is set: use either IAM roles (roleArn) or a "
                        "credentials Secret, not both (the key pair would win silently)",
                    )
        return self

    @model_validator(mode="after")
    def _gateway_identity(self) -> StackConfig:
        """The policies may only admit the identity the selected gateway pods have: an
        underivable service account must be given, and `security.gatewayPrincipal` (kept for
        stack files that set it) must agree with gateway.namespace/serviceAccount/selector
        rather than override them, so the two can never drift apart."""
        gateway = self.gateway
        given = self.security.gateway_principal
        if self.routing == "gateway-api":  # Istio deploys the pods: see `_mode_rules`
            return self
        if gateway.service_account is None and gateway.derived_service_account() is None:
            if self.authorization_enabled() or given is not None:
                raise ConfigPathError(
                    ("gateway", "serviceAccount"),
                    f"the service account of the gateway pods selected by {gateway.selector} "
                    "cannot be derived (no `app` label naming one, `istio` is not "
                    "'ingressgateway'), and the AuthorizationPolicies admit the gateway by it: "
                    "set gateway.serviceAccount (for the istio/gateway Helm chart, the release "
                    "name or its serviceAccount.name) and gateway.namespace",
                )
            return self
        derived = self.gateway_principal()
        if given is not None and given != derived:
            account_source = (
                "from gateway.serviceAccount"
                if gateway.service_account is not None
                else f"derived from gateway.selector {gateway.selector}"
            )
            raise ConfigPathError(
                ("security", "gatewayPrincipal"),
                f"{given!r} is not the principal of the selected gateway pods, {derived!r} "
                f"(namespace from gateway.namespace, service account {account_source}); set "
                "gateway.serviceAccount and gateway.namespace to the gateway's instead and "
                "remove security.gatewayPrincipal (or set it to the derived value)",
            )
        return self

    @model_validator(mode="after")
    def _store_credentials(self) -> StackConfig:
        """Every model reads the store with credentials the locked-down proxy lets it get.

        Without roleArn or a credentials Secret, the AWS SDKs end their credential chain at the
        instance metadata service (botocore / aws-cli v2: env, assume-role, web identity, SSO,
        shared files, process, container provider, then IMDS at 169.254.169.254:80;
        aws-sdk-cpp in Triton likewise). Under REGISTRY_ONLY that address is no host of the
        registry and goes to the BlackHoleCluster: the download loops and Triton crash-loops.
        This holds for S3-compatible stores as well: the download and Triton always sign their
        requests, so a store without keys would still send them looking for the node's role.
        `storage.nodeCredentials` makes IMDS an explicit opt-in (see mesh.egress).
        """
        storage = self.storage
        if storage.node_credentials:
            if storage.credentials_secret is not None:
                raise ConfigPathError(
                    ("storage", "nodeCredentials"),
                    "storage.credentialsSecret is set: the key pair comes first in the SDKs' "
                    "credential chain, so the node's role would never be used; remove "
                    "nodeCredentials (it would only open the instance metadata service to "
                    "the pods)",
                )
            if all(model.role_arn for model in self.models.values()):
                raise ConfigPathError(
                    ("storage", "nodeCredentials"),
                    "every model has a roleArn, so none reads the store with the node's "
                    "role; remove nodeCredentials (it would only open the instance metadata "
                    "service, and the node role's credentials, to the pods)",
                )
            return self
        if not self.egress_restricted() or storage.credentials_secret is not None:
            return self
        bare = [name for name, model in self.models.items() if not model.role_arn]
        if bare:
            switch = (
                "security.restrictEgress is true"
                if self.security.restrict_egress
                else "protected is true and security.restrictEgress is unset"
            )
            others = f" (as do {', '.join(bare[1:])})" if bare[1:] else ""
            raise ConfigPathError(
                ("models", bare[0], "roleArn"),
                f"egress is restricted ({switch}) and model {bare[0]!r} has no store "
                f"credentials{others}: the AWS SDKs would fall back to the node's role "
                "through the instance metadata service (169.254.169.254:80), which "
                "REGISTRY_ONLY blackholes, so the download would loop and Triton crash-loop; "
                f"set models.{bare[0]}.roleArn (IRSA), storage.credentialsSecret (a key pair), "
                "or storage.nodeCredentials: true (the node's role, through the instance "
                "metadata service)",
            )
        return self

    @model_validator(mode="after")
    def _telemetry_collectors(self) -> StackConfig:
        """With egress restricted, a provider's Service must be one the Sidecar imports.

        Istio names a provider's cluster `outbound|<port>||<host>` from the mesh-wide registry,
        but a proxy receives clusters only for the services its Sidecar imports: a provider
        outside the egress hosts has no cluster, and the proxy drops spans or log entries
        (istio/istio#53701). The mesh default tracing provider (provider unset) is assumed to
        run in istio-system, which the egress hosts import; `envoy` writes to stdout.
        """
        if not self.egress_restricted():
            return self
        tracing = self.telemetry.tracing
        if tracing.provider and tracing.collector is None:
            raise ConfigPathError(
                ("telemetry", "tracing", "collector"),
                f"egress is restricted and telemetry.tracing.provider is {tracing.provider!r}: "
                "set telemetry.tracing.collector to its Service ({host: <service>.<namespace>"
                ".svc.cluster.local, port: <port>}, as in meshConfig.extensionProviders) so "
                "the Sidecar imports it; without it the proxies have no cluster for the "
                "provider and drop every span (istio/istio#53701)",
            )
        logging = self.telemetry.access_logging
        if logging.enabled and logging.provider != "envoy" and logging.collector is None:
            raise ConfigPathError(
                ("telemetry", "accessLogging", "collector"),
                f"egress is restricted and telemetry.accessLogging.provider is "
                f"{logging.provider!r}: set telemetry.accessLogging.collector to its Service "
                "({host: <service>.<namespace>.svc.cluster.local, port: <port>}, as in "
                "meshConfig.extensionProviders) so the Sidecar imports it; without it the "
                "proxies have no cluster for the provider and drop every log entry "
                "(istio/istio#53701)",
            )
        return self

    @model_validator(mode="after")
    def _platform_rules(self) -> StackConfig:
        """Settings the target cluster (`platform`) cannot honour, refused with the settings
        involved and what would work."""
        platform = self.platform
        if self.istio.native_sidecars and not platform.native_sidecars_supported():
            why = []
            if platform.kubernetes() < NATIVE_SIDECARS_KUBERNETES:
                why.append(
                    f"Kubernetes {platform.kubernetes_version} has the SidecarContainers gate "
                    "off (alpha until 1.29, KEP-753), so the API server drops istio-proxy's "
                    "`restartPolicy: Always` and the ReplicaSet never creates a pod"
                )
            if platform.istio() < NATIVE_ANNOTATION_ISTIO:
                why.append(
                    f"Istio {platform.istio_version} ignores the per-pod annotation "
                    "sidecar.istio.io/nativeSidecar (honoured from 1.24, istio/istio#53490; "
                    "before, only istiod's ENABLE_NATIVE_SIDECARS decides)"
                )
            raise ConfigPathError(
                ("istio", "nativeSidecars"),
                "native sidecars need Kubernetes 1.29+ and Istio 1.24+, and "
                f"platform.kubernetesVersion is {platform.kubernetes_version!r}, "
                f"platform.istioVersion {platform.istio_version!r}: {'; '.join(why)}. "
                "Remove istio.nativeSidecars (or set it to false) for classic sidecars, the "
                "model download then running as UID 1337; or, if the cluster runs newer "
                "versions, raise platform.kubernetesVersion to 1.29+ and "
                "platform.istioVersion to 1.24+",
            )
        gpu = self.scheduling.gpu
        if platform.gpu_nodes == "custom" and not gpu.node_selector:
            raise ConfigPathError(
                ("scheduling", "gpu", "nodeSelector"),
                "platform.gpuNodes is custom, so GPU pods go where this says: set it to the "
                "labels of your GPU nodes (e.g. {karpenter.k8s.aws/instance-gpu-manufacturer: "
                "nvidia}), or set platform.gpuNodes to gpu-operator (nodeSelector "
                "nvidia.com/gpu.present=true) or device-plugin (no nodeSelector, the "
                "nvidia.com/gpu request alone)",
            )
        if platform.gpu_nodes != "custom" and gpu.node_selector is not None:
            derived = platform.gpu_node_selector()
            placed = f"on nodes labelled {derived}" if derived else "by the nvidia.com/gpu request"
            operator = dict(gpu.node_selector) == {"nvidia.com/gpu.present": "true"}
            hint = (
                " (nvidia.com/gpu.present is the GPU Operator's label: "
                "platform.gpuNodes: gpu-operator says that)"
                if operator
                else ""
            )
            raise ConfigPathError(
                ("scheduling", "gpu", "nodeSelector"),
                f"platform.gpuNodes is {platform.gpu_nodes!r}, which places GPU pods {placed}: "
                "set platform.gpuNodes to custom to place them by these labels instead, or "
                f"remove scheduling.gpu.nodeSelector{hint}",
            )
        given = self.telemetry.alerts.labels.get("release")
        release = platform.monitoring_release
        if given is not None and release is not None and given != release:
            raise ConfigPathError(
                ("telemetry", "alerts", "labels", "release"),
                f"{given!r} contradicts platform.monitoringRelease {release!r}: "
                "kube-prometheus-stack's Prometheus loads only PrometheusRules labelled "
                "`release: <its Helm release>` (its default ruleSelector), so one of them is "
                "wrong; remove telemetry.alerts.labels.release (the rule then gets "
                f"release: {release}) or correct platform.monitoringRelease",
            )
        return self

    @model_validator(mode="after")
    def _mode_rules(self) -> StackConfig:
        """What the data plane (`dataplane`) and the routing API (`routing`) cannot do."""
        if self.dataplane == "ambient":
            if self.platform.istio() < AMBIENT_ISTIO:
                raise ConfigPathError(
                    ("dataplane",),
                    f"ambient needs Istio 1.24+ (GA there) and platform.istioVersion is "
                    f"{self.platform.istio_version!r}: raise platform.istioVersion if the "
                    "cluster runs 1.24 or newer, or use dataplane: sidecar",
                )
            if self.istio.native_sidecars is not None:
                raise ConfigPathError(
                    ("istio", "nativeSidecars"),
                    "dataplane is ambient, so no pod has an istio-proxy sidecar: remove "
                    "istio.nativeSidecars",
                )
        if self.routing == "gateway-api":
            # Istio deploys the pods of a Gateway of class `istio` itself (Deployment and
            # ServiceAccount `<name>-istio`, pods labelled gateway.networking.k8s.io/
            # gateway-name: <name>; pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go
            # `configureIstioGateway`, gateway_utils.go `GetDefaultName`): selecting other pods
            # or naming another account would admit an identity no gateway pod has.
            for key in ("selector", "service_account"):
                if key in self.gateway.model_fields_set:
                    alias = "serviceAccount" if key == "service_account" else key
                    raise ConfigPathError(
                        ("gateway", alias),
                        "routing is gateway-api: Istio deploys the Gateway's own pods "
                        f"(Deployment {self.gateway.name}-istio in {self.gateway.namespace}, "
                        f"service account {self.gateway.name}-istio), so gateway.{alias} does "
                        "not apply; remove it",
                    )
            if self.security.gateway_principal is not None:
                raise ConfigPathError(
                    ("security", "gatewayPrincipal"),
                    "routing is gateway-api: the gateway's principal is that of the pods Istio "
                    f"deploys for it ({self.gateway_principal()}); remove "
                    "security.gatewayPrincipal",
                )
            for name, model in sorted(self.models.items()):
                # Flagger's Gateway API router builds the HTTPRoute from the Canary's
                # service.timeout alone: no retry, on either channel (fluxcd/flagger v1.44
                # pkg/router/gateway_api.go `Reconcile`, `makeHTTPRouteTimeouts`).
                if model.progressive is not None and model.retries is not None:
                    raise ConfigPathError(
                        ("models", name, "retries"),
                        "routing is gateway-api and Flagger owns this model's HTTPRoute: "
                        "Flagger's Gateway API router copies only the timeout into it, never "
                        "retries, so they would silently not apply; remove "
                        f"models.{name}.retries (or the progressive block)",
                    )
        return self

    @model_validator(mode="after")
    def _gateway_api_rules(self) -> StackConfig:
        """What HTTPRoute cannot say (fault injection, retries on the standard channel, ...):
        see mesh/config/gateway_api.py."""
        if self.routing == "gateway-api":
            gateway_api.check(self)
        return self

    @model_validator(mode="after")
    def _inference_pools(self) -> StackConfig:
        """What a model's InferencePool needs: see mesh/config/inference.py."""
        inference.check(self)
        return self

    @model_validator(mode="after")
    def _protected_rules(self) -> StackConfig:
        """What a protected (production) stack may not do."""
        if not self.protected:
            return self
        tls = self.gateway.tls
        if tls is None:
            raise ConfigPathError(
                ("gateway", "tls"),
                "protected stacks serve HTTPS only: set gateway.tls.credentialName to the TLS "
                "Secret of the ingress gateway",
            )
        if not tls.https_redirect:
            raise ConfigPathError(
                ("gateway", "tls", "httpsRedirect"),
                "protected stacks redirect plain HTTP to HTTPS; remove this setting",
            )
        if self.security.mtls == "PERMISSIVE":
            raise ConfigPathError(
                ("security", "mtls"),
                "protected stacks accept mutual TLS only: use STRICT (or remove the setting)",
            )
        for name, model in self.models.items():
            if model.fault is not None:
                raise ConfigPathError(
                    ("models", name, "fault"),
                    "fault injection is refused in protected stacks; test resilience in dev",
                )
            for version in model.single_pod_replacements():
                raise ConfigPathError(
                    ("models", name, "rollout"),
                    f"'replace' stops the only pod of version {version!r} "
                    f"({model.routed_versions()[version]}) before its successor is ready: "
                    f"no pod serves it for up to {model.startup_budget().deadline}s per "
                    "rollout, which protected stacks refuse; give the version at least 2 "
                    "replicas or use rollout 'surge' (with a spare GPU)",
                )
        endpoint = self.storage.endpoint
        if endpoint is not None and not endpoint.tls and not endpoint.in_cluster():
            raise ConfigPathError(
                ("storage", "endpoint", "tls"),
                "protected stacks reach a model store outside the cluster over TLS only",
            )
        return self

    def native_sidecars(self) -> bool:
        """Whether istio-proxy runs as a Kubernetes native sidecar: istio.nativeSidecars, else
        exactly where the platform supports it (Kubernetes 1.29+ and Istio 1.24+, see
        `Platform.native_sidecars_supported`). Validation refuses an explicit true elsewhere."""
        native = self.istio.native_sidecars
        return self.platform.native_sidecars_supported() if native is None else native

    def gpu_node_selector(self) -> dict[str, str]:
        """The nodeSelector of pods that request a GPU: from platform.gpuNodes, or
        scheduling.gpu.nodeSelector for `custom` (validation guarantees it then)."""
        derived = self.platform.gpu_node_selector()
        if derived is not None:
            return derived
        return dict(self.scheduling.gpu.node_selector or {})

    def alert_labels(self) -> dict[str, str]:
        """Labels of the PrometheusRule: telemetry.alerts.labels, with
        `release: <platform.monitoringRelease>` when that is set: kube-prometheus-stack's
        Prometheus selects rules by `release: <Helm release>` by default (ruleSelector from
        prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues)."""
        labels = dict(self.telemetry.alerts.labels)
        if self.platform.monitoring_release is not None:
            labels["release"] = self.platform.monitoring_release
        return labels

    def mtls_mode(self) -> str | None:
        """PeerAuthentication mode of the namespace; None leaves the mesh-wide setting."""
        return self.security.mtls or ("STRICT" if self.protected else None)

    def authorization_enabled(self) -> bool:
        enabled = self.security.authorization
        return self.protected if enabled is None else enabled

    def network_policy_enabled(self) -> bool:
        enabled = self.security.network_policy
        return self.protected if enabled is None else enabled

    def egress_restricted(self) -> bool:
        restricted = self.security.restrict_egress
        return self.protected if restricted is None else restricted

    def gateway_service_account(self) -> str:
        """Service account of the ingress gateway pods: gateway.serviceAccount, else derived
        from gateway.selector (`Gateway.derived_service_account`). Validation guarantees one
        wherever authorization needs it; elsewhere an underivable selector falls back to the
        legacy account, which nothing then relies on."""
        gateway = self.gateway
        if self.routing == "gateway-api":
            return f"{gateway.name}-istio"
        return (
            gateway.service_account
            or gateway.derived_service_account()
            or LEGACY_GATEWAY_SERVICE_ACCOUNT
        )

    def gateway_principal(self) -> str:
        """The SPIFFE principal an AuthorizationPolicy sees for the gateway pods:
        `<trustDomain>/ns/<namespace>/sa/<serviceAccount>`, the pods' SPIFFE identity
        (istio/istio 1.30.3 pkg/spiffe/spiffe.go `GenSpiffeURI`) without `spiffe://`, trust
        domain from security.trustDomain."""
        return (
            f"{self.security.trust_domain}/ns/{self.gateway.namespace}"
            f"/sa/{self.gateway_service_account()}"
        )

    def gateway_pod_labels(self) -> dict[str, str]:
        """Labels of the ingress gateway pods: gateway.selector, or in gateway-api routing the
        label Istio gives the pods it deploys for a Gateway, `gateway.networking.k8s.io/
        gateway-name: <name>` (istio/istio 1.30.3 manifests/charts/istio-control/
        istio-discovery/files/kube-gateway.yaml, the pod template's labels)."""
        if self.routing == "gateway-api":
            return {"gateway.networking.k8s.io/gateway-name": self.gateway.name}
        return dict(self.gateway.selector)

    def ambient(self) -> bool:
        return self.dataplane == "ambient"

    def gateway_api(self) -> bool:
        return self.routing == "gateway-api"

    def model_hosts(self, name: str) -> list[str]:
        """External hosts of a model: its own, or `<model>.<gateway.domain>`."""
        model = self.models[name]
        return list(model.hosts) if model.hosts else [f"{name}.{self.gateway.domain}"]

    def service_host(self, name: str) -> str:
        return f"{name}.{self.namespace}.svc.cluster.local"
