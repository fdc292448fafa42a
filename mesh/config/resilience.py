"""Resilience of a model's versions: the DestinationRule traffic policy (connection pool,
outlier detection, load balancer) and injected faults for resilience tests.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import Count, Duration, FaultPercent


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
