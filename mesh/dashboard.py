"""A Grafana dashboard per model that compares its versions, generated from stack config.

Flagger and Argo Rollouts rename workloads primary/canary, so their dashboards lose the model
version; ml-mesh knows every model and version and keeps them in the pod labels, so each panel
shows one series per `destination_version`. Each board ships as its own ConfigMap labelled
`grafana_dashboard: "1"`, which the Grafana sidecar of kube-prometheus-stack loads (its
`grafana.sidecar.dashboards.label` / `labelValue`, searching every namespace by default).

One board per model, not one per stack, for two reasons: a ConfigMap holds at most 1 MiB (a
stack-wide board stops fitting at about 140 models), and a model's board depends on that model
alone.

The board shows the traffic split as the proxies observed it, never the configured weights:
a canary shift then changes the VirtualService and no dashboard (tests/test_weight_shift.py),
and the board answers the question a reviewer has mid-canary, "did the split happen?", rather
than repeating the config. The configured weights are in the stack outputs, `mesh diff` and
the traffic table of `python -m mesh render`.
"""

from __future__ import annotations

import hashlib
import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any

from mesh.ambient import server_reporter
from mesh.config import Model, StackConfig
from mesh.k8s import metadata
from mesh.llm_metrics import serves_llm, token_queries
from mesh.promql import model_queries, version_role

COMPONENT = "telemetry"
SIDECAR_LABEL = {"grafana_dashboard": "1"}
# Grafana 10.3+ writes schemaVersion 39 and migrates older dashboards up from their own number;
# timeseries and text panels below exist since Grafana 7.
SCHEMA_VERSION = 39
RATE_WINDOW = "$__rate_interval"  # Grafana's window: at least four scrape intervals
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
UNIT_HELP = {
    "reqps": "Requests per second served by each version (server-side proxy, counted once).",
    "percentunit": "Share of requests that failed: HTTP 5xx, or a gRPC status other than OK "
    "(gRPC failures arrive as HTTP 200 with a grpc-status trailer).",
    "ms": "Request duration as the serving proxy measured it, from Istio's histogram.",
}
CALLER_HELP = {
    "caller error ratio": "Share of requests that failed as the callers' proxies (ingress "
    "gateway, calling sidecars) saw them, including the 503s those proxies make themselves: "
    "circuit-breaker overflow (UO), connect failures (UF, URX). Per "
    "destination_canonical_revision, which Istio takes from the chosen pod's version label.",
    "caller p99 latency": "Request duration as the callers' proxies measured it, per "
    "destination_canonical_revision.",
    "caller errors by response flags": "Failed requests per second as the callers saw them, by "
    "version and Envoy response flags: '-' a pod answered with the error; UO, UF, URX, UH the "
    "caller's proxy failed it. Version 'latest': the proxy chose no pod (UH, no healthy "
    "upstream), so Istio cannot name the version.",
    "requests failed before reaching a pod": "Share of the requests callers sent to the model "
    "that their proxies failed before choosing any pod (destination_workload unknown, e.g. UH: "
    "every pod of the routed version unready or ejected). Istio's labels do not name the "
    "version of these requests.",
}
PANEL_HEIGHT = 8
VERSIONS_HEIGHT = 5
UID_LIMIT = 40  # Grafana refuses longer dashboard uids
TAG_LIMIT = 50  # Grafana stores each tag in a VARCHAR(50) column (dashboard_tag.term)
BASE_TAGS = ("ml-mesh", "istio", "canary")


