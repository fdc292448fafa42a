"""Typed stack config: the one place that says what a valid ml-mesh stack is.

Every key a user can write in `Pulumi.<stack>.yaml` under the `ml-mesh:` namespace is a field
here, in camelCase exactly as written in YAML. Models and versions are maps keyed by name, never
lists, so that every change a user makes day to day (shift the canary, scale a version) is one
`pulumi config set --path ...` command.

Checks come in two layers: field formats (pydantic types and validators) and rules across
fields (`model_validator`s that raise `ConfigPathError` naming the offending sub-path). Both end
up in one `ConfigError` whose message names the stack and the config path.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

# --- formats -------------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# Characters AWS documents as safe in object keys, plus `/` as the folder separator.
_S3_KEY = re.compile(r"^[A-Za-z0-9!_.*'()/-]+$")
_IMAGE_REPO = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)
_IMAGE_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_IMAGE_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return value


def _service_name(value: str) -> str:
    if len(value) > 63 or not _DNS1035_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use at most 63 lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit (it names a Kubernetes "
            "Service)"
        )
    return value


def _fqdn(value: str) -> str:
    labels = value.split(".")
    if (
        len(value) > 253
        or len(labels) < 2
        or not all(len(label) <= 63 and _DNS1123_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(
            f"{value!r} is not a fully qualified domain name such as models.example.com "
            "(lowercase labels separated by dots, no wildcards)"
        )
    return value


def _image(value: str) -> str:
    reference, _, digest = value.partition("@")
    if digest and not _IMAGE_DIGEST.match(digest):
        raise ValueError(f"{value!r}: a digest must look like @sha256:<64 hex digits>")
    last = reference.rsplit("/", 1)[-1]
    repo, tag = reference, ""
    if ":" in last:
        repo, tag = reference.rsplit(":", 1)
        if not _IMAGE_TAG.match(tag):
            raise ValueError(f"{value!r}: {tag!r} is not a valid image tag")
    if not _IMAGE_REPO.match(repo):
        raise ValueError(f"{value!r} is not a valid image reference")
    if not tag and not digest:
        raise ValueError(
            f"{value!r} has no tag or digest; pin it, e.g. {value}:1.2.3 or {value}@sha256:..."
        )
    if tag == "latest" and not digest:
        raise ValueError(f"{value!r} uses ':latest'; pin an explicit version tag or a digest")
    return value


def _bucket(value: str) -> str:
    reason = ""
    if not 3 <= len(value) <= 63:
        reason = "must be 3 to 63 characters long"
    elif not re.match(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$", value):
        reason = "may contain only lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    elif "." in value:
        reason = (
            "contains '.', which breaks HTTPS with virtual-hosted S3 addressing "
            "(the certificate *.s3.<region>.amazonaws.com does not match it)"
        )
    elif value.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or value.endswith(
        ("-s3alias", "--ol-s3", "--x-s3", "--table-s3")
    ):
        reason = "uses a prefix or suffix that AWS reserves"
    if reason:
        raise ValueError(f"{value!r} is not a valid S3 bucket name: it {reason}")
    return value


def _model_path(value: str) -> str:
    if value.startswith("s3://"):
        raise ValueError(
            f"{value!r}: give the key prefix inside the bucket (e.g. sentiment/1), "
            "not an s3:// URL; the bucket comes from storage.bucket"
        )
    segments = value.strip("/").split("/")
    if (
        value.startswith("/")
        or not _S3_KEY.match(value)
        or "//" in value
        or any(s in (".", "..") for s in segments)
        or len(value) > 1024
    ):
        raise ValueError(
            f"{value!r} is not a valid model path: use an S3 key prefix such as sentiment/1 "
            "(letters, digits, '!-_.*'()' and '/', no leading '/', no '.' or '..' segments)"
        )
    return value.rstrip("/")


def _quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi")
    return value


def _region(value: str) -> str:
    if not _AWS_REGION.match(value):
        raise ValueError(f"{value!r} is not an AWS region such as eu-west-1")
    return value


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise ValueError(
            f"{value!r} is not an IAM role ARN such as arn:aws:iam::123456789012:role/model-reader"
        )
    return value


def _http_path(value: str) -> str:
    if not _HTTP_PATH.match(value):
        raise ValueError(f"{value!r} is not an absolute HTTP path such as /healthz")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
ServiceName = Annotated[str, AfterValidator(_service_name)]
Fqdn = Annotated[str, AfterValidator(_fqdn)]
Image = Annotated[str, AfterValidator(_image)]
Bucket = Annotated[str, AfterValidator(_bucket)]
ModelPath = Annotated[str, AfterValidator(_model_path)]
Quantity = Annotated[str, AfterValidator(_quantity)]
Region = Annotated[str, AfterValidator(_region)]
HttpPath = Annotated[str, AfterValidator(_http_path)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]

# Booleans as Pulumi's own config.get_bool reads them: true/false, or the strings "true"/"True"/
# "false"/"False" that `pulumi config set <key> true` writes. Nothing looser ("yes", 1), so the
# JSON Schema of stack files (`python -m mesh schema`) can say exactly what is accepted.
_PULUMI_BOOL_STRINGS = {"true": True, "True": True, "false": False, "False": False}
Flag = Annotated[
    bool,
    BeforeValidator(lambda v: _PULUMI_BOOL_STRINGS.get(v, v) if isinstance(v, str) else v),
    Field(strict=True),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"enum": list(_PULUMI_BOOL_STRINGS)}]}),
]

# Fields whose values may be Pulumi secrets. A secret anywhere else is refused, because those
# values end up in resource names, labels or hosts, which Pulumi cannot keep secret.
SECRET_CAPABLE = "secretCapable"
RoleArn = Annotated[str, AfterValidator(_role_arn), Field(json_schema_extra={SECRET_CAPABLE: True})]
EnvValue = Annotated[str, Field(max_length=32768, json_schema_extra={SECRET_CAPABLE: True})]

# Placeholders used where a secret cannot be decrypted (offline render): they pass the field's
# own format check and are shown as SECRET_PLACEHOLDER in the output.
SECRET_PLACEHOLDER = "[secret]"
PLACEHOLDER_ROLE_ARN = "arn:aws:iam::000000000000:role/ml-mesh-secret-placeholder"


class ConfigPathError(ValueError):
    """A cross-field rule failed at `path` (relative to the model that raised it)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message


