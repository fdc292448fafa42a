"""Names and formats every Gateway API builder shares."""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.config.formats import duration_millis

GATEWAY_API = "gateway.networking.k8s.io/v1"
GROUP = "gateway.networking.k8s.io"

# Gateway API `Duration` (GEP-2257): `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, so no decimals and no
# ns/us units, unlike the Go durations the stack config accepts (Istio's syntax).
_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def gateway_duration(value: str) -> str:
    """A config duration (Go syntax, whole milliseconds: `_duration` guarantees it) in
    Gateway API syntax: `1.5s` -> `1s500ms`, `90s` -> `1m30s`, `250ms` -> `250ms`.

    Istio parses the result with Go's time.ParseDuration (conversion.go `convertHTTPRoute`),
    so both spellings mean the same time."""
    left = duration_millis(value)
    parts = []
    for unit, millis in _UNITS:
        count, left = divmod(left, millis)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def version_service_name(name: str, version: str) -> str:
    """The Service of one version: `<model>-<version>` (the Deployment's name too; the config
    keeps it within 63 characters)."""
    return f"{name}-{version}"


def version_service_host(config: StackConfig, name: str, version: str) -> str:
    return f"{version_service_name(name, version)}.{config.namespace}.svc.cluster.local"
