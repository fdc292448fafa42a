"""An inference pool that fails every request while its picker restarts (MESH0027): ml-mesh's
own rule.

With `failureMode: FailClose` the gateway answers 500 whenever it cannot reach the pool's
endpoint picker (Envoy's ext_proc filter, failure_mode_allow false; istio/istio 1.30.3
pilot/pkg/networking/core/route/route.go, the `ExtProcPerRoute` of a pool). The llm-d router's
chart rolls the picker Deployment out with `strategy: Recreate` (llm-d-router v0.10.0
config/charts/routerlib/templates/_deployment.yaml: the old picker is stopped before the new one
starts), and with more replicas only the leader is ready (cmd/epp/runner/health.go): so every
picker rollout, restart or node drain is an outage of the pool's ingress until a new picker is
ready. Read from the objects: the pool's failure mode, the Service its endpointPickerRef names,
and the strategy of the Deployment whose pods that Service selects.
"""

from __future__ import annotations

from collections.abc import Iterator

from mesh.checks.findings import POOL_FAIL_CLOSE_OUTAGE, Finding
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _name, _spec
from mesh.checks.paths import _finding
from mesh.trace.objects import selects


def pool_fail_close(index: _Index) -> Iterator[Finding]:
    """Every stack InferencePool at FailClose whose picker Deployment uses Recreate."""
    services = {(index.ns(s), _name(s)): s for s in index.by_kind["Service"]}
    deployments = index.by_kind["Deployment"]
    for pool in index.by_kind["InferencePool"]:
        ref = _dict(_spec(pool).get("endpointPickerRef"))
        if not index.is_stack(pool) or ref.get("failureMode", "FailClose") != "FailClose":
            continue
        service = services.get((index.ns(pool), str(ref.get("name", ""))))
        selector = _dict(_spec(service).get("selector")) if service else {}
        pickers = [
            d
            for d in deployments
            if selector
            and index.ns(d) == index.ns(pool)
            and selects({"matchLabels": selector}, _template_labels(d))
            and _dict(_spec(d).get("strategy")).get("type") == "Recreate"
        ]
        for picker in pickers:
            model = _dict(_dict(_spec(pool).get("selector")).get("matchLabels")).get("app")
            path = (
                f"models.{model}.inferencePool.failureMode"
                if model in index.config.models
                else None
            )
            yield _finding(
                index,
                pool,
                POOL_FAIL_CLOSE_OUTAGE,
                "warning",
                path,
                f"failureMode FailClose, and its picker Deployment {_name(picker)} rolls out "
                "with Recreate (the chart's): every picker rollout, restart or node drain "
                "answers every request of the pool with 500 until a new picker is ready; "
                "FailOpen keeps serving then (the gateway picks a pod of the pool itself)",
            )


def _template_labels(deployment: dict) -> dict:
    return _dict(_dict(_dict(_spec(deployment).get("template")).get("metadata")).get("labels"))
