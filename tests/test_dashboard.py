"""The Grafana dashboards: one valid board per model, in its own ConfigMap the kube-prometheus-stack
sidecar loads, with every version of the model and the traffic split the proxies observed (never
the configured weights: a shift must not rewrite a board)."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest

from mesh.config import parse_config
from mesh.dashboard import dashboard, indented_json
from mesh.plan import MODEL, build_plan
from mesh.promql import model_queries
from tests.conftest import STACKS, stack_raw, with_value

QUERY_PANELS = {"timeseries"}
CONFIG_MAP_LIMIT = 1024 * 1024  # bytes the API server accepts in a ConfigMap's data
GRAFANA_UID = re.compile(r"[a-zA-Z0-9_-]{1,40}")
SIDECAR_FILE = re.compile(r"[-._a-zA-Z0-9]+\.json")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _config_maps(raw: dict, stack: str = "dev") -> dict[str, dict]:
    """Model name -> its dashboard ConfigMap, taken from the model's own component."""
    found: dict[str, dict] = {}
    for component in build_plan(parse_config(raw, stack)).components:
        maps = [o for o in component.objects if o["kind"] == "ConfigMap"]
        if maps:
            assert component.type == MODEL, f"a dashboard outside a model: {component.name}"
            (found[component.name],) = maps
    return found


def _board(config_map: dict) -> dict[str, Any]:
    (text,) = config_map["data"].values()
    return json.loads(text)


def _size(config_map: dict) -> int:
    return len(json.dumps(config_map).encode())


@pytest.fixture(scope="module", params=STACKS)
def stack_boards(request):
    """(config, model name -> board) of a committed stack."""
    raw = stack_raw(request.param)
    boards = {name: _board(cm) for name, cm in _config_maps(raw, request.param).items()}
    return parse_config(raw, request.param), boards


def _panels(boards: dict[str, dict]):
    """(model name, board, panel) for every panel of every board."""
    return [(name, board, p) for name, board in boards.items() for p in board["panels"]]


def test_every_model_has_its_own_dashboard_in_its_component(stack_boards):
    config, boards = stack_boards
    assert sorted(boards) == sorted(config.models)
    assert len({b["uid"] for b in boards.values()}) == len(boards)


def test_config_map_is_what_the_grafana_sidecar_loads(dev):
    config_map = _config_maps(dev)["sentiment"]
    assert config_map["metadata"]["name"] == "ml-mesh-dashboard.ml-serving.sentiment"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["labels"]["app"] == "sentiment"
    assert config_map["metadata"]["namespace"] == "ml-serving"
    (key,) = config_map["data"]
    assert SIDECAR_FILE.fullmatch(key)  # the file name the sidecar writes
    assert key == "ml-mesh-dashboard.ml-serving.sentiment.json"
    kubernetes_validate.validate(config_map, "1.29", strict=True)
    assert _size(config_map) < CONFIG_MAP_LIMIT


def test_dashboards_can_go_to_the_namespace_grafana_watches(prod):
    moved = _config_maps(with_value(prod, "telemetry.dashboard.namespace", "monitoring"), "prod")
    assert {cm["metadata"]["namespace"] for cm in moved.values()} == {"monitoring"}
    # named after the serving namespace, so two stacks never collide in a shared namespace
    assert {cm["metadata"]["name"] for cm in moved.values()} == {
        "ml-mesh-dashboard.ml-serving.fraud",
        "ml-mesh-dashboard.ml-serving.sentiment",
    }


def test_names_uids_and_files_never_collide_across_stacks_and_models(dev):
    """The sidecar writes every ConfigMap's files into one folder and Grafana keys boards by
    uid, so a dash-joined `ml-fraud-detector` must not serve two (namespace, model) pairs."""
    model = dev["models"]["sentiment"]
    found = []
    for namespace, name in (("ml", "fraud-detector"), ("ml-fraud", "detector")):
        raw = with_value(with_value(dev, "namespace", namespace), "models", {name: model})
        (config_map,) = _config_maps(raw).values()
        found.append(
            (config_map["metadata"]["name"], *config_map["data"], _board(config_map)["uid"])
        )
    (first, second) = found
    assert all(a != b for a, b in zip(first, second, strict=True)), found


