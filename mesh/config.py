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
from decimal import Decimal
from typing import Annotated, Any, Literal

import re2
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


_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_NANOS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_HTTP_TOKEN_LOWER = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
# RULES.md 20: the retry conditions Envoy knows, or a numeric HTTP status.
RETRY_ON = frozenset(
    [
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ]
)
_HTTP_URL = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
)


def _nanos(value: str) -> Decimal:
    return sum(
        (Decimal(number) * _NANOS[unit] for number, unit in _GO_DURATION_PART.findall(value)),
        Decimal(0),
    )


def duration_millis(value: str) -> int:
    """Milliseconds of a Go duration that `_duration` accepted."""
    return int(_nanos(value) // 10**6)


def _duration(value: str) -> str:
    """Istio's duration rule (RULES.md 5): Go syntax, at least 1ms, whole milliseconds."""
    if not _GO_DURATION.match(value):
        raise ValueError(f"{value!r} is not a duration: write it the Go way, e.g. 250ms, 5s, 1m30s")
    nanos = _nanos(value)
    if nanos < 10**6 or nanos % 10**6:
        raise ValueError(f"{value!r} must be at least 1ms and a whole number of milliseconds")
    return value


def _header_name(value: str) -> str:
    if not _HTTP_TOKEN_LOWER.match(value):
        raise ValueError(
            f"{value!r} is not a header name: use a lowercase HTTP token such as x-beta-user "
            "(Envoy matches lowercased header names)"
        )
    if value == "cookie":
        raise ValueError("match cookies with the rule's `cookie` regex, not as a header")
    return value


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error goes into our one-line message, not to stderr


def _regex(value: str) -> str:
    """RULES.md 12: RE2 syntax, non-empty, at most 1024 characters."""
    if not value or len(value) > 1024:
        raise ValueError("a regex must be 1 to 1024 characters long")
    try:
        re2.compile(value, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"{value!r} is not an RE2 regex ({reason}); Envoy uses RE2: no lookaround, "
            "no backreferences"
        ) from None
    return value


def _retry_on(value: str) -> str:
    unknown = [c for c in value.split(",") if c not in RETRY_ON and not _is_status(c)]
    if not value or unknown:
        listed = ", ".join(map(repr, unknown)) or "''"
        raise ValueError(
            f"{value!r}: unknown retry condition(s) {listed}; "
            "give a comma-separated list without spaces of "
            f"{', '.join(sorted(RETRY_ON))} or HTTP status codes"
        )
    return value


def _is_status(condition: str) -> bool:
    return condition.isdigit() and 100 <= int(condition) <= 599


def _http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"{value!r} is not an http(s) URL such as http://flagger-loadtester.test/")
    return value


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


_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")
# Istio AuthorizationPolicy path forms: exact, prefix `/a*`, suffix `*a`, or `*` (any).
_PATH_CHARS = r"[A-Za-z0-9._~!$&'()+,;=:@%/-]"
_ISTIO_PATH = re.compile(rf"^(\*|\*{_PATH_CHARS}+|/{_PATH_CHARS}*\*?)$")
# Environment variable names that carry credentials: one of these words, or one of these pairs.
_CREDENTIAL_WORDS = {"SECRET", "SECRETS", "PASSWORD", "PASSWD", "TOKEN", "APIKEY", "CREDENTIALS"}
_CREDENTIAL_PAIRS = ("ACCESS_KEY", "API_KEY", "PRIVATE_KEY", "SECRET_KEY", "AUTH_KEY")
# Values that are credentials whatever their name: AWS access key ids and PEM private keys.
_CREDENTIAL_VALUE = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes object name (lowercase letters, digits, '-' "
            "and '.', at most 253 characters)"
        )
    return value


def _secret_key(value: str) -> str:
    if not _SECRET_KEY.match(value):
        raise ValueError(f"{value!r} is not a valid Secret key (letters, digits, '-', '_', '.')")
    return value


def _label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))) or not (
        _LABEL_NAME.match(name)
    ):
        raise ValueError(f"{value!r} is not a valid label key such as nvidia.com/gpu.present")
    return value


def _label_value(value: str) -> str:
    if not _LABEL_VALUE.match(value):
        raise ValueError(f"{value!r} is not a valid label value (at most 63 characters)")
    return value


def _principal(value: str) -> str:
    trust_domain, _, rest = value.partition("/")
    match = re.match(r"^ns/([^/]+)/sa/([^/]+)$", rest)
    if not (
        trust_domain
        and _DNS1123_SUBDOMAIN.match(trust_domain.lower())
        and match
        and _DNS1123_LABEL.match(match[1])
        and _DNS1123_SUBDOMAIN.match(match[2])
    ):
        raise ValueError(
            f"{value!r} is not a SPIFFE principal such as "
            "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
        )
    return value


