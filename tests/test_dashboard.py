"""The Grafana dashboard: a valid dashboard the kube-prometheus-stack sidecar loads, with every
model and version of the stack and its configured split."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest

from mesh.config import parse_config
from mesh.plan import build_plan
from mesh.promql import model_queries
from tests.conftest import STACKS, stack_raw, with_value

QUERY_PANELS = {"timeseries"}


def _config_map(raw: dict, stack: str = "dev") -> dict | None:
    found = [o for o in build_plan(parse_config(raw, stack)).objects() if o["kind"] == "ConfigMap"]
    assert len(found) <= 1
    return found[0] if found else None


def _board(config_map: dict) -> dict[str, Any]:
    (text,) = config_map["data"].values()
    return json.loads(text)


@pytest.fixture(scope="module", params=STACKS)
def stack_board(request):
    raw = stack_raw(request.param)
    return parse_config(raw, request.param), _board(_config_map(raw, request.param))


def test_config_map_is_what_the_grafana_sidecar_loads(dev):
    config_map = _config_map(dev)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "ml-serving"
    (key,) = config_map["data"]
    assert re.fullmatch(r"[-._a-zA-Z0-9]+\.json", key)  # the sidecar's file name
    kubernetes_validate.validate(config_map, "1.29", strict=True)
    assert len(json.dumps(config_map).encode()) < 1024 * 1024  # ConfigMap size limit


def test_dashboard_can_go_to_the_namespace_grafana_watches(dev):
    moved = _config_map(with_value(dev, "telemetry.dashboard.namespace", "monitoring"))
    assert moved["metadata"]["namespace"] == "monitoring"
    # named after the serving namespace, so two stacks never collide in a shared namespace
    assert moved["metadata"]["name"] == "ml-mesh-ml-serving-dashboard"
    assert list(moved["data"]) == ["ml-mesh-ml-serving.json"]


def test_dashboard_can_be_turned_off(dev):
    assert _config_map(with_value(dev, "telemetry.dashboard.enabled", False)) is None


def test_dashboard_has_the_fields_grafana_requires(stack_board):
    config, board = stack_board
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"])
    assert board["uid"] == f"ml-mesh-{config.namespace}"  # stable: links survive deploys
    assert board["title"] and board["id"] is None
    assert board["time"] == {"from": "now-1h", "to": "now"}


def test_panel_ids_are_unique_and_the_grid_never_overlaps(stack_board):
    _, board = stack_board
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_every_query_uses_the_templated_data_source(stack_board):
    _, board = stack_board
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    queried = [p for p in board["panels"] if p["type"] in QUERY_PANELS]
    assert queried
    for panel in queried:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "[$__rate_interval]" in target["expr"]
            assert target["legendFormat"] == "{{destination_version}}"


def test_default_data_source_can_be_named(dev):
    board = _board(_config_map(with_value(dev, "telemetry.dashboard.datasource", "Prometheus")))
    (variable,) = board["templating"]["list"]
    assert variable["current"]["value"] == "Prometheus"


def test_every_model_has_a_row_with_rate_errors_and_latency_of_its_versions(stack_board):
    config, board = stack_board
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == sorted(config.models)
    for name in config.models:
        queries = model_queries(config, name, "$__rate_interval")
        exprs = [
            t["expr"]
            for p in board["panels"]
            if p["title"].startswith(f"{name}: ")
            for t in p.get("targets", [])
        ]
        assert exprs == [q for _, q in queries.comparisons()]
        units = [
            p["fieldConfig"]["defaults"]["unit"]
            for p in board["panels"]
            if p["title"].startswith(f"{name}: ") and p["type"] in QUERY_PANELS
        ]
        assert units == ["reqps", "percentunit", "ms", "ms"]


def _traffic_text(board: dict, name: str) -> str:
    (panel,) = [p for p in board["panels"] if p["title"] == f"{name}: configured traffic"]
    assert panel["type"] == "text" and panel["options"]["mode"] == "markdown"
    return panel["options"]["content"]


def test_configured_weight_of_every_version_is_on_the_dashboard(stack_board):
    config, board = stack_board
    for name, model in config.models.items():
        text = _traffic_text(board, name)
        traffic = model.traffic()
        for version, spec in model.versions.items():
            assert f"| {version} |" in text
            assert f"| {traffic.get(version, 0)}% |" in text.split(f"| {version} |")[1]
            assert spec.image in text


def test_shifting_the_canary_updates_the_weight_shown(dev):
    board = _board(_config_map(with_value(dev, "models.sentiment.canary.weight", 30)))
    text = _traffic_text(board, "sentiment")
    assert "| v1 | stable | 70% |" in text
    assert "| v2 | canary | 30% |" in text


def test_dashboard_of_a_large_stack_fits_in_a_config_map(dev):
    model = dev["models"]["sentiment"]
    versions = {f"v{i}": model["versions"]["v1"] for i in range(1, 4)}
    models = {f"model-{i}": {**model, "versions": versions} for i in range(60)}
    config_map = _config_map(with_value(dev, "models", models))
    board = _board(config_map)
    assert len([p for p in board["panels"] if p["type"] == "row"]) == 60
    assert len(json.dumps(config_map).encode()) < 1024 * 1024
