"""One model: its versions, server, resources, and every per-model setting.

`Model` holds the rules across a model's settings (versions that exist, a canary that differs
from stable, routed versions that have pods, retries within the timeout, ...), because only
it sees all of them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import (
    _CREDENTIAL_VALUE,
    DnsLabel,
    DnsSubdomain,
    Duration,
    EnvName,
    EnvValue,
    Fqdn,
    HttpPath,
    Image,
    IstioPath,
    ModelPath,
    Port,
    Quantity,
    RoleArn,
    SecretKey,
    ServiceAccountRef,
    _http_path,
    credential_problem,
    duration_millis,
    quantity_bytes,
)
from mesh.config.inference import InferencePoolSettings
from mesh.config.llm import LLM_SERVERS, LlmServer, preset_flag
from mesh.config.resilience import Fault, TrafficPolicy
from mesh.config.routing import Canary, MatchRule, Mirror, Progressive, Retries
from mesh.config.scheduling import Autoscaling
from mesh.config.startup import (
    LARGE_IMAGE_REGISTRIES,
    Rollout,
    Startup,
    StartupBudget,
    startup_budget,
)


class ResourceQuantities(_Config):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Config):
    """Overrides of a preset's requests and limits; unset values keep the preset's."""

    requests: ResourceQuantities = ResourceQuantities()
    limits: ResourceQuantities = ResourceQuantities()
    gpu: Annotated[int, Field(strict=True, ge=0, le=16)] = Field(
        default=0, description="nvidia.com/gpu count per pod (requests = limits)"
    )


class Version(_Config):
    image: Image = Field(description="container image with an explicit tag or digest")
    model_path: ModelPath = Field(description="key prefix of this version in the model bucket")
    replicas: Annotated[int, Field(strict=True, ge=0, le=1000)] = Field(
        default=1,
        description="pods of this version; with the model's autoscaling, the minimum the "
        "HorizontalPodAutoscaler keeps (0 parks the version: no pods, no autoscaler)",
    )
    resources: Resources | None = None


class SecretKeySelector(_Config):
    """A key of an existing Secret in the serving namespace (created outside this stack)."""

    secret_name: DnsSubdomain
    key: SecretKey


class CustomServer(_Config):
    """A server that is not a preset: its ports, probe and arguments, given explicitly."""

    http_port: Port = 8080
    grpc_port: Port | None = None
    readiness_path: HttpPath = "/healthz"
    args: list[Annotated[str, Field(max_length=4096)]] = []
    env: dict[EnvName, EnvValue] = {}
    run_as_user: Annotated[int, Field(strict=True, ge=1, le=2147483647)] = 65532
    model_dir: Annotated[str, AfterValidator(_http_path)] = Field(
        default="/models",
        description="where the model version is downloaded to before the server starts",
    )
    secret_env: dict[EnvName, SecretKeySelector] = Field(
        default={},
        description="environment variables read from keys of existing Secrets in the namespace",
    )
    inference_paths: list[IstioPath] | None = Field(
        default=None,
        min_length=1,
        description="HTTP paths callers may use (AuthorizationPolicy); default: every path",
    )

    @model_validator(mode="after")
    def _ports_differ(self) -> CustomServer:
        if self.grpc_port is not None and self.grpc_port == self.http_port:
            raise ConfigPathError(("grpcPort",), "must differ from httpPort")
        if self.model_dir.rstrip("/") in ("/", "/tmp"):
            raise ConfigPathError(("modelDir",), "must not be / or /tmp (both are mounted already)")
        return self

    @model_validator(mode="after")
    def _no_credentials_in_clear(self) -> CustomServer:
        for name, value in self.env.items():
            problem = credential_problem(name, value)
            if problem:
                raise ConfigPathError(
                    ("env", name),
                    f"{problem}; a Deployment shows env values to anyone who can read it, so "
                    f"ml-mesh never puts keys there: reference an existing Secret with "
                    f"custom.secretEnv.{name} {{secretName, key}}, or use an IAM role (roleArn)",
                )
        for index, arg in enumerate(self.args):
            if _CREDENTIAL_VALUE.search(arg):
                raise ConfigPathError(
                    ("args", index),
                    "contains an access key or a private key; pass it from a Secret with "
                    "custom.secretEnv instead",
                )
        for name in self.secret_env:
            if name in self.env or name == "MODEL_DIR":
                raise ConfigPathError(("secretEnv", name), f"{name} is already set by env")
        return self


# Envoy retry conditions that also fire after the server received a request and may be
# generating (x-envoy-retry-on: `5xx` and `gateway-error` include resets and 504s, `reset`
# any reset before the response), and 504, which Envoy answers when its own timeout fires.
GENERATION_RERUN_RETRY_ON = frozenset({"5xx", "gateway-error", "reset", "504"})


class Model(_Config):
    server: Literal["tensorflow-serving", "triton", "custom", "vllm", "sglang"] = Field(
        description="model server preset (vllm and sglang: LLMs behind an OpenAI-compatible "
        "API, settings in the llm block)"
    )
    versions: dict[DnsLabel, Version] = Field(min_length=1)
    stable: DnsLabel = Field(description="the version that gets the remaining traffic")
    canary: Canary | None = None
    resources: Resources | None = Field(
        default=None, description="requests/limits for every version (a version may override)"
    )
    role_arn: RoleArn | None = Field(
        default=None,
        description="IAM role for service accounts (IRSA) that may read the model bucket",
    )
    hosts: list[Fqdn] | None = Field(
        default=None,
        description="external hosts of this model; default <model>.<gateway.domain>",
    )
    disk_size: Quantity = Field(
        default="10Gi",
        description="size limit of the emptyDir that holds the downloaded model version",
    )
    custom: CustomServer | None = None
    llm: LlmServer | None = Field(
        default=None,
        description="settings of the vllm and sglang presets: served model name, context "
        "length, tensor parallelism, weights loading, extra engine flags",
    )
    inference_pool: InferencePoolSettings | None = Field(
        default=None,
        description="routing: gateway-api, vllm and sglang: the ingress picks each request's "
        "pod with a Gateway API Inference Extension endpoint picker, one InferencePool per "
        'version (docs/llm.md, "Inference pools")',
    )
    matches: dict[DnsLabel, MatchRule] = Field(
        default={}, description="A/B rules, tried before the weighted route"
    )
    mirror: Mirror | None = None
    timeout: Duration | None = Field(default=None, description="timeout of each request")
    retries: Retries | None = None
    progressive: Progressive | None = Field(
        default=None, description="hand the rollout to Flagger instead of canary.weight"
    )
    callers: list[ServiceAccountRef] = Field(
        default=[],
        description="in-mesh service accounts (<namespace>/<name>) allowed to call this model",
    )
    traffic_policy: TrafficPolicy | None = Field(
        default=None,
        description="connection pool, outlier detection and load balancer of every version",
    )
    fault: Fault | None = Field(
        default=None, description="inject delays/aborts on every route (not in protected stacks)"
    )
    autoscaling: Autoscaling | None = None
    startup: Startup = Field(
        default=Startup(),
        description="how long a pod may take to start: imagePull, download, serverStart "
        "(the startup probe), progressDeadline",
    )
    rollout: Rollout | None = Field(
        default=None,
        description="surge: a new pod starts before an old one stops (maxSurge 1, the "
        "default); replace: an old pod stops first (maxSurge 0, maxUnavailable 1), so a GPU "
        "version needs no spare GPU",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> Model:
        names = ", ".join(sorted(self.versions))
        if self.stable not in self.versions:
            raise ConfigPathError(
                ("stable",), f"{self.stable!r} is not a version of this model; defined: {names}"
            )
        if self.canary is not None:
            if self.canary.version not in self.versions:
                raise ConfigPathError(
                    ("canary", "version"),
                    f"{self.canary.version!r} is not a version of this model; defined: {names}",
                )
            if self.canary.version == self.stable:
                raise ConfigPathError(
                    ("canary", "version"),
                    f"{self.canary.version!r} is already the stable version; the canary must "
                    "be another version (or remove the canary block)",
                )
        if self.server == "custom" and self.custom is None:
            raise ConfigPathError(
                ("custom",), "server 'custom' needs a custom block (httpPort, readinessPath, ...)"
            )
        if self.server != "custom" and self.custom is not None:
            raise ConfigPathError(
                ("custom",), f"only allowed with server 'custom' (this model uses {self.server!r})"
            )
        self._check_llm()
        self._check_routing()
        if self.hosts is not None and len(set(self.hosts)) != len(self.hosts):
            raise ConfigPathError(("hosts",), "lists the same host twice")
        if len(set(self.callers)) != len(self.callers):
            raise ConfigPathError(("callers",), "lists the same service account twice")
        if self.autoscaling is not None:
            for name, version in self.versions.items():
                if version.replicas > self.autoscaling.max_replicas:
                    raise ConfigPathError(
                        ("versions", name, "replicas"),
                        f"{version.replicas} is above autoscaling.maxReplicas "
                        f"({self.autoscaling.max_replicas}); with autoscaling, replicas is the "
                        "minimum",
                    )
        self.startup_budget()  # refuses a deadline below the budget
        return self

    def llm_settings(self) -> LlmServer:
        """The llm block of a vllm or sglang model, its defaults when none is written."""
        assert self.server in LLM_SERVERS, "only the LLM presets have llm settings"
        return self.llm if self.llm is not None else LlmServer()

    def tensor_parallel_size(self, version: str) -> int:
        """GPUs one LLM server process shards the model over: llm.tensorParallelSize, else
        the version's GPUs per pod (the two are kept equal by `_check_llm`)."""
        explicit = self.llm_settings().tensor_parallel_size
        return explicit if explicit is not None else max(self.gpus(version), 1)

    def streams_weights(self) -> bool:
        """The server reads s3:// itself (vllm/sglang with llm.weights stream, triton)."""
        if self.server in LLM_SERVERS:
            return self.llm_settings().weights == "stream"
        return self.server == "triton"

    def _gpu_path(self, version: str) -> tuple[str, ...]:
        """Where the version's GPU count is written: its own resources, else the model's."""
        own = self.versions[version].resources
        if own is not None and own.gpu:
            return ("versions", version, "resources", "gpu")
        return ("resources", "gpu")

    def _check_llm(self) -> None:
        """The LLM presets: one tensor-parallel shard per GPU of the pod, and extra flags that
        do not fight the preset's.

        vLLM and SGLang start one worker per tensor-parallel rank, each on its own GPU
        (CUDA_VISIBLE_DEVICES is what the NVIDIA device plugin hands the container), so fewer
        GPUs than ranks fails at start and more leaves GPUs idle but reserved: the two must
        be equal. A flag given twice on an argparse command line silently takes the last
        value, so an extra flag the preset sets would override it behind the config's back
        (a port the probes and Service do not know, a model path not from the bucket)."""
        if self.server not in LLM_SERVERS:
            if self.llm is not None:
                raise ConfigPathError(
                    ("llm",),
                    f"only allowed with server vllm or sglang (this model uses {self.server!r})",
                )
            return
        llm = self.llm_settings()
        for version in sorted(self.versions):
            gpus = self.gpus(version)
            gpu_path = ".".join(self._gpu_path(version))
            if gpus == 0:
                raise ConfigPathError(
                    self._gpu_path(version),
                    f"server {self.server!r} needs at least one GPU per pod (version "
                    f"{version!r} has none): set {gpu_path} to the tensor-parallel size",
                )
            if llm.tensor_parallel_size is not None and llm.tensor_parallel_size != gpus:
                raise ConfigPathError(
                    ("llm", "tensorParallelSize"),
                    f"{llm.tensor_parallel_size} differs from {gpu_path} ({gpus}) of version "
                    f"{version!r}: the server runs one tensor-parallel rank per GPU of the "
                    "pod, so the two must be equal (remove llm.tensorParallelSize to use the "
                    "GPU count)",
                )
        for index, arg in enumerate(llm.extra_args):
            reason = preset_flag(self.server, arg)
            if reason is not None:
                raise ConfigPathError(("llm", "extraArgs", index), reason)
        self._check_llm_retries()

    def _check_llm_retries(self) -> None:
        """Retries that never run a generation twice or cut a stream.

        Envoy retries only until the response starts downstream ("We don't retry on a global
        timeout or if we already started the response", source/common/router/router.cc
        `Filter::onUpstreamReset`), so no retry repeats tokens a client has seen. What it can
        repeat is a generation the server was running when it failed before answering (a
        reset, or Envoy's own 504): `5xx`, `gateway-error`, `reset` and 504 are refused. And
        the per-try timer runs until the whole response is read (it is disarmed only when the
        upstream request is cleaned up, router/upstream_request.cc `UpstreamRequest::cleanUp`),
        so a perTryTimeout would cut every stream longer than itself."""
        retries = self.retries
        if retries is None:
            return
        if retries.per_try_timeout is not None:
            raise ConfigPathError(
                ("retries", "perTryTimeout"),
                f"not allowed with server {self.server!r}: Envoy's per-try timer runs until the "
                "whole response is read, so it would cut every streamed generation longer "
                "than itself; bound a request with timeout instead",
            )
        tokens = [t for t in (retries.retry_on or "").split(",") if t]
        rerun = [t for t in tokens if t in GENERATION_RERUN_RETRY_ON]
        if rerun:
            raise ConfigPathError(
                ("retries", "retryOn"),
                f"{', '.join(rerun)} would retry a request the server may be generating (a "
                "reset, or the mesh's own 504), running the generation again on another pod; "
                "use conditions that fire before the server has the request, e.g. "
                "connect-failure,refused-stream,503 (Envoy never retries once the response "
                "started)",
            )

    def gpus(self, version: str) -> int:
        """nvidia.com/gpu per pod of a version: its own resources.gpu, else the model's."""
        own = self.versions[version].resources
        if own is not None and own.gpu:
            return own.gpu
        return self.resources.gpu if self.resources is not None else 0

    def large_image(self) -> bool:
        """The image size class: GPU server images (Triton, anything that requests a GPU or
        comes from NVIDIA's registry) are 10+ GB, the others a few hundred MB."""
        return (
            self.server in ("triton", *sorted(LLM_SERVERS))
            or any(self.gpus(v) for v in self.versions)
            or any(v.image.startswith(LARGE_IMAGE_REGISTRIES) for v in self.versions.values())
        )

    def startup_budget(self) -> StartupBudget:
        """Seconds one pod of this model may take to start, and its progress deadline (see
        mesh.config.startup). One budget for every version: the slowest class decides."""
        return startup_budget(
            self.startup,
            self.server,
            self.large_image(),
            quantity_bytes(self.disk_size),
            self.streams_weights(),
        )

    def pods_per_rollout(self, version: str) -> int:
        """Pods a rollout of this version replaces, one at a time (maxSurge 1 or
        maxUnavailable 1): its replicas, or autoscaling.maxReplicas when the HPA may have
        scaled it out."""
        if self.autoscaling is not None and self.versions[version].replicas > 0:
            return self.autoscaling.max_replicas
        return self.versions[version].replicas

    def single_pod_replacements(self) -> list[str]:
        """Versions that receive requests and that `rollout: replace` would take down
        entirely: one pod (with autoscaling, a minimum of one), stopped before the next one
        is ready."""
        if self.rollout != "replace":
            return []
        return [v for v in sorted(self.routed_versions()) if self.versions[v].replicas == 1]

    def _check_routing(self) -> None:
        if self.progressive is not None:
            self._check_progressive()
        elif self.canary is not None and self.canary.weight is None:
            raise ConfigPathError(
                ("canary", "weight"), "is required: the percent of traffic on the canary, 0..100"
            )
        self._check_versions_exist()
        if self.mirror is not None and self.mirror.version in self.traffic():
            raise ConfigPathError(
                ("mirror", "version"),
                f"{self.mirror.version!r} already receives live traffic "
                f"({self.traffic()[self.mirror.version]}%); mirror to a version outside the "
                "weighted route, e.g. the canary at weight 0",
            )
        self._check_timeouts()
        for name, reason in self.routed_versions().items():
            if self._deployed_replicas(name) == 0:
                raise ConfigPathError(
                    ("versions", name, "replicas"),
                    f"version {name!r} {reason} and cannot have 0 replicas",
                )

    def _check_progressive(self) -> None:
        if self.matches:
            raise ConfigPathError(
                ("matches",),
                "not available in progressive mode: Flagger owns the VirtualService; remove "
                "the matches or the progressive block",
            )
        if self.mirror is not None:
            raise ConfigPathError(
                ("mirror",),
                "not available in progressive mode: Flagger owns the VirtualService; remove "
                "the mirror or the progressive block",
            )
        if self.canary is not None and self.canary.weight is not None:
            raise ConfigPathError(
                ("canary", "weight"),
                "Flagger sets the weights in progressive mode; remove canary.weight (the "
                "canary block only names the version to roll out)",
            )

    def _check_versions_exist(self) -> None:
        names = ", ".join(sorted(self.versions))
        wanted: list[tuple[tuple[str, ...], str]] = [
            (("matches", rule, "version"), match.version) for rule, match in self.matches.items()
        ]
        if self.mirror is not None:
            wanted.append((("mirror", "version"), self.mirror.version))
        for path, version in wanted:
            if version not in self.versions:
                raise ConfigPathError(
                    path, f"{version!r} is not a version of this model; defined: {names}"
                )

    def _check_timeouts(self) -> None:
        retries = self.retries
        if self.timeout is None or retries is None or retries.per_try_timeout is None:
            return
        budget = retries.attempts * duration_millis(retries.per_try_timeout)
        if budget > duration_millis(self.timeout):
            raise ConfigPathError(
                ("retries", "perTryTimeout"),
                f"attempts x perTryTimeout = {budget}ms exceeds timeout {self.timeout}; the "
                "request timeout would cut the retries short (lower them or raise timeout)",
            )

    def _deployed_replicas(self, version: str) -> int:
        return self.versions[version].replicas

    def traffic(self) -> dict[str, int]:
        """Percent of the weighted (live) route per version; versions at 0% are left out.

        Empty in progressive mode: Flagger moves the weights at run time.
        """
        if self.progressive is not None:
            return {}
        weight = self.canary.weight if self.canary is not None else None
        if self.canary is None or not weight:
            return {self.stable: 100}
        if weight == 100:
            return {self.canary.version: 100}
        return {self.stable: 100 - weight, self.canary.version: weight}

    def ordered_matches(self) -> list[tuple[str, MatchRule]]:
        """Match rules in the order Istio tries them: by priority, then by name."""
        return sorted(self.matches.items(), key=lambda item: (item[1].priority, item[0]))

    def target_version(self) -> str:
        """Progressive mode: the version the Flagger target Deployment runs (the canary if
        one is named, else stable). Flagger promotes it once the analysis passes."""
        return self.canary.version if self.canary is not None else self.stable

    def routed_versions(self) -> dict[str, str]:
        """Every version that receives requests, with why: weight, a match rule or a mirror.

        These need pods, and removing one of them drops requests (see `mesh diff`).
        """
        if self.progressive is not None:
            return {self.target_version(): "is the Flagger target"}
        routed = {v: f"receives {w}% of traffic" for v, w in self.traffic().items()}
        for rule, match in self.ordered_matches():
            routed.setdefault(match.version, f"receives the requests of match rule {rule!r}")
        if self.mirror is not None and self.mirror.percent > 0:
            routed.setdefault(
                self.mirror.version, f"receives {self.mirror.percent:g}% mirrored traffic"
            )
        return routed
