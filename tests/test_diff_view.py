"""How `mesh diff` shows a changed object: long strings around where they differ, PromQL whole,
lists that are sets in meaning by value. (The gates and the whole report: tests/test_diff.py.)"""

from __future__ import annotations

import json
import re

import pytest

from mesh.diff import (
    SET_FIELDS,
    PromQL,
    field_line,
    normalized,
    object_changes,
    objects_section,
)
from mesh.render import render_objects
from mesh.stackfile import load_stack
from tests.conftest import STACK_SOURCES, source_id


def _obj(kind: str, spec: dict, name: str = "x") -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ml"}, "spec": spec}


def _changes(before: dict, after: dict) -> list[tuple[str, object, object]]:
    (fields,) = object_changes([before], [after]).changed.values()
    return fields


# --- long strings --------------------------------------------------------------------------

LONG_STRINGS = [
    # (before, after, shown before, shown after)
    pytest.param(
        "a" * 200 + "OLD" + "z" * 100,
        "a" * 200 + "NEW" + "z" * 100,
        "…" + "a" * 20 + "OLD" + "z" * 37 + "…",
        "…" + "a" * 20 + "NEW" + "z" * 37 + "…",
        id="a change at character 200 shows that part, ellipses on both sides",
    ),
    pytest.param(
        "OLD" + "z" * 100,
        "NEW" + "z" * 100,
        "OLD" + "z" * 57 + "…",
        "NEW" + "z" * 57 + "…",
        id="a change at the start needs no leading ellipsis",
    ),
    pytest.param(
        "a" * 100 + "x",
        "a" * 100 + "y",
        "…" + "a" * 20 + "x",
        "…" + "a" * 20 + "y",
        id="a change at the end needs no trailing ellipsis",
    ),
    pytest.param(
        "a" * 100,
        "a" * 100 + "-more",
        "…" + "a" * 20,
        "…" + "a" * 20 + "-more",
        id="an appended tail shows where it starts",
    ),
    pytest.param("short", "other", "short", "other", id="short values are shown whole"),
]


@pytest.mark.parametrize(("before", "after", "shown_before", "shown_after"), LONG_STRINGS)
def test_long_strings_are_shown_around_their_first_difference(
    before, after, shown_before, shown_after
):
    assert field_line("data.k", before, after) == f"`data.k`: `{shown_before}` → `{shown_after}`"


def test_a_long_value_that_is_not_a_string_is_cut_around_its_difference_too():
    before = {"items": ["same"] * 20 + ["old"]}
    after = {"items": ["same"] * 20 + ["new"]}
    line = field_line("spec.x", before, after)
    assert '"old"' in line and '"new"' in line and line.count("…") == 2


# --- PromQL --------------------------------------------------------------------------------

OLD_EXPR = (
    'sum(rate(istio_requests_total{destination_version="v2"}[5m]))\n  /\nsum(rate(x[5m])) > 0.05'
)
NEW_EXPR = (
    'sum(rate(istio_requests_total{destination_version="v2"}[5m]))\n  /\nsum(rate(x[5m])) > 0.02'
)


def _rule(expr: str) -> dict:
    groups = [{"name": "ml-mesh.m", "rules": [{"alert": "CanaryErrors", "expr": expr}]}]
    return _obj("PrometheusRule", {"groups": groups})


def _board(expr: str) -> dict:
    board = {"panels": [{"title": "errors", "targets": [{"refId": "A", "expr": expr}]}]}
    return {
        "kind": "ConfigMap",
        "metadata": {"name": "m-dashboard", "namespace": "ml"},
        "data": {"m.json": json.dumps(board, indent=2)},
    }


def _template(query: str) -> dict:
    return _obj("MetricTemplate", {"provider": {"type": "prometheus"}, "query": query})


PROMQL_CASES = [
    pytest.param(_rule, "spec.groups[ml-mesh.m].rules[0].expr", id="PrometheusRule alert expr"),
    pytest.param(_board, "data.m.json.panels[0].targets[0].expr", id="Grafana panel target"),
    pytest.param(_template, "spec.query", id="Flagger MetricTemplate query"),
]


@pytest.mark.parametrize(("build", "path"), PROMQL_CASES)
def test_promql_is_compared_whole_not_line_by_line(build, path):
    assert _changes(build(OLD_EXPR), build(NEW_EXPR)) == [(path, OLD_EXPR, NEW_EXPR)]


@pytest.mark.parametrize(("build", "path"), PROMQL_CASES)
def test_promql_is_shown_whole_before_and_after_as_fenced_blocks(build, path):
    ((_, before, after),) = _changes(build(OLD_EXPR), build(NEW_EXPR))
    assert isinstance(before, PromQL) and isinstance(after, PromQL)
    assert field_line(path, before, after).splitlines() == [
        f"`{path}` changed, before:",
        "    ```promql",
        '    sum(rate(istio_requests_total{destination_version="v2"}[5m]))',
        "      /",
        "    sum(rate(x[5m])) > 0.05",
        "    ```",
        "    after:",
        "    ```promql",
        '    sum(rate(istio_requests_total{destination_version="v2"}[5m]))',
        "      /",
        "    sum(rate(x[5m])) > 0.02",
        "    ```",
    ]


def test_a_long_single_line_expression_is_not_cut():
    old, new = "x" * 300 + " > 1", "x" * 300 + " > 2"
    ((path, before, after),) = _changes(_rule(old), _rule(new))
    assert old in field_line(path, before, after) and new in field_line(path, before, after)


def test_an_added_expression_is_one_block_and_a_fence_outgrows_backticks_inside():
    line = field_line("spec.query", None, PromQL("up{job=`a```b`}"))
    assert line.splitlines() == [
        "`spec.query` added:",
        "    ````promql",
        "    up{job=`a```b`}",
        "    ````",
    ]


