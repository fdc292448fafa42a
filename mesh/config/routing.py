"""How a model's requests reach its versions: canary weight, A/B match rules, mirror,
timeouts and retries, or a Flagger-driven progressive rollout.

The rules across these settings (a mirror off the live route, retries within the timeout,
no matches or mirror in progressive mode) live on `Model`, which sees all of them.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import re2
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import (
    _DNS1123_LABEL,
    _RE2_OPTIONS,
    DnsLabel,
    Duration,
    HeaderName,
    HttpUrl,
    Regex,
    RetryOn,
    ServiceAccountRef,
    WeightPercent,
)


class Canary(_Config):
    version: DnsLabel = Field(description="the version that receives `weight` percent")
    weight: WeightPercent | None = Field(
        default=None,
        description="percent of traffic on the canary: 0 = deployed but not routed, "
        "100 = all traffic (promotion before cleanup); unset in progressive mode, where "
        "Flagger sets the weights",
    )


# Header values of every shape a client sends: a regex that full-matches all of them (or the
# empty value) is not a condition (`.+`, `\\S*`, `[^;]*` besides the empty-matching `.*`).
_PROBE_VALUES = ("a", "Z9", "1", "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "b=1; s=x")


def catches_everything(regex: str) -> bool:
    """Whether a header or cookie regex selects (nearly) every request that carries the header.

    Envoy's `safe_regex` is a full match of the value with RE2 (envoy
    source/common/common/regex.cc `CompiledGoogleReMatcher::match`: `re2::RE2::FullMatch`), so
    a regex that full-matches the empty string (`.*`, `^.*$`, `(|x)`, `x*`) accepts an empty
    value, and one that full-matches a set of unrelated values accepts any. Such a "condition"
    takes the model's traffic away from the weighted split (and from the canary cap) while
    looking like an A/B rule. A heuristic, refused where sure; `mesh diff` gates every added or
    changed match rule on protected stacks (`match-change`) for the rest.
    """
    compiled = re2.compile(regex, _RE2_OPTIONS)
    if compiled.fullmatch("") is not None:
        return True
    return all(compiled.fullmatch(value) is not None for value in _PROBE_VALUES)


def _catch_all_message(regex: str, what: str, fix: str) -> str:
    empty = re2.compile(regex, _RE2_OPTIONS).fullmatch("") is not None
    reason = "full-matches the empty value" if empty else "full-matches any value"
    return (
        f"regex {regex!r} {reason} (Envoy's safe_regex matches the whole value), so it is no "
        f"condition: the rule would catch every request {what} and take it from the weighted "
        f"split; {fix}"
    )


def _no_empty_prefix(value: Any) -> Any:
    if value == "":
        raise ValueError(
            "an empty prefix (it must have at least 1 character) matches every value of the "
            "header, so the rule would catch every request carrying it; give the prefix the "
            "rule is for, e.g. prefix: 'beta', or exact: '1'"
        )
    return value


class HeaderMatch(_Config):
    """One header condition; exactly one of exact, prefix, regex (an Istio StringMatch).

    Numbers are taken as text: `pulumi config set --path ... 1` stores the number 1, and a
    header value is always a string.
    """

    model_config = ConfigDict(**_Config.model_config, coerce_numbers_to_str=True)

    exact: str | None = None
    prefix: Annotated[str, BeforeValidator(_no_empty_prefix), Field(min_length=1)] | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> HeaderMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigPathError((), "give exactly one of exact, prefix, regex")
        if self.regex is not None and catches_everything(self.regex):
            raise ConfigPathError(
                ("regex",),
                _catch_all_message(
                    self.regex,
                    "that carries the header",
                    "give the value the rule is for, e.g. exact: '1', or a regex that requires "
                    "one, e.g. ^beta-.+$",
                ),
            )
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
        if self.cookie is not None and catches_everything(self.cookie):
            raise ConfigPathError(
                ("cookie",),
                _catch_all_message(
                    self.cookie,
                    "with a cookie",
                    "write a regex that requires the cookie, e.g. ^(.*?;)?(beta=1)(;.*)?$",
                ),
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
    # Not strict: `pulumi config set --path` stores 12.5 as the text "12.5" (only integers and
    # booleans become typed), so the schema accepts that text too.
    percent: Annotated[
        float,
        Field(ge=0, le=100, allow_inf_nan=False),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "minimum": 0, "maximum": 100},
                    {"type": "string", "pattern": r"^\s*(100(\.0*)?|\d{1,2}(\.\d*)?|\.\d+)\s*$"},
                ]
            }
        ),
    ] = Field(description="share of live requests copied to `version`, 0..100, decimals allowed")


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


# The service account of the loadtester's pods when none is given: the flagger-loadtester Helm
# chart (fluxcd/flagger v1.44 charts/loadtester) creates none unless asked to (`serviceAccount`
# / `rbac.create`), so its pods run as their namespace's `default` service account.
LOADTESTER_SERVICE_ACCOUNT = "default"


def service_namespace(url: str) -> str | None:
    """The namespace of a Kubernetes Service URL: `http://<svc>.<ns>[:port]/...`,
    `<svc>.<ns>.svc` or `<svc>.<ns>.svc.<cluster domain>`; None for any other host.

    A bare `<svc>` resolves in the namespace of whoever calls it, and Flagger's controller (not
    the canary) calls the webhook, so such a URL says nothing this stack knows. Hosts such as
    `loadtester.example.com` are not Services and name no namespace either.
    """
    labels = (urlsplit(url).hostname or "").split(".")
    if len(labels) == 2 or (len(labels) >= 3 and labels[2] == "svc"):
        namespace = labels[1]
        if _DNS1123_LABEL.match(namespace) and len(namespace) <= 63:
            return namespace
    return None


class LoadTest(_Config):
    """A Flagger `rollout` webhook that makes traffic while the canary is analysed.

    The loadtester runs `cmd` (e.g. `hey ... http://<m>-canary.<ns>:<port>/...`) in the
    background and answers the webhook at once, so a failing `hey` never fails the check
    (flagger-loadtester `cmd` webhooks); its requests go to the `<m>-canary` Service, i.e. the
    canary pods. Where the model's AuthorizationPolicy is on, those pods must admit the
    loadtester's identity (`caller`), or every request is refused with 403.
    """

    url: HttpUrl = Field(description="the flagger-loadtester, e.g. http://flagger-loadtester.test/")
    cmd: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        description="command the load tester runs, e.g. hey -z 1m -q 10 -c 2 http://..."
    )
    timeout: Duration = "5s"
    service_account: ServiceAccountRef | None = Field(
        default=None,
        description="service account (<namespace>/<name>) of the loadtester pods, admitted to "
        "the canary by its AuthorizationPolicy; default: <the url's namespace>/default (the "
        "loadtester chart creates no service account)",
    )

    @model_validator(mode="after")
    def _caller_known(self) -> LoadTest:
        if self.service_account is None and service_namespace(self.url) is None:
            raise ConfigPathError(
                ("serviceAccount",),
                f"cannot be derived from url {self.url!r}, whose host names no namespace; set "
                "it to the loadtester's <namespace>/<serviceaccount> (test/default for the "
                "chart installed in namespace test), or write the url as "
                "http://<service>.<namespace>/",
            )
        return self

    def caller(self) -> str:
        """The loadtester as `<namespace>/<serviceaccount>`, like an entry of `callers`."""
        if self.service_account is not None:
            return self.service_account
        namespace = service_namespace(self.url)
        assert namespace is not None, "_caller_known refuses a url without a namespace"
        return f"{namespace}/{LOADTESTER_SERVICE_ACCOUNT}"


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
        default=99,
        description="minimum percent of the canary's requests it served: not 5xx, not refused "
        "(401, 403, 404), not reset",
    )
    max_latency_ms: Annotated[int, Field(strict=True, ge=1, le=600000)] = Field(
        default=500, description="request-duration: maximum P99 latency in milliseconds"
    )
    max_ttft_ms: Annotated[int, Field(strict=True, ge=1, le=600000)] = Field(
        default=2000,
        description="vllm and sglang models: maximum p95 time to first token of the canary in "
        "milliseconds (the server's own histogram)",
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