class ConfigError(Exception):
    """Stack config is invalid. `str()` is the one line a user sees at the terminal."""

    def __init__(self, stack: str, path: str, problem: str, more: int = 0):
        self.stack, self.path, self.problem, self.more = stack, path, problem, more
        where = f"{path}: " if path else ""
        tail = f" (and {more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
        super().__init__(f"ml-mesh: invalid config for stack '{stack}': {where}{problem}{tail}")


# --- the model -------------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
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


class Canary(_Config):
    version: DnsLabel = Field(description="the version that receives `weight` percent")
    weight: Annotated[int, Field(strict=True, ge=0, le=100)] = Field(
        description="percent of traffic on the canary: 0 = deployed but not routed, "
        "100 = all traffic (promotion before cleanup)"
    )


class Version(_Config):
    image: Image = Field(description="container image with an explicit tag or digest")
    model_path: ModelPath = Field(description="key prefix of this version in the model bucket")
    replicas: Annotated[int, Field(strict=True, ge=0, le=1000)] = 1
    resources: Resources | None = None


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

    @model_validator(mode="after")
    def _ports_differ(self) -> CustomServer:
        if self.grpc_port is not None and self.grpc_port == self.http_port:
            raise ConfigPathError(("grpcPort",), "must differ from httpPort")
        if self.model_dir.rstrip("/") in ("/", "/tmp"):
            raise ConfigPathError(("modelDir",), "must not be / or /tmp (both are mounted already)")
        return self