def test_longest_names_still_give_valid_unique_names_uids_and_tags(dev):
    model = dev["models"]["sentiment"]
    names = ["m" * 59 + "a", "m" * 59 + "b"]  # the longest with version v1; differ at the end
    raw = with_value(dev, "namespace", "n" * 63)
    raw = with_value(raw, "models", dict.fromkeys(names, model))
    config_maps = _config_maps(raw)
    uids = {name: _board(config_maps[name])["uid"] for name in names}
    assert all(GRAFANA_UID.fullmatch(uid) for uid in uids.values())
    assert len(set(uids.values())) == 2
    assert uids == {name: _board(cm)["uid"] for name, cm in _config_maps(raw).items()}  # stable
    for config_map in config_maps.values():
        board = _board(config_map)
        assert all(len(tag) <= 50 for tag in board["tags"])  # Grafana's VARCHAR(50)
        assert set(board["links"][0]["tags"]) <= set(board["tags"])
        name, (key,) = config_map["metadata"]["name"], config_map["data"]
        assert DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253
        assert SIDECAR_FILE.fullmatch(key) and len(key) <= 253  # a ConfigMap key's limit
        kubernetes_validate.validate(config_map, "1.29", strict=True)


def test_dashboard_can_be_turned_off(dev):
    assert _config_maps(with_value(dev, "telemetry.dashboard.enabled", False)) == {}


def test_dashboard_has_the_fields_grafana_requires(stack_boards):
    config, boards = stack_boards
    for name, board in boards.items():
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
        assert GRAFANA_UID.fullmatch(board["uid"])
        assert board["uid"] == f"ml-mesh-{config.namespace}_{name}"  # stable across deploys
        assert board["title"] == f"ml-mesh / {config.namespace} / {name}"
        assert board["id"] is None
        assert board["time"] == {"from": "now-1h", "to": "now"}


def test_tags_find_a_stacks_boards_and_each_board_links_to_its_siblings(prod):
    boards = [_board(cm) for cm in _config_maps(prod, "prod").values()]
    other = with_value(prod, "namespace", "ml-staging")
    strangers = [_board(cm) for cm in _config_maps(other, "prod").values()]
    for board in boards:
        assert {"ml-mesh", "ml-serving"} <= set(board["tags"])
        assert len(board["tags"]) == len(set(board["tags"]))  # Grafana stores each tag once
        (link,) = board["links"]
        assert (link["type"], link["asDropdown"], link["keepTime"]) == ("dashboards", True, True)
        assert link["includeVars"]  # the chosen data source follows the reviewer
        # a dashboards link lists the boards carrying all of its tags
        assert all(set(link["tags"]) <= set(sibling["tags"]) for sibling in boards)
        assert not any(set(link["tags"]) <= set(stranger["tags"]) for stranger in strangers)


def test_panel_ids_are_unique_and_the_grid_never_overlaps(stack_boards):
    _, boards = stack_boards
    for board in boards.values():
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


