"""Value formats of stack config: one validator per kind of string or number a user writes.

Each validator raises ValueError with the message a user sees after the config path, and an
`Annotated` type binds it to the fields that use it. The markers at the end (Flag,
SECRET_CAPABLE) also shape the JSON Schema of stack files (`python -m mesh schema`).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated

import re2
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

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


def _service_fqdn(value: str) -> str:
    """A Kubernetes Service by its cluster-local name, the form meshConfig.extensionProviders
    take for a provider's `service` and Sidecar egress hosts import as `<ns>/<host>`."""
    labels = value.split(".")
    if (
        len(labels) != 5
        or labels[2:] != ["svc", "cluster", "local"]
        or not _DNS1035_LABEL.match(labels[0])
        or not all(len(label) <= 63 and _DNS1123_LABEL.match(label) for label in labels[:2])
    ):
        raise ValueError(
            f"{value!r} is not a Kubernetes Service name: use <service>.<namespace>.svc."
            "cluster.local, e.g. opentelemetry-collector.observability.svc.cluster.local"
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


_QUANTITY_FACTORS = {
    "": 1,
    "m": Decimal("0.001"),
    **{unit: 1000**i for i, unit in enumerate("kMGTPE", start=1)},
    **{f"{unit}i": 1024**i for i, unit in enumerate("KMGTPE", start=1)},
}


def quantity_bytes(value: str) -> int:
    """Bytes of a Kubernetes quantity that `_quantity` accepted (4Gi -> 4294967296), rounded
    up as Kubernetes rounds a fraction of a byte."""
    number, _, unit = _QUANTITY.match(value).group(1, 2, 3)  # type: ignore[union-attr]
    return math.ceil(Decimal(number) * _QUANTITY_FACTORS[unit or ""])


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


def is_dns_subdomain(value: str) -> bool:
    """Whether `value` can name a Kubernetes object such as a ServiceAccount."""
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def _dns_subdomain(value: str) -> str:
    if not is_dns_subdomain(value):
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


# Numbers and booleans where text is expected. `pulumi config set --path` writes an integer as a
# YAML number and true/false as booleans ("integers are treated as numbers", `pulumi config set`
# reference), and hand-written YAML does the same for anything unquoted. Where the text a number
# stands for is unambiguous it is accepted (a quantity, an env value); where it is not (a name:
# `007` arrives as 7; a duration: 30 of what?) it is refused with the fix.


def _scalar_kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return None


def _decimal_text(value: float) -> str:
    """The shortest decimal that round-trips `value`, without exponent (1e3 -> 1000, 2.0 -> 2)."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def _quantity_from_number(value: object) -> object:
    """A Kubernetes quantity written as a number (`cpu: 2`, `cpu: 0.5`, `memory: 1073741824`),
    as Kubernetes itself reads it (resource.Quantity's UnmarshalJSON parses a bare number), to
    the string it would be if quoted. A float finer than a milli-unit (0.1 + 0.2 =
    0.30000000000000004, the mark of arithmetic, not of a person) is refused: say it in millis."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi")
    text = _decimal_text(value)
    decimals = len(text.partition(".")[2])
    if decimals > 3:
        millis = Decimal(text) * 1000
        raise ValueError(
            f"{value!r} is finer than a thousandth: write the quantity as text in millis, e.g. "
            f'"{millis.to_integral_value(rounding="ROUND_CEILING")}m"'
        )
    return text


def _env_text(value: object) -> object:
    """An env value written as an integer or a boolean, as the text a container sees
    (`WORKERS: 4` -> "4", `DEBUG: true` -> "true": lowercase, as written in YAML; Kubernetes
    refuses a non-string `env[].value`). A float is refused: `3.10` arrives as 3.1 and `1e3` as
    1000.0, so its text is not known; quote it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} is a number, and YAML does not keep how it was written (3.10 reads as "
            "3.1): quote the value as the container should see it"
        )
    return value


def _label_text(value: object) -> object:
    """A label value written as a boolean or an integer (`nvidia.com/gpu.present: true`): label
    values are text; true/false and integers have one spelling."""
    if isinstance(value, (bool, int)):
        return _env_text(value)
    return value


def _text_only(what: str) -> BeforeValidator:
    """Refuse a number or boolean for text whose spelling matters (names, images, paths):
    unquoted, YAML reads `007` as 7 and `1.10` as 1.1, so the text meant is not known."""

    def check(value: object) -> object:
        kind = _scalar_kind(value)
        if kind is not None:
            shown = "true" if value is True else "false" if value is False else repr(value)
            raise ValueError(
                f"{shown} is {kind}, but {what} is text: quote it as you mean it "
                "(unquoted, YAML reads 007 as 7 and 1.10 as 1.1)"
            )
        return value

    return BeforeValidator(check)


def _duration_unit(value: object) -> object:
    """`timeout: 30` has no unit; Istio durations need one (RULES.md 5)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    shown = _decimal_text(value) if isinstance(value, float) else str(value)
    raise ValueError(f"{shown} has no unit: write {shown}s (a duration needs a unit: ms, s, m, h)")


def _prom_duration_unit(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    shown = _decimal_text(value) if isinstance(value, float) else str(value)
    raise ValueError(
        f"{shown} has no unit: write {shown}s (a Prometheus duration needs a unit: ms, s, m, h, "
        "d, w, y)"
    )


# JSON Schema of the types that take a number too (`python -m mesh schema`), so an editor does
# not flag what ml-mesh accepts.
_QUANTITY_SCHEMA = {
    "anyOf": [
        {"type": "string"},  # its format is checked by ml-mesh, with a message that says why
        {"type": "number", "minimum": 0},
    ],
    "description": "a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi (a number is read as "
    'Kubernetes reads it: 2 = "2", 0.5 = "0.5")',
}

DnsLabel = Annotated[str, _text_only("a name"), AfterValidator(_dns_label)]
ServiceName = Annotated[str, _text_only("a name"), AfterValidator(_service_name)]
Fqdn = Annotated[str, _text_only("a host name"), AfterValidator(_fqdn)]
ServiceFqdn = Annotated[str, _text_only("a host name"), AfterValidator(_service_fqdn)]
Image = Annotated[str, _text_only("an image"), AfterValidator(_image)]
Bucket = Annotated[str, _text_only("a bucket name"), AfterValidator(_bucket)]
ModelPath = Annotated[str, _text_only("a model path"), AfterValidator(_model_path)]
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_from_number),
    AfterValidator(_quantity),
    WithJsonSchema(_QUANTITY_SCHEMA),
]
Region = Annotated[str, _text_only("a region"), AfterValidator(_region)]
HttpPath = Annotated[str, _text_only("a path"), AfterValidator(_http_path)]
EnvName = Annotated[str, _text_only("a variable name"), AfterValidator(_env_name)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Duration = Annotated[str, BeforeValidator(_duration_unit), AfterValidator(_duration)]
HeaderName = Annotated[str, _text_only("a header name"), AfterValidator(_header_name)]
Regex = Annotated[str, AfterValidator(_regex)]
RetryOn = Annotated[str, AfterValidator(_retry_on)]
HttpUrl = Annotated[str, _text_only("a URL"), AfterValidator(_http_url)]
WeightPercent = Annotated[int, Field(strict=True, ge=0, le=100)]
DnsSubdomain = Annotated[str, _text_only("a name"), AfterValidator(_dns_subdomain)]
SecretKey = Annotated[str, _text_only("a Secret key"), AfterValidator(_secret_key)]
LabelKey = Annotated[str, _text_only("a label key"), AfterValidator(_label_key)]
LabelValue = Annotated[
    str,
    BeforeValidator(_label_text),
    AfterValidator(_label_value),
    WithJsonSchema({"type": ["string", "boolean", "integer"]}),
]
Principal = Annotated[str, _text_only("a principal"), AfterValidator(_principal)]
ServiceAccountRef = Annotated[
    str, _text_only("a service account"), AfterValidator(_service_account_ref)
]
IstioPath = Annotated[str, _text_only("a path"), AfterValidator(_istio_path)]
FaultPercent = Annotated[float, Field(strict=True, ge=0.0001, le=100)]
Count = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]


# Formats of the telemetry settings.

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


ProviderName = Annotated[str, _text_only("a provider name"), AfterValidator(_provider)]
PromDuration = Annotated[str, BeforeValidator(_prom_duration_unit), AfterValidator(prom_duration)]
SamplingPercent = Annotated[float, Field(strict=True, ge=0, le=100)]


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
RoleArn = Annotated[
    str,
    _text_only("a role ARN"),
    AfterValidator(_role_arn),
    Field(json_schema_extra={SECRET_CAPABLE: True}),
]
EnvValue = Annotated[
    str,
    BeforeValidator(_env_text),
    Field(max_length=32768),
    WithJsonSchema(
        {"type": ["string", "integer", "boolean"], "maxLength": 32768, SECRET_CAPABLE: True}
    ),
    Field(json_schema_extra={SECRET_CAPABLE: True}),
]

# Placeholders used where a secret cannot be decrypted (offline render): they pass the field's
# own format check and are shown as SECRET_PLACEHOLDER in the output.
SECRET_PLACEHOLDER = "[secret]"
PLACEHOLDER_ROLE_ARN = "arn:aws:iam::000000000000:role/ml-mesh-secret-placeholder"