class Model(_Config):
    server: Literal["tensorflow-serving", "triton", "custom"] = Field(
        description="model server preset"
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
        for name, version in self.versions.items():
            routed = self.traffic().get(name, 0) > 0
            if routed and version.replicas == 0:
                raise ConfigPathError(
                    ("versions", name, "replicas"),
                    f"version {name!r} receives {self.traffic()[name]}% of traffic and cannot "
                    "have 0 replicas",
                )
        if self.hosts is not None and len(set(self.hosts)) != len(self.hosts):
            raise ConfigPathError(("hosts",), "lists the same host twice")
        return self

    def traffic(self) -> dict[str, int]:
        """Percent of live traffic per version; versions without traffic are left out."""
        if self.canary is None or self.canary.weight == 0:
            return {self.stable: 100}
        if self.canary.weight == 100:
            return {self.canary.version: 100}
        return {self.stable: 100 - self.canary.weight, self.canary.version: self.canary.weight}


class GatewayTls(_Config):
    credential_name: DnsLabel = Field(
        description="kubernetes.io/tls Secret in the namespace of the ingress gateway pods"
    )
    https_redirect: Flag = Field(default=True, description="redirect plain HTTP to HTTPS")


class Gateway(_Config):
    name: DnsLabel = "ml-gateway"
    domain: Fqdn = Field(description="each model is served at <model>.<domain>")
    selector: dict[str, str] = Field(
        default={"istio": "ingressgateway"},
        min_length=1,
        description="labels of the ingress gateway pods",
    )
    tls: GatewayTls | None = None


class Storage(_Config):
    bucket: Bucket
    region: Region


class Istio(_Config):
    api_version: Literal["v1", "v1beta1", "v1alpha3"] = Field(
        default="v1",
        description="networking.istio.io version; v1 needs Istio 1.22+, v1beta1 Istio 1.8+",
    )
    revision: DnsLabel | None = Field(
        default=None, description="label the namespace istio.io/rev=<revision> instead"
    )
    native_sidecars: Flag = Field(
        default=True,
        description="run istio-proxy as a Kubernetes native sidecar (Istio 1.19+, Kubernetes "
        "1.29+), so init containers reach S3 through the mesh",
    )


class Images(_Config):
    model_fetcher: Image = Field(
        default="amazon/aws-cli:2.17.37",
        description="image of the init container that copies a model version from S3",
    )


class StackConfig(_Config):
    """All of `ml-mesh:*` for one stack."""

    namespace: DnsLabel = "ml-serving"
    protected: Flag = Field(
        default=False,
        description="a production stack: the namespace is protected from deletion",
    )
    gateway: Gateway
    storage: Storage
    istio: Istio = Istio()
    images: Images = Images()
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

    def model_hosts(self, name: str) -> list[str]:
        """External hosts of a model: its own, or `<model>.<gateway.domain>`."""
        model = self.models[name]
        return list(model.hosts) if model.hosts else [f"{name}.{self.gateway.domain}"]

    def service_host(self, name: str) -> str:
        return f"{name}.{self.namespace}.svc.cluster.local"


# --- loading ---------------------------------------------------------------------------------


def _schema_at(loc: tuple[str | int, ...]) -> Any:
    """The type annotation the schema has at `loc` (None where the schema has no such key)."""
    node: Any = StackConfig
    for part in loc:
        if getattr(node, "__origin__", None) is dict:
            node = node.__args__[1]  # `part` is a key of a map (a model, a version, an env var)
            continue
        node = _unwrap(node)
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        field = next((f for f in node.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        node = _unwrap(field.annotation)
    return node


def fields_of(loc: tuple[str | int, ...]) -> list[str] | None:
    """The config keys allowed at `loc`, for 'unknown setting' messages."""
    node = _unwrap(_schema_at(loc))
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return None


def is_secret_capable(loc: tuple[str | int, ...]) -> bool:
    """Whether the value at `loc` may be a Pulumi secret (see SECRET_CAPABLE)."""
    return _is_marked(_schema_at(loc))


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    args = getattr(annotation, "__args__", ())
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dotted_path(loc: tuple[str | int, ...]) -> str:
    """`models.sentiment.canary.weight`; a key that is not plain is quoted the way
    `pulumi config set --path` takes it (`gateway.selector["app.kubernetes.io/name"]`), in ASCII,
    so a key holding a newline cannot break the one-line message."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):
            out += f"[{json.dumps(str(part))}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(error: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    loc = tuple(p for p in error["loc"] if p not in ("function-after", "[key]"))
    kind = error["type"]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, ConfigPathError):
        return loc + ctx_error.path, ctx_error.message
    if kind == "extra_forbidden":
        allowed = fields_of(loc[:-1])
        hint = f"; valid keys here: {', '.join(allowed)}" if allowed else ""
        return loc, f"unknown setting{hint}"
    if kind == "missing":
        return loc, "is required but missing"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif "input" in error and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    return loc, message


def parse_config(raw: dict[str, Any], stack: str) -> StackConfig:
    """Validate the `ml-mesh:*` config of one stack, or raise one ConfigError."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        loc, message = _describe(errors[0])
        raise ConfigError(stack, dotted_path(loc), message, more=len(errors) - 1) from None


def secret_capable_paths(config: StackConfig) -> list[tuple[str | int, ...]]:
    """Paths of the set values whose fields may hold secrets (see SECRET_CAPABLE)."""
    found: list[tuple[str | int, ...]] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, BaseModel):
            for name, field in type(node).model_fields.items():
                value, key = getattr(node, name), field.alias or name
                kind = _secret_capable_kind(field.annotation)
                if value is None:
                    continue
                if kind == "value":
                    found.append((*path, key))
                elif kind == "map-values":
                    found.extend((*path, key, k) for k in value)
                else:
                    walk(value, (*path, key))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))

    walk(config, ())
    return found


def _is_marked(annotation: Any) -> bool:
    return any(
        isinstance(getattr(meta, "json_schema_extra", None), dict)
        and meta.json_schema_extra.get(SECRET_CAPABLE)
        for meta in getattr(annotation, "__metadata__", ())
    )


def _secret_capable_kind(annotation: Any) -> str | None:
    """'value' for a secret-capable field, 'map-values' for a map of such values."""
    annotation = _unwrap(annotation)
    if _is_marked(annotation):
        return "value"
    if getattr(annotation, "__origin__", None) is dict and _is_marked(annotation.__args__[1]):
        return "map-values"
    return None


def value_at(config: StackConfig, path: tuple[str | int, ...]) -> Any:
    node: Any = config
    for part in path:
        if isinstance(node, BaseModel):
            name = next(n for n, f in type(node).model_fields.items() if (f.alias or n) == part)
            node = getattr(node, name)
        else:
            node = node[part]
    return node
