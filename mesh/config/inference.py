"""Gateway API Inference Extension pools (`models.<m>.inferencePool`, `routing: gateway-api`).

With a pool, the ingress Gateway no longer load-balances a version's pods by connection: the
Istio gateway asks an endpoint picker (EPP) for each request, over Envoy ext_proc, and the
picker chooses the pod by the servers' own queue length, KV-cache usage and prefix cache. One
`InferencePool` per version, each with its own picker, and the Gateway's HTTPRoute splits the
traffic between the pools by weight: the Inference Extension's rollout guide
(gateway-api-inference-extension v1.5.0 site-src/guides/inferencepool-rollout.md).

What Istio 1.30 does with it (istio/istio 1.30.3):

- a backendRef to an InferencePool is refused unless istiod runs with
  ENABLE_GATEWAY_API_INFERENCE_EXTENSION=true (pilot/pkg/features/experimental.go, default
  false; pilot/pkg/config/kube/gateway/conversion.go `buildDestination`: "InferencePool is not
  enabled"): `platform.inferenceExtension` says the platform has it, with the InferencePool
  CRD (`inference.networking.k8s.io/v1`, Istio 1.28+ reads v1);
- the ext_proc filter is built only into the listeners of Gateway pods that have a pool
  attached (pilot/pkg/networking/core/listener_builder.go, `HasInferencePool`): sidecars get
  no picker, so mesh callers keep the version-Service route (mesh/gatewayapi/routes.py);
- the picker scrapes each server's metrics itself. Under STRICT mTLS it cannot read the
  server's port in plaintext, so it reads the pilot-agent's merged metrics on :15020, which
  the sidecar never captures (as Prometheus does in sidecar mode): ambient pods have no
  pilot-agent, and pools are refused there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import Quantity
from mesh.config.llm import LLM_SERVERS

if TYPE_CHECKING:
    from mesh.config.stack import StackConfig

# InferencePool v1 is read from Istio 1.28.0 (gateway-api-inference-extension v1.5.0
# site-src/guides/index.md: "Istio >= 1.28.0 is needed for InferencePool v1").
INFERENCE_POOL_ISTIO = (1, 28)
# The picker chart names its Deployment, Service and ServiceAccount after the release cut to
# 40 characters (llm-d-router v0.10.0 config/charts/routerlib/templates/_helpers.tpl
# `llm-d-router.name`); the release is the pool `<model>-<version>`, so that is its limit.
MAX_POOL_NAME = 40

ENABLE_FLAG = "ENABLE_GATEWAY_API_INFERENCE_EXTENSION"


class PickerQuantities(_Config):
    cpu: Quantity | None = None
    memory: Quantity | None = None

    @field_validator("cpu")
    @classmethod
    def _cores(cls, value: str | None) -> str | None:
        """CPU in cores or millicores (`2`, `1.5`, `500m`): the CPU limit is derived from the
        request (mesh/gatewayapi/pools.py), which other suffixes would not allow."""
        if value is not None and not re.fullmatch(r"[0-9]+(\.[0-9]{1,3})?|[0-9]+m", value):
            raise ValueError(f"{value!r}: give CPU as cores or millicores, e.g. 2, 1.5 or 500m")
        return value


class PickerResources(_Config):
    """Overrides of the picker chart's resources; what is unset keeps the chart's (requests
    cpu 8, memory 8Gi, limit memory 16Gi: llm-d-router v0.10.0 routerlib/values.yaml; Helm
    merges these values into them key by key)."""

    requests: PickerQuantities = PickerQuantities()
    limits: PickerQuantities = PickerQuantities()

    def values(self) -> dict:
        found = {}
        for kind in ("requests", "limits"):
            given = getattr(self, kind).model_dump(exclude_none=True)
            if given:
                found[kind] = given
        return found


class InferencePoolSettings(_Config):
    """Per-model opt-in to Inference Extension pools (`inferencePool:` next to `llm:`)."""

    failure_mode: Literal["FailOpen", "FailClose"] = Field(
        default="FailOpen",
        description="what the gateway does when it cannot reach the endpoint picker: FailOpen "
        "sends the request to a pod of the pool chosen by the gateway itself (the model keeps "
        "serving, without load-aware picking), FailClose answers 500, also while the picker "
        "restarts (the chart recreates it on every rollout); the CRD's default is FailClose, "
        "the picker chart's FailOpen",
    )
    picker_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        strict=True,
        description="endpoint picker pods per version; more than one run with leader "
        "election (the chart adds --ha-enable-leader-election): one ready picker and standbys, "
        "failover rather than capacity",
    )
    picker_resources: PickerResources = Field(
        default=PickerResources(),
        description="requests and limits of each picker pod; unset values keep the chart's "
        "(requests cpu 8, memory 8Gi; limit memory 16Gi), and the CPU limit is twice the CPU "
        "request (the policy pack needs one; the chart sets none)",
    )


def check(config: StackConfig) -> None:
    """Raise ConfigPathError for the first pool the platform or the model cannot serve."""
    picker = config.images.endpoint_picker
    if ":" not in picker.partition("@")[0].rsplit("/", 1)[-1] and any(
        m.inference_pool is not None for m in config.models.values()
    ):
        raise ConfigPathError(
            ("images", "endpointPicker"),
            f"{picker!r} has no tag: the picker chart writes the image as "
            "<registry>/<repository>:<tag>, so give the tag, with the digest after it "
            "(repo:tag@sha256:...)",
        )
    for name, model in sorted(config.models.items()):
        if model.inference_pool is None:
            continue
        path = ("models", name, "inferencePool")
        if model.server not in LLM_SERVERS:
            raise ConfigPathError(
                path,
                f"only allowed with server vllm or sglang (this model uses {model.server!r}): "
                "the endpoint picker reads the LLM servers' queue and KV-cache metrics and "
                "parses OpenAI requests",
            )
        if not config.gateway_api():
            raise ConfigPathError(
                path,
                "an InferencePool is a Gateway API backend: set routing: gateway-api, or "
                "remove inferencePool",
            )
        if config.ambient():
            raise ConfigPathError(
                path,
                "dataplane is ambient: the endpoint picker scrapes each server's metrics "
                "itself, through the pilot-agent's :15020 in sidecar mode; an ambient pod has "
                "no pilot-agent, and STRICT mTLS refuses the picker's plaintext scrape of the "
                "server port. Use dataplane: sidecar, or remove inferencePool",
            )
        if model.progressive is not None:
            raise ConfigPathError(
                path,
                "Flagger owns this model's HTTPRoute and routes to Services, never to pools: "
                "remove inferencePool or the progressive block",
            )
        if config.platform.istio() < INFERENCE_POOL_ISTIO:
            raise ConfigPathError(
                path,
                f"InferencePool v1 needs Istio 1.28+ and platform.istioVersion is "
                f"{config.platform.istio_version!r}: raise platform.istioVersion if the "
                "cluster runs 1.28 or newer, or remove inferencePool",
            )
        if not config.platform.inference_extension:
            raise ConfigPathError(
                path,
                f"Istio refuses InferencePool backends unless istiod runs with {ENABLE_FLAG}"
                f"=true (default false): install it with `istioctl install --set "
                f"values.pilot.env.{ENABLE_FLAG}=true` and the InferencePool CRD, then set "
                "platform.inferenceExtension: true",
            )
        for version in sorted(model.versions):
            pool = f"{name}-{version}"
            if len(pool) > MAX_POOL_NAME:
                raise ConfigPathError(
                    ("models", name, "versions", version),
                    f"the pool {pool!r} has {len(pool)} characters and the endpoint picker "
                    f"chart cuts its names at {MAX_POOL_NAME}: shorten the model or version "
                    "name",
                )
