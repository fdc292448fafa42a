"""Typed stack config: the one place that says what a valid ml-mesh stack is.

Every key a user can write in `Pulumi.<stack>.yaml` under the `ml-mesh:` namespace is a field
here, in camelCase exactly as written in YAML. Models and versions are maps keyed by name, never
lists, so that every change a user makes day to day (shift the canary, scale a version) is one
`pulumi config set --path ...` command.

Checks come in two layers: field formats (pydantic types and validators) and rules across
fields (`model_validator`s that raise `ConfigPathError` naming the offending sub-path). Both end
up in one `ConfigError` that lists every problem, each line naming the stack and config path.

One module per concern; this package re-exports all of them, so `from mesh.config import X`
works for every public name:

- `formats`: value formats (validators, the `Annotated` types built on them, Flag,
  SECRET_CAPABLE and the secret placeholders)
- `errors`: ConfigPathError, Problem, ConfigError (every problem of a stack), `dotted_path`
- `base`: the base model (camelCase aliases, unknown keys refused, frozen)
- `routing`, `resilience`, `scheduling`: per-model settings (canary, matches, mirror, retries,
  progressive; traffic policy, fault; autoscaling and GPU placement)
- `startup`: start-up budgets (image pull, download, startup probe) and rollout strategy
- `llm`: settings of the vllm and sglang presets (served name, context length, tensor
  parallelism, weights loading, extra flags) and the flags each preset sets
- `model`: Model, its versions and custom server, and the rules across a model's settings
- `storage`, `security`, `telemetry`: stack-wide settings
- `platform`: what the target cluster is (Kubernetes and Istio versions, Istio CNI, GPU node
  labels, the monitoring release), the supported matrix
- `stack`: StackConfig, gateway, Istio and images, and the rules across models
- `introspection`: walks of the schema and of a config by path (valid keys, secret-capable values)
- `parse`: `parse_config`, raw config in, StackConfig or one ConfigError (all problems) out;
  `project_keys`, the project's keys of a stack's config (misspelt namespaces kept, to be named)
"""

from mesh.config.errors import ConfigError, ConfigPathError, Problem, dotted_path
from mesh.config.formats import (
    PLACEHOLDER_ROLE_ARN,
    PROM_DURATION,
    RETRY_ON,
    SECRET_CAPABLE,
    SECRET_PLACEHOLDER,
    Bucket,
    Count,
    DnsLabel,
    DnsSubdomain,
    Duration,
    EnvName,
    EnvValue,
    FaultPercent,
    Flag,
    Fqdn,
    HeaderName,
    HttpPath,
    HttpUrl,
    Image,
    IstioPath,
    LabelKey,
    LabelValue,
    ModelPath,
    Port,
    Principal,
    PromDuration,
    ProviderName,
    Quantity,
    Regex,
    Region,
    RetryOn,
    RoleArn,
    SamplingPercent,
    SecretKey,
    ServiceAccountRef,
    ServiceFqdn,
    ServiceName,
    WeightPercent,
    credential_problem,
    duration_millis,
    prom_duration,
)
from mesh.config.introspection import (
    fields_of,
    is_secret_capable,
    secret_capable_paths,
    value_at,
)
from mesh.config.llm import LLM_SERVERS, PRESET_FLAGS, LlmServer, preset_flag
from mesh.config.model import (
    CustomServer,
    Model,
    ResourceQuantities,
    Resources,
    SecretKeySelector,
    Version,
)
from mesh.config.parse import (
    PROJECT,
    engine_value,
    is_misspelt_project,
    parse_config,
    project_keys,
)
from mesh.config.platform import (
    GPU_OPERATOR_LABEL,
    ISTIO_VERSIONS,
    KUBERNETES_VERSIONS,
    Platform,
)
from mesh.config.resilience import (
    ConnectionPool,
    Fault,
    FaultAbort,
    FaultDelay,
    HttpPool,
    LoadBalancer,
    OutlierDetection,
    TcpPool,
    TrafficPolicy,
)
from mesh.config.routing import (
    LOADTESTER_SERVICE_ACCOUNT,
    Canary,
    HeaderMatch,
    LoadTest,
    MatchRule,
    Mirror,
    Progressive,
    Retries,
)
from mesh.config.scheduling import (
    DEFAULT_CPU_TARGET,
    Autoscaling,
    CustomMetric,
    GpuScheduling,
    Scheduling,
    Toleration,
)
from mesh.config.security import DEFAULT_GATEWAY_PRINCIPAL, Security
from mesh.config.stack import Gateway, GatewayTls, Images, Istio, StackConfig
from mesh.config.startup import Rollout, Startup, StartupBudget
from mesh.config.storage import CredentialsSecret, Storage, StorageEndpoint
from mesh.config.telemetry import (
    DEFAULT_PROMETHEUS_ADDRESS,
    AccessLogging,
    Alerts,
    Collector,
    Dashboard,
    Prometheus,
    Telemetry,
    Tracing,
)