def test_every_query_uses_the_templated_data_source(stack_boards):
    _, boards = stack_boards
    for board in boards.values():
        (variable,) = board["templating"]["list"]
        assert (variable["name"], variable["type"], variable["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )
    queried = [p for _, _, p in _panels(boards) if p["type"] in QUERY_PANELS]
    assert queried
    for panel in queried:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "[$__rate_interval]" in target["expr"]
            if 'reporter="source"' in target["expr"]:  # callers name it by canonical revision
                assert "{{destination_canonical_revision}}" in target["legendFormat"] or (
                    "destination_canonical_revision" not in target["expr"]
                )
            else:
                assert target["legendFormat"] == "{{destination_version}}"


def test_default_data_source_can_be_named(dev):
    named = with_value(dev, "telemetry.dashboard.datasource", "Prometheus")
    board = _board(_config_maps(named)["sentiment"])
    (variable,) = board["templating"]["list"]
    assert variable["current"]["value"] == "Prometheus"


def test_every_board_shows_rate_errors_and_latency_of_every_version(stack_boards):
    config, boards = stack_boards
    for name, board in boards.items():
        queries = model_queries(config, name, "$__rate_interval")
        assert queries.versions == tuple(sorted(config.models[name].versions))
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        # the split panel comes first; `mesh promql` lists the same query with the caller views
        callers = [q for _, q in queries.caller_views() if q != queries.traffic_split]
        assert exprs == [
            queries.traffic_split,
            *(q for _, q in queries.comparisons()),
            *callers,
        ]
        units = [
            p["fieldConfig"]["defaults"]["unit"]
            for p in board["panels"]
            if p["type"] in QUERY_PANELS
        ]
        served = ["reqps", "percentunit", "ms", "ms"]
        assert units == ["percentunit", *served, "percentunit", "ms", "reqps", "percentunit"]


def _panel(board: dict, title: str) -> dict:
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    return panel


def _versions_text(board: dict) -> str:
    panel = _panel(board, "versions")
    assert panel["type"] == "text" and panel["options"]["mode"] == "markdown"
    return panel["options"]["content"]


def test_the_first_panel_is_the_observed_split_stacked_to_100_percent(stack_boards):
    """What a reviewer reads mid-canary: each version's share of the requests callers sent,
    stacked so the ramp shows, with the share now and on average in the legend."""
    config, boards = stack_boards
    for name, board in boards.items():
        split = board["panels"][0]
        assert split["title"] == "observed traffic split"
        assert split["type"] == "timeseries"
        assert split["gridPos"] == {"h": 8, "w": 8, "x": 0, "y": 0}
        (target,) = split["targets"]
        assert target["expr"] == model_queries(config, name, "$__rate_interval").traffic_split
        assert target["legendFormat"] == "{{destination_canonical_revision}}"
        defaults = split["fieldConfig"]["defaults"]
        assert (defaults["unit"], defaults["min"], defaults["max"]) == ("percentunit", 0, 1)
        assert defaults["custom"]["stacking"]["mode"] == "normal"
        assert split["options"]["legend"]["calcs"] == ["lastNotNull", "mean"]
        model = config.models[name]
        assert f"{model.stable} stable" in split["description"]
        if model.canary is not None:
            assert f"{model.canary.version} canary" in split["description"]


def test_no_board_prints_a_configured_weight(stack_boards):
    """Roles and images from config, the split from the metrics: no number of the config's
    traffic anywhere in a board."""
    config, boards = stack_boards
    for name, board in boards.items():
        text = _versions_text(board)
        for version, spec in config.models[name].versions.items():
            assert f"| {version} |" in text and spec.image in text
        assert "%" not in json.dumps(board)
        assert "configured traffic" not in json.dumps(board)


@pytest.mark.parametrize("weight", [0, 5, 30, 100])
def test_shifting_the_canary_leaves_every_board_as_it_was(prod, weight):
    before = _config_maps(prod, "prod")
    after = _config_maps(with_value(prod, "models.sentiment.canary.weight", weight), "prod")
    assert after == before


def test_every_config_map_of_a_large_stack_stays_far_below_the_size_limit(dev):
    """300 models of 3 versions (the scale benchmark): each board depends on its model alone,
    so its ConfigMap is as small in this stack as in a stack of one model."""
    model = dev["models"]["sentiment"]
    versions = {f"v{i}": model["versions"]["v1"] for i in range(1, 4)}
    model = {
        **model,
        "versions": versions,
        "stable": "v1",
        "canary": {"version": "v2", "weight": 5},
    }
    models = {f"model-{i}": model for i in range(300)}
    config_maps = _config_maps(with_value(dev, "models", models))
    assert len(config_maps) == 300
    for config_map in config_maps.values():
        assert _size(config_map) < CONFIG_MAP_LIMIT // 16  # a sixteenth of the limit at most
    alone = _config_maps(with_value(dev, "models", {"model-7": model}))
    assert alone["model-7"] == config_maps["model-7"]
    text = _versions_text(_board(alone["model-7"]))
    assert all(f"| v{i} |" in text for i in range(1, 4))


INDENTED_JSON_CASES = {
    "empty containers": {"a": {}, "b": [], "c": [{}, []]},
    "nesting": {"a": [1, [2, {"b": None}], {"c": {"d": [True, False]}}]},
    "scalars at the top": ["text", 0, -7, 1.5, 1e17, 1e-7, True, None],
    "a lone string": 'é \u2028 \x00 " \\ / 日本語 😀',
    "escapes in keys": {'é\n\t"\\': "v", "": ""},
    "big ints": {"n": 2**70, "m": -(2**70)},
    "NaN and infinities (left to json.dumps)": {"x": [float("nan"), float("inf"), -float("inf")]},
    "non-string keys (left to json.dumps)": {1: "a", 2.5: "b", False: "c", None: "d"},
    "a bool where an int could be": {"x": [1, True, 0, False]},
    "a tuple (left to json.dumps)": {"t": (1, 2)},
}


@pytest.mark.parametrize("value", INDENTED_JSON_CASES.values(), ids=INDENTED_JSON_CASES.keys())
def test_indented_json_writes_what_json_dumps_with_indent_2_writes(value):
    assert indented_json(value) == json.dumps(value, indent=2)


def test_every_shipped_board_is_the_text_json_dumps_with_indent_2_writes(stack_boards):
    config, boards = stack_boards
    for name in boards:
        board = dashboard(config, name)
        assert indented_json(board) == json.dumps(board, indent=2)