def _fit(text: str, limit: int) -> str:
    """`text` when it fits, else a readable prefix and a hash of the whole text (stable, and
    still unique: two texts only share a result if they share the hash)."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return text[: limit - len(digest) - 1].rstrip("-_") + "-" + digest


def dashboard_uid(config: StackConfig, name: str) -> str:
    """Stable across deploys (Grafana keys links and stars on it) and at most 40 characters.

    `_` joins namespace and model because neither can contain it: `ml` + `fraud-detector` and
    `ml-fraud` + `detector` get different uids: stacks in different namespaces never collide.
    """
    return _fit(f"ml-mesh-{config.namespace}_{name}", UID_LIMIT)


def dashboard_name(config: StackConfig, name: str) -> str:
    """The ConfigMap's name and, with `.json`, its file name in Grafana's dashboard folder
    (the sidecar writes every ConfigMap's files into one folder). Dots join namespace and
    model, which DNS labels cannot contain, so it is unique across stacks and models."""
    return f"ml-mesh-dashboard.{config.namespace}.{name}"


def stack_tags(config: StackConfig) -> list[str]:
    """The tags every board of the stack shares: Grafana's search and links find them by it."""
    return list(dict.fromkeys(["ml-mesh", _fit(config.namespace, TAG_LIMIT)]))


def versions_markdown(model: Model) -> str:
    """Which version is which: role and image, from stack config.

    No weights (the split panel shows the observed one; a shift must not rewrite the board)
    and no replica counts (an autoscaler owns them, and scaling must not rewrite it either).
    """
    rows = [
        f"| {v} | {version_role(model, v) or '-'} | `{model.versions[v].image}` |"
        for v in sorted(model.versions)
    ]
    return "\n".join(
        [
            f"**Versions** (`{model.server}`, from stack config). The configured weights: "
            "stack outputs, `mesh diff`, `python -m mesh render`.",
            "",
            "| version | role | image |",
            "| --- | --- | --- |",
            *rows,
        ]
    )


def split_help(model: Model) -> str:
    """The split panel's description: what it counts, and which version is which."""
    roles = ", ".join(
        f"{v} {version_role(model, v)}" for v in sorted(model.versions) if version_role(model, v)
    )
    return (
        "Share of the requests callers sent to the model, per version, as the callers' proxies "
        "(ingress gateway, calling sidecars) routed them: the split the VirtualService "
        f"produced ({roles}). Also counts requests that failed in the callers' proxies; "
        "'latest': no pod was chosen (UH). Mirrored copies are not counted. The configured "
        "weights are in the stack outputs and `mesh diff`."
    )


def _split_panel(panel_id: int, model: Model, expr: str, grid: dict) -> dict:
    """A stacked 0..100% area per version over time, its legend the share now and on average:
    the ramp of a canary at a glance, and the number to compare with the configured weight."""
    panel = _timeseries(
        panel_id,
        "observed traffic split",
        "percentunit",
        expr,
        grid,
        "{{destination_canonical_revision}}",
        split_help(model),
    )
    defaults = panel["fieldConfig"]["defaults"]
    defaults.update({"max": 1, "decimals": 1})
    defaults["custom"] = {
        "stacking": {"mode": "normal", "group": "A"},
        "fillOpacity": 60,
        "lineWidth": 1,
    }
    panel["options"]["legend"]["calcs"] = ["lastNotNull", "mean"]
    return panel


def _timeseries(
    panel_id: int,
    title: str,
    unit: str,
    expr: str,
    grid: dict,
    legend: str = "{{destination_version}}",
    description: str | None = None,
) -> dict:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "description": UNIT_HELP.get(unit, "") if description is None else description,
        "gridPos": grid,
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "range": True,
            }
        ],
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _server_help(config: StackConfig, unit: str) -> dict[str, str]:
    """A server-side panel's description names its reporter in ambient, where the waypoint,
    not a sidecar in the pod, counts the requests (mesh.ambient.server_reporter); sidecar
    stacks keep the unit's help as it was."""
    if not config.ambient():
        return {}
    return {
        "description": f"{UNIT_HELP[unit]} Reported by the namespace's waypoint "
        f'(reporter="{server_reporter(config)}"): in ambient no pod has a proxy.'
    }