def _service_account_ref(value: str) -> str:
    namespace, _, account = value.partition("/")
    if not (_DNS1123_LABEL.match(namespace) and _DNS1123_SUBDOMAIN.match(account)):
        raise ValueError(
            f"{value!r} is not <namespace>/<serviceaccount>, such as checkout/checkout-api"
        )
    return value


def _istio_path(value: str) -> str:
    if not _ISTIO_PATH.match(value) or value.count("*") > 1:
        raise ValueError(
            f"{value!r} is not an Istio authorization path: an exact path (/v1/predict), a "
            "prefix (/v1/*), a suffix (*:predict) or * for any path"
        )
    return value


def credential_problem(name: str, value: str = "") -> str | None:
    """Why an environment variable looks like it carries a credential in clear, if it does."""
    words = set(name.upper().split("_"))
    if words & _CREDENTIAL_WORDS or any(pair in name.upper() for pair in _CREDENTIAL_PAIRS):
        return f"{name!r} looks like a credential"
    if _CREDENTIAL_VALUE.search(value):
        return f"the value of {name!r} contains an access key or a private key"
    return None


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
Duration = Annotated[str, AfterValidator(_duration)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
Regex = Annotated[str, AfterValidator(_regex)]
RetryOn = Annotated[str, AfterValidator(_retry_on)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
WeightPercent = Annotated[int, Field(strict=True, ge=0, le=100)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]
SecretKey = Annotated[str, AfterValidator(_secret_key)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
Principal = Annotated[str, AfterValidator(_principal)]
ServiceAccountRef = Annotated[str, AfterValidator(_service_account_ref)]
IstioPath = Annotated[str, AfterValidator(_istio_path)]
FaultPercent = Annotated[float, Field(strict=True, ge=0.0001, le=100)]
Count = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]

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
    weight: WeightPercent | None = Field(
        default=None,
        description="percent of traffic on the canary: 0 = deployed but not routed, "
        "100 = all traffic (promotion before cleanup); unset in progressive mode, where "
        "Flagger sets the weights",
    )


class HeaderMatch(_Config):
    """One header condition; exactly one of exact, prefix, regex (an Istio StringMatch).

    Numbers are taken as text: `pulumi config set --path ... 1` stores the number 1, and a
    header value is always a string.
    """

    model_config = ConfigDict(**_Config.model_config, coerce_numbers_to_str=True)

    exact: str | None = None
    prefix: Annotated[str, Field(min_length=1)] | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigPathError((), "give exactly one of exact, prefix, regex")
        return self

    def istio(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class MatchRule(_Config):
    """A/B or dark-launch rule: requests that match go to `version`, before the weighted split.

    All conditions of a rule must hold (headers AND cookie). Rules are tried by ascending
    `priority`, then by name, so their order never depends on how YAML orders a map.
    """

    version: DnsLabel = Field(description="the version that receives the matching requests")
    headers: dict[HeaderName, HeaderMatch] = {}
    cookie: Regex | None = Field(
        default=None,
        description="RE2 regex the whole Cookie header must match, e.g. ^(.*?;)?(beta=1)(;.*)?$",
    )
    priority: Annotated[int, Field(strict=True, ge=0, le=1000)] = Field(
        default=100, description="lower is tried first; equal priorities go by rule name"
    )

    @model_validator(mode="after")
    def _has_condition(self) -> MatchRule:
        if not self.headers and self.cookie is None:
            raise ConfigPathError(
                (),
                "needs at least one condition (headers or cookie); a rule without one would "
                "catch every request and make the weighted route unreachable",
            )
        return self

    def istio_headers(self) -> dict[str, dict[str, str]]:
        headers = {name: match.istio() for name, match in sorted(self.headers.items())}
        if self.cookie is not None:
            headers["cookie"] = {"regex": self.cookie}
        return headers


class Mirror(_Config):
    """Shadow traffic: a copy of `percent` of the weighted route's requests, answers discarded."""

    version: DnsLabel
    percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        description="share of live requests copied to `version`, 0..100, decimals allowed"
    )


class Retries(_Config):
    attempts: Annotated[int, Field(strict=True, ge=0, le=100)] = Field(
        description="retries per request; 0 turns Istio's default retries off"
    )
    per_try_timeout: Duration | None = None
    retry_on: RetryOn | None = None

    @model_validator(mode="after")
    def _off_means_off(self) -> Retries:
        if self.attempts == 0:
            for field, key in (("per_try_timeout", "perTryTimeout"), ("retry_on", "retryOn")):
                if getattr(self, field) is not None:
                    raise ConfigPathError(
                        (key,), "not allowed with attempts 0 (retries off); remove it"
                    )
        return self

    def istio(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class LoadTest(_Config):
    """A Flagger `rollout` webhook that makes traffic while the canary is analysed."""

    url: HttpUrl = Field(description="the flagger-loadtester, e.g. http://flagger-loadtester.test/")
    cmd: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="command the load tester runs, e.g. hey -z 1m -q 10 -c 2 http://..."
    )
    timeout: Duration = "5s"


class Progressive(_Config):
    """Hand the model's rollout to Flagger (automated canary analysis)."""

    interval: Duration = Field(default="1m", description="time between analysis steps")
    threshold: Annotated[int, Field(strict=True, ge=1, le=100)] = Field(
        default=5, description="failed checks before Flagger rolls back"
    )
    step_weight: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    step_weights: (
        Annotated[list[Annotated[int, Field(strict=True, ge=1, le=100)]], Field(min_length=1)]
        | None
    ) = None
    max_weight: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    min_success_rate: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = Field(
        default=99, description="request-success-rate: minimum percent of non-5xx responses"
    )
    max_latency_ms: Annotated[int, Field(strict=True, ge=1, le=600000)] = Field(
        default=500, description="request-duration: maximum P99 latency in milliseconds"
    )
    load_test: LoadTest | None = None

    @model_validator(mode="after")
    def _steps(self) -> Progressive:
        if self.step_weights is not None:
            if self.step_weight is not None:
                raise ConfigPathError(("stepWeight",), "give stepWeight or stepWeights, not both")
            if self.max_weight is not None:
                raise ConfigPathError(
                    ("maxWeight",), "not used with stepWeights: the last step is the maximum"
                )
            if any(b <= a for a, b in zip(self.step_weights, self.step_weights[1:], strict=False)):
                raise ConfigPathError(("stepWeights",), "must be strictly increasing")
        elif self.step > self.maximum:
            raise ConfigPathError(
                ("stepWeight",), f"{self.step} is more than maxWeight {self.maximum}"
            )
        return self

    @property
    def step(self) -> int:
        return self.step_weight if self.step_weight is not None else 10

    @property
    def maximum(self) -> int:
        if self.step_weights is not None:
            return self.step_weights[-1]
        return self.max_weight if self.max_weight is not None else 50

    def largest_step(self) -> int:
        """The largest weight increase Flagger makes in one analysis interval."""
        if self.step_weights is None:
            return self.step
        return max(b - a for a, b in zip([0, *self.step_weights], self.step_weights, strict=False))


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


def _at_least_one_set(model: BaseModel, what: str) -> None:
    if not model.model_fields_set:
        names = ", ".join(f.alias or n for n, f in type(model).model_fields.items())
        raise ConfigPathError((), f"{what} must set at least one of: {names}")


class TcpPool(_Config):
    max_connections: Count | None = None
    connect_timeout: Duration | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> TcpPool:
        _at_least_one_set(self, "connectionPool.tcp")
        return self


class HttpPool(_Config):
    http1_max_pending_requests: Count | None = None
    http2_max_requests: Count | None = None
    max_requests_per_connection: Count | None = None
    max_retries: Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)] | None = None
    idle_timeout: Duration | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> HttpPool:
        _at_least_one_set(self, "connectionPool.http")
        return self


