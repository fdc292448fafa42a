"""Value formats istiod checks (RULES.md §1): Go durations, DNS-1123 labels, label keys and
values, port numbers and protocol names; pure functions of one value, shared by the rules.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

PROTOCOLS = frozenset(
    {"HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY", "TCP", "TLS", "UDP"}
    | {"MONGO", "REDIS", "MYSQL"}
)

_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNIT_NANOS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
MILLISECOND = 10**6


def parse_duration(text: str) -> int:
    """Nanoseconds of a duration in Go's time.ParseDuration syntax (`1m30s`), as istiod reads it."""
    invalid = ValueError(f"{text!r} is not a duration such as 500ms, 5s or 1m30s")
    rest, sign = text.lstrip("+-"), -1 if text.startswith("-") else 1
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    nanos, position = Decimal(0), 0
    while position < len(rest):
        match = _DURATION_PART.match(rest, position)
        if match is None or not (match.group(1) or match.group(2)):
            raise invalid
        whole, fraction, unit = match.groups()
        nanos += Decimal(f"{whole or 0}.{fraction or 0}") * _UNIT_NANOS[unit]
        position = match.end()
    return sign * int(nanos)


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def _label_problem(key: str, value: Any) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and all(map(is_dns_label, prefix.split(".")))):
        return f"label key {key!r} has an invalid prefix"
    if not (len(name) <= 63 and _QUALIFIED_NAME.match(name)):
        return f"label key {key!r} is not a qualified name"
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        return f"label {key}={value!r} is not a valid label value"
    return None


def _port_number_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