def test_text_that_is_not_promql_stays_line_by_line():
    before = _obj("Custom", {"script": "a\nb\nc"})
    after = _obj("Custom", {"script": "a\nB\nc"})
    assert _changes(before, after) == [("spec.script (line 2)", "b", "B")]


def test_a_promql_change_in_a_report_reads_as_one_item_with_its_blocks():
    report = "\n".join(objects_section(object_changes([_rule(OLD_EXPR)], [_rule(NEW_EXPR)])))
    assert (
        "- `PrometheusRule/x`\n"
        "  - `spec.groups[ml-mesh.m].rules[0].expr` changed, before:\n"
        "    ```promql\n"
        '    sum(rate(istio_requests_total{destination_version="v2"}[5m]))\n'
    ) in report


# --- lists that are sets -------------------------------------------------------------------


def _gateway(hosts: list[str]) -> dict:
    return _obj("Gateway", {"servers": [{"port": {"number": 443}, "hosts": hosts}]})


def _authz(principals: list[str]) -> dict:
    return _obj(
        "AuthorizationPolicy", {"rules": [{"from": [{"source": {"principals": principals}}]}]}
    )


def _ns(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


SET_CASES = [
    # (before, after, expected (path, before, after) entries)
    pytest.param(
        _gateway(["a.example.com", "b.example.com"]),
        _gateway(["new.example.com", "a.example.com", "b.example.com"]),
        [("spec.servers[0].hosts", None, "new.example.com")],
        id="a Gateway host inserted at the front is one addition",
    ),
    pytest.param(
        _gateway(["a.example.com", "b.example.com", "c.example.com"]),
        _gateway(["a.example.com", "c.example.com", "d.example.com"]),
        [
            ("spec.servers[0].hosts", "b.example.com", None),
            ("spec.servers[0].hosts", None, "d.example.com"),
        ],
        id="removed first, then added",
    ),
    pytest.param(
        _obj("VirtualService", {"hosts": ["m", "m.example.com"], "gateways": ["g", "mesh"]}),
        _obj("VirtualService", {"hosts": ["m.example.com", "m"], "gateways": ["mesh", "g", "h"]}),
        [
            ("spec.hosts (reordered, same values)", ["m", "m.example.com"], ["m.example.com", "m"]),
            ("spec.gateways", None, "h"),
        ],
        id="VirtualService hosts and gateways; a new order alone is said as such",
    ),
    pytest.param(
        _obj("ServiceEntry", {"hosts": ["a.com"], "exportTo": ["."]}),
        _obj("ServiceEntry", {"hosts": ["b.com", "a.com"], "exportTo": [".", "istio-system"]}),
        [("spec.hosts", None, "b.com"), ("spec.exportTo", None, "istio-system")],
        id="ServiceEntry hosts and exportTo",
    ),
    pytest.param(
        _obj("Sidecar", {"egress": [{"hosts": ["./*", "istio-system/*"]}]}),
        _obj("Sidecar", {"egress": [{"hosts": ["monitoring/*", "./*", "istio-system/*"]}]}),
        [("spec.egress[0].hosts", None, "monitoring/*")],
        id="Sidecar egress hosts",
    ),
    pytest.param(
        _authz(["cluster.local/ns/a/sa/x", "cluster.local/ns/b/sa/y"]),
        _authz(["cluster.local/ns/b/sa/y"]),
        [("spec.rules[0].from[0].source.principals", "cluster.local/ns/a/sa/x", None)],
        id="AuthorizationPolicy principals",
    ),
    pytest.param(
        _obj("NetworkPolicy", {"ingress": [{"from": [_ns("istio-system"), _ns("payments")]}]}),
        _obj(
            "NetworkPolicy",
            {"ingress": [{"from": [_ns("istio-system"), _ns("billing"), _ns("payments")]}]},
        ),
        [("spec.ingress[0].from", None, _ns("billing"))],
        id="a NetworkPolicy peer inserted in the middle is one addition",
    ),
]


@pytest.mark.parametrize(("before", "after", "expected"), SET_CASES)
def test_lists_that_are_sets_are_compared_by_value_not_position(before, after, expected):
    assert _changes(before, after) == expected


def test_a_list_that_is_not_a_set_is_still_compared_by_position():
    before = _obj("Deployment", {"args": ["--a", "--b"]})
    after = _obj("Deployment", {"args": ["--new", "--a", "--b"]})
    assert _changes(before, after) == [
        ("spec.args[0]", "--a", "--new"),
        ("spec.args[1]", "--b", "--a"),
        ("spec.args[2]", None, "--b"),
    ]


def test_set_changes_read_as_added_and_removed():
    assert field_line("spec.hosts", None, "b.com") == "`spec.hosts` added: `b.com`"
    assert field_line("spec.hosts", "a.com", None) == "`spec.hosts` removed (was `a.com`)"


def test_every_set_like_field_names_the_source_that_makes_its_order_irrelevant():
    assert all(re.search(r"\.(go|cc|py)\b", reason) for reason in SET_FIELDS.values())


# --- normalized ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_normalized_objects_equal_what_their_yaml_reads_back(source):
    import yaml

    from mesh.render import to_yaml

    stack = load_stack(source)
    objects = render_objects(stack.config, stack.secrets)
    assert normalized(objects) == list(yaml.safe_load_all(to_yaml(objects)))


def test_normalized_takes_other_types_through_yaml():
    assert normalized([{"kind": "X", "spec": {"ports": (80, 443)}}]) == [
        {"kind": "X", "spec": {"ports": [80, 443]}}
    ]