class ConnectionPool(_Config):
    """Circuit-breaking limits each calling proxy keeps towards one version (subset)."""

    tcp: TcpPool | None = None
    http: HttpPool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ConnectionPool:
        _at_least_one_set(self, "connectionPool")  # rule 32 of RULES.md: http or tcp
        return self


class OutlierDetection(_Config):
    """Ejects a pod that keeps failing from its version's load-balancing pool for a while."""

    consecutive_5xx_errors: Count | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: Count | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(strict=True, ge=0, le=100)] | None = None
    min_health_percent: Annotated[int, Field(strict=True, ge=0, le=100)] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> OutlierDetection:
        _at_least_one_set(self, "outlierDetection")
        return self


class LoadBalancer(_Config):
    simple: Literal["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"]


class TrafficPolicy(_Config):
    """DestinationRule traffic policy of a model, applied to every version."""

    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancer | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> TrafficPolicy:
        _at_least_one_set(self, "trafficPolicy")  # rule 31 of RULES.md
        return self


class FaultDelay(_Config):
    fixed_delay: Duration
    percent: FaultPercent


class FaultAbort(_Config):
    http_status: Annotated[int, Field(strict=True, ge=200, le=599)]
    percent: FaultPercent


class Fault(_Config):
    """Injected failures for resilience tests; refused in protected stacks."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Fault:
        _at_least_one_set(self, "fault")  # rule 22 of RULES.md: abort and/or delay
        return self


class CustomMetric(_Config):
    """A per-pod metric served by the custom metrics API (e.g. prometheus-adapter)."""

    name: Annotated[str, Field(pattern=_METRIC_NAME.pattern)]
    average_value: Quantity = Field(description="target average value per pod, e.g. 10 or 500m")


class Autoscaling(_Config):
    """A HorizontalPodAutoscaler per version, from `replicas` up to `maxReplicas`."""

    max_replicas: Annotated[int, Field(strict=True, ge=1, le=1000)]
    target_cpu_utilization: Annotated[int, Field(strict=True, ge=1, le=100)] | None = Field(
        default=None,
        description="percent of the CPU request; 70 when no custom metric is given",
    )
    metric: CustomMetric | None = None

    def cpu_target(self) -> int | None:
        if self.target_cpu_utilization is None and self.metric is None:
            return DEFAULT_CPU_TARGET
        return self.target_cpu_utilization


DEFAULT_CPU_TARGET = 70


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
        return self

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


class Gateway(_Config):
    name: DnsLabel = "ml-gateway"
    domain: Fqdn = Field(description="each model is served at <model>.<domain>")
    selector: dict[str, str] = Field(
        default={"istio": "ingressgateway"},
        min_length=1,
        description="labels of the ingress gateway pods",
    )
    tls: GatewayTls | None = None


class StorageEndpoint(_Config):
    """An S3-compatible store (MinIO, Ceph RGW, ...) instead of AWS S3."""

    host: Fqdn = Field(description="e.g. minio.minio.svc.cluster.local or s3.example.com")
    port: Port | None = Field(default=None, description="default 443 with tls, 80 without")
    tls: Flag = True

    def effective_port(self) -> int:
        return self.port or (443 if self.tls else 80)

    def in_cluster(self) -> bool:
        """A Kubernetes Service of this cluster (<service>.<namespace>.svc.cluster.local)."""
        labels = self.host.split(".")
        return len(labels) == 5 and labels[2:] == ["svc", "cluster", "local"]

    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        default = 443 if self.tls else 80
        port = "" if self.effective_port() == default else f":{self.effective_port()}"
        return f"{scheme}://{self.host}{port}"


class CredentialsSecret(_Config):
    """An existing Secret in the serving namespace holding an S3 access key pair."""

    name: DnsSubdomain
    access_key_id_key: SecretKey = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: SecretKey = "AWS_SECRET_ACCESS_KEY"


class Storage(_Config):
    bucket: Bucket
    region: Region = Field(description="AWS region, or the region an S3-compatible store signs")
    endpoint: StorageEndpoint | None = None
    credentials_secret: CredentialsSecret | None = Field(
        default=None,
        description="read the model store with this key pair instead of an IAM role (roleArn)",
    )


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


# --- telemetry: Istio Telemetry, the Grafana dashboard, the PrometheusRule -------------------

# A Prometheus duration exactly as the Prometheus Operator CRDs accept it (`for`, rate windows).
PROM_DURATION = re.compile(
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)
# Names of meshConfig.extensionProviders entries ("envoy" is built in).
_PROVIDER = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def prom_duration(value: str) -> str:
    """A Prometheus duration such as 30s, 5m or 1h30m (also used by `python -m mesh promql`)."""
    if not value or not PROM_DURATION.match(value):
        raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 5m or 1h30m")
    return value


def _provider(value: str) -> str:
    if len(value) > 253 or not _PROVIDER.match(value):
        raise ValueError(
            f"{value!r} is not a provider name: give the name of an entry of "
            "meshConfig.extensionProviders (letters, digits, '-', '_' and '.'), e.g. envoy"
        )
    return value


ProviderName = Annotated[str, AfterValidator(_provider)]
PromDuration = Annotated[str, AfterValidator(prom_duration)]
SamplingPercent = Annotated[float, Field(strict=True, ge=0, le=100)]


class AccessLogging(_Config):
    enabled: Flag = Field(default=True, description="false turns access logs off for the namespace")
    provider: ProviderName = Field(
        default="envoy",
        description="access log provider from meshConfig.extensionProviders; 'envoy' (the "
        "proxy's stdout) is built in",
    )


class Tracing(_Config):
    sampling_percentage: SamplingPercent = Field(
        default=1.0,
        description="percent of requests traced when no upstream sampling decision was made "
        "(Istio's own default is 1)",
    )
    provider: ProviderName | None = Field(
        default=None,
        description="tracing provider from meshConfig.extensionProviders; default: the mesh's "
        "default tracing provider",
    )


class Dashboard(_Config):
    enabled: Flag = True
    namespace: DnsLabel | None = Field(
        default=None,
        description="namespace of the dashboard ConfigMap (one the Grafana sidecar searches); "
        "default: the serving namespace",
    )
    datasource: Annotated[str, Field(min_length=1, max_length=190)] | None = Field(
        default=None,
        description="name or uid of the Prometheus data source selected by default; "
        "default: Grafana's default Prometheus data source",
    )


class Alerts(_Config):
    enabled: Flag = Field(
        default=False,
        description="create a PrometheusRule (needs the Prometheus Operator CRDs)",
    )
    error_ratio_margin: Annotated[float, Field(strict=True, gt=0, le=100)] = Field(
        default=1.0,
        description="percentage points by which a canary's error ratio may exceed the stable "
        "version's before the alert fires",
    )
    error_ratio_for: PromDuration = Field(
        default="10m", description="how long the canary must stay above that margin"
    )
    no_ready_pods_for: PromDuration = Field(
        default="2m",
        description="how long a version that receives traffic may have no available pods",
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default={},
        description="labels of the PrometheusRule object, e.g. release: <helm release> for the "
        "ruleSelector of kube-prometheus-stack",
    )


class Telemetry(_Config):
    """What operators see of the stack: access logs, traces, a dashboard and alerts."""

    access_logging: AccessLogging = AccessLogging()
    tracing: Tracing = Tracing()
    dashboard: Dashboard = Dashboard()
    alerts: Alerts = Alerts()


DEFAULT_GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


class Security(_Config):
    """Mesh security of the serving namespace. Unset switches follow `protected`: on in
    protected stacks, off otherwise, so each is one setting away in dev."""

    mtls: Literal["STRICT", "PERMISSIVE"] | None = Field(
        default=None,
        description="PeerAuthentication of the namespace; default STRICT when protected, "
        "otherwise none (the mesh-wide setting applies)",
    )
    authorization: Flag | None = Field(
        default=None,
        description="an ALLOW AuthorizationPolicy per model; default: protected",
    )
    restrict_egress: Flag | None = Field(
        default=None,
        description="a Sidecar limiting egress to the namespace, istio-system and the model "
        "store (REGISTRY_ONLY); default: protected",
    )
    gateway_principal: Principal = Field(
        default=DEFAULT_GATEWAY_PRINCIPAL,
        description="identity of the ingress gateway pods, allowed to call every model",
    )
    trust_domain: DnsSubdomain = Field(
        default="cluster.local", description="trust domain of models.<m>.callers"
    )


class Toleration(_Config):
    key: LabelKey
    operator: Literal["Exists", "Equal"] = "Exists"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _value_matches_operator(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ConfigPathError(("value",), "must be empty with operator Exists")
        if self.operator == "Equal" and self.value is None:
            raise ConfigPathError(("value",), "is required with operator Equal")
        return self


class GpuScheduling(_Config):
    """Where pods that request `nvidia.com/gpu` may run."""

    node_selector: dict[LabelKey, LabelValue] = {"nvidia.com/gpu.present": "true"}
    tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu", effect="NoSchedule")]


class Scheduling(_Config):
    gpu: GpuScheduling = GpuScheduling()


class StackConfig(_Config):
    """All of `ml-mesh:*` for one stack."""

    namespace: DnsLabel = "ml-serving"
    protected: Flag = Field(
        default=False,
        description="a production stack: the namespace is protected from deletion",
    )
    max_weight_step: Annotated[int, Field(strict=True, ge=1, le=100)] = Field(
        default=25,
        description="protected stacks: the largest canary weight increase one change may make "
        "(checked by `python -m mesh diff`)",
    )
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
        endpoint = self.storage.endpoint
        if endpoint is not None and not endpoint.tls and not endpoint.in_cluster():
            raise ConfigPathError(
                ("storage", "endpoint", "tls"),
                "protected stacks reach a model store outside the cluster over TLS only",
            )
        return self

    def mtls_mode(self) -> str | None:
        """PeerAuthentication mode of the namespace; None leaves the mesh-wide setting."""
        return self.security.mtls or ("STRICT" if self.protected else None)

    def authorization_enabled(self) -> bool:
        enabled = self.security.authorization
        return self.protected if enabled is None else enabled

    def egress_restricted(self) -> bool:
        restricted = self.security.restrict_egress
        return self.protected if restricted is None else restricted

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
