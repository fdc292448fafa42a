"""What `routing: gateway-api` cannot express, refused with the setting and what would work.

Gateway API v1.5.1 (what Istio 1.30 builds against) and v1.6.1 serve the same HTTPRoute in
each channel; the limits below are theirs (the CRD schemas and CEL rules) or Istio's reading of
them (istio/istio 1.30.3 pilot/pkg/config/kube/gateway/conversion.go). See mesh/gatewayapi/.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

from mesh.config.errors import ConfigPathError
from mesh.config.model import Model

if TYPE_CHECKING:
    from mesh.config.stack import StackConfig

# HTTPRoute limits: `rules` maxItems 16, `hostnames` maxItems 16.
MAX_RULES = 16
MAX_HOSTNAMES = 16
# The retry conditions Istio sets on every HTTPRoute `retry` (conversion.go convertHTTPRoute),
# and the one Envoy needs for `codes`: a `retryOn` made of these and of status codes 400..599
# (the CRD's `codes` range) says what `retry` does.
_EXPRESSIBLE_RETRY_ON = frozenset(
    {"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
)


def serves_grpc(model: Model) -> bool:
    """Whether the model has a gRPC port (models/presets.py: TensorFlow Serving and Triton
    always, a custom server with grpcPort, the LLM servers never)."""
    if model.server in ("tensorflow-serving", "triton"):
        return True
    return model.custom is not None and model.custom.grpc_port is not None


def match_conditions(model: Model, rule: str) -> int:
    match = model.matches[rule]
    return len(match.headers) + (1 if match.cookie is not None else 0)


def check(config: StackConfig) -> None:
    """Raise ConfigPathError for the first setting the Gateway API form cannot express."""
    channel = config.platform.gateway_api_channel
    for name, model in config.models.items():
        path = ("models", name)
        if model.progressive is not None:
            continue  # Flagger writes the routes of a progressive model
        if model.fault is not None:
            raise ConfigPathError(
                (*path, "fault"),
                "routing is gateway-api, and HTTPRoute has no fault injection (its filters are "
                "RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, "
                "RequestMirror, CORS and ExtensionRef; Istio refuses other filter types): "
                "remove the fault, or test resilience in a stack with routing: istio",
            )
        _check_retries(model, path, channel)
        _check_matches(model, path)
        hosts = config.model_hosts(name)
        if len(hosts) > MAX_HOSTNAMES:
            raise ConfigPathError(
                (*path, "hosts"),
                f"{len(hosts)} hosts, and an HTTPRoute lists at most {MAX_HOSTNAMES} hostnames "
                "(routing is gateway-api): serve fewer hosts per model",
            )
    tls = config.gateway.tls
    if tls is not None and tls.https_redirect:
        total = sum(len(config.model_hosts(n)) for n in config.models)
        if total > MAX_HOSTNAMES:
            raise ConfigPathError(
                ("gateway", "tls", "httpsRedirect"),
                f"the redirect HTTPRoute would list all {total} model hosts, and an HTTPRoute "
                f"lists at most {MAX_HOSTNAMES} hostnames (routing is gateway-api): serve "
                "fewer hosts, or split the models over stacks",
            )


def _check_retries(model: Model, path: tuple, channel: str) -> None:
    retries = model.retries
    if retries is None:
        return
    if channel != "experimental":
        raise ConfigPathError(
            (*path, "retries"),
            "routing is gateway-api and platform.gatewayApiChannel is standard: HTTPRoute "
            "`retry` is in the experimental channel only (Gateway API v1.5 and v1.6), so the "
            "standard CRDs cannot hold it. Remove retries (Istio then retries twice on "
            "connect-failure, refused-stream, unavailable and cancelled, its default), or set "
            "platform.gatewayApiChannel: experimental if the cluster has the experimental "
            "CRDs (experimental-install.yaml)",
        )
    if retries.attempts == 0:
        raise ConfigPathError(
            (*path, "retries", "attempts"),
            "routing is gateway-api: HTTPRoute retry.attempts is at least 1 (the CRD's "
            "minimum), so retries cannot be turned off per route; remove retries to keep "
            "Istio's default (2 attempts), or give attempts 1 or more",
        )
    conditions = (retries.retry_on or "").split(",") if retries.retry_on else []
    other = [
        c
        for c in conditions
        if c not in _EXPRESSIBLE_RETRY_ON and not (c.isdigit() and 400 <= int(c) <= 599)
    ]
    if other:
        raise ConfigPathError(
            (*path, "retries", "retryOn"),
            f"routing is gateway-api: HTTPRoute `retry` cannot say {', '.join(other)}; it "
            "has only `codes` (HTTP statuses 400-599), and Istio always retries "
            "connect-failure, refused-stream, unavailable and cancelled besides. Give the "
            "statuses instead (gateway-error is 502,503,504; 5xx includes resets, which "
            "`codes` cannot say), or remove retryOn",
        )


def _check_matches(model: Model, path: tuple) -> None:
    """Istio tries the rules of an HTTPRoute by number of header matches, most first, then in
    written order (conversion.go `sortHTTPRoutes`), not by the config's priority: a rule
    tried after one with fewer conditions would be tried before it. gRPC doubles the rules
    (mesh/gatewayapi/routes.py), within the 16 an HTTPRoute holds."""
    ordered = [rule for rule, _ in model.ordered_matches()]
    for earlier, later in pairwise(ordered):
        before, after = match_conditions(model, earlier), match_conditions(model, later)
        if after > before:
            raise ConfigPathError(
                (*path, "matches", later, "priority"),
                f"routing is gateway-api, which tries match rules with more conditions first "
                f"(Gateway API precedence; Istio sorts HTTPRoute rules by header count): "
                f"{later!r} ({after} conditions) would be tried before {earlier!r} "
                f"({before}), against their priorities. Give {later!r} a lower priority than "
                f"{earlier!r} so the order is the same in both, or give the rules the same "
                "number of conditions",
            )
    grpc = serves_grpc(model)
    per_rule = 2 if grpc else 1
    if per_rule * (len(ordered) + 1) > MAX_RULES:
        most = MAX_RULES // per_rule - 1
        raise ConfigPathError(
            (*path, "matches"),
            f"{len(ordered)} match rules, and routing is gateway-api: an HTTPRoute holds at "
            f"most {MAX_RULES} rules, {per_rule} per match rule and {per_rule} for the "
            f"weighted split{' (REST and gRPC)' if grpc else ''}, so at most {most} match "
            "rules",
        )
    if grpc:
        for rule in ordered:
            if "content-type" in model.matches[rule].headers:
                raise ConfigPathError(
                    (*path, "matches", rule, "headers", "content-type"),
                    "routing is gateway-api: the model's gRPC requests are told from REST "
                    "ones by content-type application/grpc (at the ingress there is no other "
                    "sign), so a match rule cannot set its own content-type condition; match "
                    "on another header",
                )
