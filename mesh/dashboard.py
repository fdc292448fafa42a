"""A Grafana dashboard that compares the versions of every model, generated from stack config.

Flagger and Argo Rollouts rename workloads primary/canary, so their dashboards lose the model
version; ml-mesh knows every model and version and keeps them in the pod labels, so each panel
shows one series per `destination_version`. The dashboard ships as a ConfigMap labelled
`grafana_dashboard: "1"`, which the Grafana sidecar of kube-prometheus-stack loads (its
`grafana.sidecar.dashboards.label` / `labelValue`, searching every namespace by default).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mesh.config import Model, StackConfig
from mesh.k8s import metadata
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
PANEL_HEIGHT = 8


def dashboard_uid(config: StackConfig) -> str:
    """Stable across deploys (Grafana keys links and stars on it) and at most 40 characters."""
    uid = f"ml-mesh-{config.namespace}"
    if len(uid) <= 40:
        return uid
    return "ml-mesh-" + hashlib.sha256(config.namespace.encode()).hexdigest()[:32]


def traffic_markdown(model: Model) -> str:
    """The split as configured at deploy time; the graphs show what the proxies observed."""
    traffic = model.traffic()
    rows = [
        f"| {v} | {version_role(model, v) or '-'} | {traffic.get(v, 0)}% | "
        f"{model.versions[v].replicas} | `{model.versions[v].image}` |"
        for v in sorted(model.versions)
    ]
    return "\n".join(
        [
            f"**Configured traffic** (`{model.server}`, from stack config)",
            "",
            "| version | role | traffic | replicas | image |",
            "| --- | --- | --- | --- | --- |",
            *rows,
        ]
    )


def _timeseries(panel_id: int, title: str, unit: str, expr: str, grid: dict) -> dict:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "description": UNIT_HELP.get(unit, ""),
        "gridPos": grid,
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": "{{destination_version}}",
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


def model_panels(config: StackConfig, name: str, first_id: int, top: int) -> list[dict]:
    """A row for the model: its configured split, then rate, errors, p50 and p99 by version."""
    model = config.models[name]
    queries = model_queries(config, name, RATE_WINDOW)
    body, lower = top + 1, top + 1 + PANEL_HEIGHT
    graphs = [  # title, unit, query, x, y, width
        ("request rate", "reqps", queries.request_rate, 8, body, 8),
        ("error ratio", "percentunit", queries.error_ratio, 16, body, 8),
        ("p50 latency", "ms", queries.p50_latency, 0, lower, 12),
        ("p99 latency", "ms", queries.p99_latency, 12, lower, 12),
    ]
    panels: list[dict[str, Any]] = [
        {
            "id": first_id,
            "type": "row",
            "title": name,
            "collapsed": False,
            "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": top},
            "panels": [],
        },
        {
            "id": first_id + 1,
            "type": "text",
            "title": f"{name}: configured traffic",
            "gridPos": {"h": PANEL_HEIGHT, "w": 8, "x": 0, "y": body},
            "options": {"mode": "markdown", "content": traffic_markdown(model)},
        },
    ]
    for offset, (title, unit, expr, x, y, width) in enumerate(graphs, start=2):
        grid = {"h": PANEL_HEIGHT, "w": width, "x": x, "y": y}
        panel = _timeseries(first_id + offset, f"{name}: {title} by version", unit, expr, grid)
        panels.append(panel)
    return panels


MODEL_HEIGHT = 1 + 2 * PANEL_HEIGHT


def dashboard(config: StackConfig) -> dict:
    """The dashboard JSON model (Grafana's classic schema)."""
    panels: list[dict] = []
    for index, name in enumerate(sorted(config.models)):
        panels += model_panels(config, name, len(panels) + 1, index * MODEL_HEIGHT)
    datasource = config.telemetry.dashboard.datasource
    current = {"selected": True, "text": datasource, "value": datasource} if datasource else {}
    return {
        "id": None,
        "uid": dashboard_uid(config),
        "title": f"ml-mesh / {config.namespace} / model versions",
        "description": "Generated by ml-mesh from stack config: one series per model version "
        "(Istio metrics, server side). Edits here are overwritten on the next deploy.",
        "tags": ["ml-mesh", "istio", "canary"],
        "editable": False,
        "graphTooltip": 1,  # shared crosshair: compare versions at the same instant
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
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
        "panels": panels,
    }


def dashboard_config_map(config: StackConfig) -> dict:
    """The dashboard as the Grafana sidecar picks it up: one JSON file per ConfigMap key.

    The key is also the file name in Grafana's dashboard folder, so it carries the serving
    namespace: two stacks never overwrite each other's file.
    """
    namespace = config.telemetry.dashboard.namespace or config.namespace
    name = f"ml-mesh-{config.namespace}-dashboard"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, namespace, COMPONENT, dict(SIDECAR_LABEL)),
        "data": {f"ml-mesh-{config.namespace}.json": json.dumps(dashboard(config), indent=2)},
    }