__all__ = [
    "DEFAULT_CPU_TARGET",
    "DEFAULT_GATEWAY_PRINCIPAL",
    "DEFAULT_PROMETHEUS_ADDRESS",
    "GPU_OPERATOR_LABEL",
    "ISTIO_VERSIONS",
    "KUBERNETES_VERSIONS",
    "LLM_SERVERS",
    "LOADTESTER_SERVICE_ACCOUNT",
    "PLACEHOLDER_ROLE_ARN",
    "PRESET_FLAGS",
    "PROJECT",
    "PROM_DURATION",
    "RETRY_ON",
    "SECRET_CAPABLE",
    "SECRET_PLACEHOLDER",
    "AccessLogging",
    "Alerts",
    "Autoscaling",
    "Bucket",
    "Canary",
    "Collector",
    "ConfigError",
    "ConfigPathError",
    "ConnectionPool",
    "Count",
    "CredentialsSecret",
    "CustomMetric",
    "CustomServer",
    "Dashboard",
    "DnsLabel",
    "DnsSubdomain",
    "Duration",
    "EnvName",
    "EnvValue",
    "Fault",
    "FaultAbort",
    "FaultDelay",
    "FaultPercent",
    "Flag",
    "Fqdn",
    "Gateway",
    "GatewayTls",
    "GpuScheduling",
    "HeaderMatch",
    "HeaderName",
    "HttpPath",
    "HttpPool",
    "HttpUrl",
    "Image",
    "Images",
    "Istio",
    "IstioPath",
    "LabelKey",
    "LabelValue",
    "LlmServer",
    "LoadBalancer",
    "LoadTest",
    "MatchRule",
    "Mirror",
    "Model",
    "ModelPath",
    "OutlierDetection",
    "Platform",
    "Port",
    "Principal",
    "Problem",
    "Progressive",
    "PromDuration",
    "Prometheus",
    "ProviderName",
    "Quantity",
    "Regex",
    "Region",
    "ResourceQuantities",
    "Resources",
    "Retries",
    "RetryOn",
    "RoleArn",
    "Rollout",
    "SamplingPercent",
    "Scheduling",
    "SecretKey",
    "SecretKeySelector",
    "Security",
    "ServiceAccountRef",
    "ServiceFqdn",
    "ServiceName",
    "StackConfig",
    "Startup",
    "StartupBudget",
    "Storage",
    "StorageEndpoint",
    "TcpPool",
    "Telemetry",
    "Toleration",
    "Tracing",
    "TrafficPolicy",
    "Version",
    "WeightPercent",
    "credential_problem",
    "dotted_path",
    "duration_millis",
    "engine_value",
    "fields_of",
    "is_misspelt_project",
    "is_secret_capable",
    "parse_config",
    "preset_flag",
    "project_keys",
    "prom_duration",
    "secret_capable_paths",
    "value_at",
]
