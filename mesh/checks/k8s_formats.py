"""The value formats the Kubernetes API server checks, each mirroring its apimachinery function.

Sources (kubernetes/kubernetes; ml-mesh supports 1.28 to 1.37 and these formats are the same
across them, except the env var names noted below):
`staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go` (IsDNS1123Label,
IsDNS1123Subdomain, IsDNS1035Label, IsValidPortName, IsValidPortNum, IsEnvVarName,
IsRelaxedEnvVarName), `staging/src/k8s.io/apimachinery/pkg/api/validate/content/kube.go`
(IsLabelKey, IsLabelValue) and `staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go`
(ValidateAnnotations, TotalAnnotationSizeLimitB). Each function returns the problems as
Kubernetes words them, an empty tuple when the value is valid, so a finding reads like the error
`pulumi up` would otherwise print.

The string checks are pure, and a plan asks them about the same few values thousands of times
(every object's `app`, `version` and `component` labels, the same container and port names in
every Deployment): each is memoised per value (`_memo`), and returns a tuple so that no caller
can change what the next one gets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TypeVar

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
PORT_NAME_MAX = 15
TOTAL_ANNOTATION_SIZE = 256 * (1 << 10)  # TotalAnnotationSizeLimitB: keys and values, bytes

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(f"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


_Check = TypeVar("_Check", bound=Callable[..., tuple[str, ...]])
MEMO_SIZE = 4096  # distinct values remembered per check; a 300-model stack has about 2,000


def _memo(check: _Check) -> _Check:
    return functools.lru_cache(maxsize=MEMO_SIZE)(check)  # type: ignore[return-value]


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


@_memo
def dns1123_label(value: str) -> tuple[str, ...]:
    """IsDNS1123Label: container names, Service port names, namespaces."""
    problems = [_max_len(DNS1123_LABEL_MAX)] if len(value) > DNS1123_LABEL_MAX else []
    if not _DNS1123_LABEL.match(value):
        problems.append(
            "must not contain dots"
            if _DNS1123_SUBDOMAIN.match(value)
            else "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
            "or '-', and must start and end with an alphanumeric character (e.g. 'my-name')"
        )
    return tuple(problems)


@_memo
def dns1123_subdomain(value: str) -> tuple[str, ...]:
    """IsDNS1123Subdomain: the name of most kinds (NameIsDNSSubdomain)."""
    problems = [_max_len(DNS1123_SUBDOMAIN_MAX)] if len(value) > DNS1123_SUBDOMAIN_MAX else []
    if not _DNS1123_SUBDOMAIN.match(value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com')"
        )
    return tuple(problems)


@_memo
def dns1035_label(value: str) -> tuple[str, ...]:
    """IsDNS1035Label: Service names (ValidateServiceName = NameIsDNS1035Label; the
    RelaxedServiceNameValidation gate, alpha and off by default since 1.34, would relax it)."""
    problems = [_max_len(DNS1123_LABEL_MAX)] if len(value) > DNS1123_LABEL_MAX else []
    if not _DNS1035_LABEL.match(value):
        problems.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character "
            "(e.g. 'my-name')"
        )
    return tuple(problems)


@_memo
def label_key(value: str) -> tuple[str, ...]:
    """IsLabelKey (IsQualifiedName): an optional DNS subdomain prefix and '/', then a name of
    at most 63 characters. Label keys, annotation keys (lower-cased first), appProtocol."""
    parts = value.split("/")
    if len(parts) > 2:
        return ("a qualified name must have at most one '/' (e.g. 'example.com/MyName')",)
    problems: list[str] = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {p}" for p in dns1123_subdomain(prefix)]
    name = parts[-1]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > DNS1123_LABEL_MAX:
        problems.append(f"name part {_max_len(DNS1123_LABEL_MAX)}")
    if not _QUALIFIED.match(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName', 'my.name')"
        )
    return tuple(problems)


def label_value(value: object) -> tuple[str, ...]:
    """IsLabelValue: empty, or at most 63 alphanumerics, '-', '_', '.' between alphanumerics."""
    if not isinstance(value, str):
        return (f"must be a string, not {type(value).__name__}",)
    return _label_value(value)


@_memo
def _label_value(value: str) -> tuple[str, ...]:
    problems = [_max_len(LABEL_VALUE_MAX)] if len(value) > LABEL_VALUE_MAX else []
    if not _LABEL_VALUE.match(value):
        problems.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character"
        )
    return tuple(problems)


def annotations_size(annotations: dict[str, object]) -> int:
    """ValidateAnnotationsSize: the bytes of every key and value together."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())


@_memo
def port_name(value: str) -> tuple[str, ...]:
    """IsValidPortName (IANA_SVC_NAME): container port names, named targetPorts."""
    problems = [_max_len(PORT_NAME_MAX)] if len(value) > PORT_NAME_MAX else []
    if not _PORT_NAME_CHARS.match(value):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        problems.append("must contain at least one letter (a-z)")
    if "--" in value:
        problems.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return tuple(problems)


def port_number(value: object) -> tuple[str, ...]:
    """IsValidPortNum: 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return ("must be between 1 and 65535, inclusive",)
    return ()


def port_number_or_name(value: object) -> tuple[str, ...]:
    """ValidatePortNumOrName: a targetPort or probe port is a number or a port name."""
    return port_name(value) if isinstance(value, str) else port_number(value)


@_memo
def env_var_name(value: str, relaxed: bool) -> tuple[str, ...]:
    """IsEnvVarName, or IsRelaxedEnvVarName where RelaxedEnvironmentVariableValidation is on
    (beta and on by default from Kubernetes 1.32, GA in 1.34)."""
    if not value:
        return ("environment variable name must be non-empty",)
    if relaxed:
        if any(ord(c) > 126 or ord(c) < 32 or c == "=" for c in value):
            return (
                "a valid environment variable name must consist only of printable ASCII "
                "characters other than '='",
            )
        return ()
    problems = []
    if not _ENV_NAME.match(value):
        problems.append(
            "a valid environment variable name must consist of alphabetic characters, digits, "
            "'_', '-', or '.', and must not start with a digit"
        )
    if value in (".", ".."):
        problems.append(f"must not be '{value}'")
    elif value.startswith(".."):
        problems.append("must not start with '..'")
    return tuple(problems)


def is_config_map_key(value: str) -> bool:
    """IsConfigMapKey: at most 253 of `[-._a-zA-Z0-9]`, not `.` or `..` or `..`-prefixed."""
    return (
        len(value) <= DNS1123_SUBDOMAIN_MAX
        and bool(_CONFIG_MAP_KEY.match(value))
        and value not in (".", "..")
        and not value.startswith("..")
    )