def model_panels(config: StackConfig, name: str) -> list[dict]:
    """The observed split, then rate, errors, p50 and p99 of the model by version as the
    serving pods saw them, then a row of the same model as its callers saw it: error ratio,
    p99, failed requests by Envoy response flags, and those that reached no pod; last, which
    version is which."""
    model = config.models[name]
    queries = model_queries(config, name, RATE_WINDOW)
    graphs = [  # title, unit, query, x, y, width
        ("request rate", "reqps", queries.request_rate, 8, 0, 8),
        ("error ratio", "percentunit", queries.error_ratio, 16, 0, 8),
        ("p50 latency", "ms", queries.p50_latency, 0, PANEL_HEIGHT, 12),
        ("p99 latency", "ms", queries.p99_latency, 12, PANEL_HEIGHT, 12),
    ]
    split_grid = {"h": PANEL_HEIGHT, "w": 8, "x": 0, "y": 0}
    panels: list[dict[str, Any]] = [_split_panel(1, model, queries.traffic_split, split_grid)]
    for panel_id, (title, unit, expr, x, y, width) in enumerate(graphs, start=2):
        grid = {"h": PANEL_HEIGHT, "w": width, "x": x, "y": y}
        help_ = _server_help(config, unit)
        panels.append(_timeseries(panel_id, f"{title} by version", unit, expr, grid, **help_))
    by_revision = "{{destination_canonical_revision}}"
    callers = [  # title, unit, query, legend
        ("caller error ratio", "percentunit", queries.caller_error_ratio, by_revision),
        ("caller p99 latency", "ms", queries.caller_p99_latency, by_revision),
        (
            "caller errors by response flags",
            "reqps",
            queries.caller_errors_by_flags,
            by_revision + " {{response_flags}}",
        ),
        (
            "requests failed before reaching a pod",
            "percentunit",
            queries.without_endpoint_ratio,
            "no pod chosen",
        ),
    ]
    width = GRID_WIDTH // len(callers)
    for index, (title, unit, expr, legend) in enumerate(callers):
        grid = {"h": PANEL_HEIGHT, "w": width, "x": index * width, "y": 2 * PANEL_HEIGHT}
        panels.append(
            _timeseries(
                len(panels) + 1,
                title if title.startswith("requests") else f"{title} by version",
                unit,
                expr,
                grid,
                legend,
                CALLER_HELP[title],
            )
        )
    rows = 3
    if serves_llm(config, name):
        panels += token_panels(config, name, len(panels) + 1, rows * PANEL_HEIGHT)
        rows += 2
    panels.append(
        {
            "id": len(panels) + 1,
            "type": "text",
            "title": "versions",
            "gridPos": {"h": VERSIONS_HEIGHT, "w": GRID_WIDTH, "x": 0, "y": rows * PANEL_HEIGHT},
            "options": {"mode": "markdown", "content": versions_markdown(model)},
        }
    )
    return panels


TOKEN_HELP = {
    "time to first token p95": "Seconds from the request's arrival to its first generated "
    "token, 95th percentile per version, from the server's own histogram ({metric}): what a "
    "streaming client waits before anything appears. Queueing and prefill both count.",
    "inter-token latency p95": "Seconds between consecutive generated tokens of a request, "
    "95th percentile per version ({metric}): the speed of a stream once it started.",
    "end-to-end latency p95": "Seconds from arrival to the last token, 95th percentile per "
    "version ({metric}), as the server measured it.",
    "KV-cache usage": "Share of the KV cache in use, the fullest pod of each version "
    "({metric}, 0..1). Near 1 the server preempts or queues requests.",
    "requests running": "Requests in the running batch, summed over each version's pods "
    "({metric}).",
    "requests waiting": "Requests queued for the scheduler, summed over each version's pods "
    "({metric}): a canary that queues where stable does not is short of capacity.",
    "prompt tokens/s": "Prompt (prefill) tokens processed per second, per version ({metric}).",
    "generation tokens/s": "Tokens generated per second, per version ({metric}).",
}


def token_panels(config: StackConfig, name: str, first_id: int, y: int) -> list[dict]:
    """Two rows of the server's own token-level signals, one series per version (label
    `version`, taken from the pod name: mesh.llm_metrics), for vllm and sglang models."""
    queries = token_queries(config, name, RATE_WINDOW)
    server = queries.server
    metrics = {
        "time to first token p95": server.ttft,
        "inter-token latency p95": server.itl,
        "end-to-end latency p95": server.e2e,
        "KV-cache usage": server.kv_cache,
        "requests running": server.running,
        "requests waiting": server.waiting,
        "prompt tokens/s": server.prompt_tokens,
        "generation tokens/s": server.generation_tokens,
    }
    width = GRID_WIDTH // 4
    panels = []
    for index, (title, unit, expr) in enumerate(queries.views()):
        grid = {
            "h": PANEL_HEIGHT,
            "w": width,
            "x": (index % 4) * width,
            "y": y + (index // 4) * PANEL_HEIGHT,
        }
        description = TOKEN_HELP[title].format(metric=metrics[title])
        panel = _timeseries(
            first_id + index, f"{title} by version", unit, expr, grid, "{{version}}", description
        )
        if unit == "percentunit":
            panel["fieldConfig"]["defaults"]["max"] = 1
        panels.append(panel)
    return panels


def sibling_links(config: StackConfig) -> list[dict]:
    """A dropdown of the stack's other model boards, found by the tags they share; it keeps the
    time range and the chosen data source when the reviewer moves from model to model."""
    return [
        {
            "title": f"ml-mesh / {config.namespace}",
            "type": "dashboards",
            "tags": stack_tags(config),
            "asDropdown": True,
            "includeVars": True,
            "keepTime": True,
            "targetBlank": False,
            "icon": "external link",
            "tooltip": "",
            "url": "",
        }
    ]


def dashboard(config: StackConfig, name: str) -> dict:
    """The model's dashboard JSON model (Grafana's classic schema). It reads nothing of the
    other models, so it changes only when this model's config does."""
    datasource = config.telemetry.dashboard.datasource
    current = {"selected": True, "text": datasource, "value": datasource} if datasource else {}
    return {
        "id": None,
        "uid": dashboard_uid(config, name),
        "title": f"ml-mesh / {config.namespace} / {name}",
        "description": f"Generated by ml-mesh from stack config: the versions of model {name}, "
        "one series per version (Istio metrics: the observed split, server side, then as the "
        "callers saw them). "
        "Edits here are overwritten on the next deploy.",
        "tags": list(dict.fromkeys([*stack_tags(config), *BASE_TAGS])),
        "editable": False,
        "graphTooltip": 1,  # shared crosshair: compare versions at the same instant
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": sibling_links(config),
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": current,
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                }
            ]
        },
        "panels": model_panels(config, name),
    }


class _NotPlain(Exception):
    """A value `indented_json` leaves to `json.dumps`."""


def indented_json(value: Any) -> str:
    """`json.dumps(value, indent=2)`, byte for byte, in half the time.

    With an indent, `json.dumps` cannot use its C encoder and runs `_make_iterencode`
    (CPython `Lib/json/encoder.py`), a generator per container yielding every separator on its
    own; a stack of 300 models spent a tenth of its render there. This writes the same text
    for the (acyclic) JSON a dashboard is made of (dicts with string keys, lists, strings, bools, None,
    ints, finite floats) with the same escaping (`encode_basestring_ascii`, as with the default
    `ensure_ascii=True`), the same separators (`,` then a line break and the indent; `": "`)
    and `{}` / `[]` for empty containers. Anything else (another key type, NaN, a subclass)
    goes to `json.dumps` whole, so the result never differs."""
    parts: list[str] = []
    append, encode = parts.append, encode_basestring_ascii

    def write(item: Any, indent: str) -> None:
        kind = type(item)
        if kind is str:
            append(encode(item))
        elif kind is dict:
            if not item:
                append("{}")
                return
            inner = indent + "  "
            separator = "{" + inner
            for key, member in item.items():
                if type(key) is not str:
                    raise _NotPlain
                if type(member) is str:
                    append(f"{separator}{encode(key)}: {encode(member)}")
                else:
                    append(f"{separator}{encode(key)}: ")
                    write(member, inner)
                separator = "," + inner
            append(indent + "}")
        elif kind is list:
            if not item:
                append("[]")
                return
            inner = indent + "  "
            separator = "[" + inner
            for member in item:
                append(separator)
                write(member, inner)
                separator = "," + inner
            append(indent + "]")
        elif item is None:
            append("null")
        elif item is True:
            append("true")
        elif item is False:
            append("false")
        elif kind is int:
            append(int.__repr__(item))
        elif kind is float and math.isfinite(item):
            append(float.__repr__(item))
        else:
            raise _NotPlain

    try:
        write(value, "\n")
    except _NotPlain:
        return json.dumps(value, indent=2)
    return "".join(parts)


def dashboard_config_map(config: StackConfig, name: str) -> dict:
    """The model's dashboard as the Grafana sidecar picks it up: one JSON file per key."""
    namespace = config.telemetry.dashboard.namespace or config.namespace
    config_map = dashboard_name(config, name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config_map, namespace, COMPONENT, {**SIDECAR_LABEL, "app": name}),
        "data": {f"{config_map}.json": indented_json(dashboard(config, name))},
    }


def dashboard_objects(config: StackConfig, name: str) -> list[dict]:
    return [dashboard_config_map(config, name)] if config.telemetry.dashboard.enabled else []
