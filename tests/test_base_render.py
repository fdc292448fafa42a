"""The base of `mesh diff` read as JSON where its code prints JSON, as YAML where it cannot:
the same objects either way, for every shipped stack."""

from __future__ import annotations

import gc
import json
import re
import shutil

import pytest
import yaml

from mesh.charts import is_chart_object
from mesh.gitbase import (
    CHARTS_MARKER,
    JSON_MARKER,
    RunningRender,
    paused_collector,
    render_tree,
    renders_charts,
    renders_json,
    split_charts,
)
from tests.conftest import PROJECT_DIR, STACK_SOURCES, run_mesh, source_id

IGNORED = shutil.ignore_patterns(
    ".git", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "bench"
)


@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_json_and_yaml_renders_read_back_as_equal_objects_for_every_shipped_stack(source):
    as_yaml = run_mesh("render", source, "-q")
    as_json = run_mesh("render", source, "-q", "--format", "json")
    assert as_yaml.returncode == 0 and as_json.returncode == 0, as_json.stderr
    from_yaml = [doc for doc in yaml.safe_load_all(as_yaml.stdout) if doc]
    from_json = json.loads(as_json.stdout)
    assert len(from_json) > 10
    assert from_json == from_yaml


def test_the_json_render_prints_only_the_json_list_and_the_traffic_table_on_stderr():
    result = run_mesh("render", "prod", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    assert "sentiment" in result.stderr  # the traffic table, as for YAML


def test_an_unknown_render_format_is_a_usage_error_naming_the_choices():
    result = run_mesh("render", "prod", "-q", "--format", "toml")
    assert result.returncode == 2
    assert "invalid choice: 'toml' (choose from 'yaml', 'json')" in result.stderr


@pytest.fixture
def tree(tmp_path):
    path = tmp_path / "base"
    shutil.copytree(PROJECT_DIR, path, ignore=IGNORED, symlinks=True)
    return path


def _without_json_option(tree) -> None:
    """Make `tree` the code as it was before `render --format json`: no option, no function."""
    cli = tree / "mesh" / "cli.py"
    source, count = re.subn(
        r"\n    render\.add_argument\(\n        \"-o\",\n        \"--format\",.*?\n    \)\n",
        "\n",
        cli.read_text(),
        flags=re.S,
    )
    assert count == 1, "the --format option moved: update this test's edit"
    source = source.replace('args.format == "json"', "False")
    cli.write_text(source.replace("to_json_documents", "_unused_json"))
    render = tree / "mesh" / "render.py"
    assert JSON_MARKER in render.read_text()
    render.write_text(render.read_text().replace("to_json_documents", "_unused_json"))


def test_a_base_of_todays_code_is_read_as_json_and_gives_the_yaml_objects(tree):
    assert renders_json(tree)
    objects = render_tree(tree, "prod")
    expected = [d for d in yaml.safe_load_all(run_mesh("render", "prod", "-q").stdout) if d]
    assert objects == expected


def test_a_base_without_the_json_option_is_read_as_yaml_and_gives_the_same_objects(tree):
    _without_json_option(tree)
    assert not renders_json(tree)
    refused = run_mesh("render", "prod", "-q", "-o", "json", cwd=tree)
    assert refused.returncode == 2 and "unrecognized arguments: -o json" in refused.stderr
    expected = [d for d in yaml.safe_load_all(run_mesh("render", "prod", "-q").stdout) if d]
    assert render_tree(tree, "prod") == expected


def test_a_base_whose_render_module_cannot_be_read_is_read_as_yaml(tree):
    (tree / "mesh" / "render.py").write_bytes(b"\xff\xfe not utf-8")
    assert not renders_json(tree)


def test_a_render_no_longer_wanted_is_stopped_when_closed(tree):
    running = RunningRender(tree, "prod")
    running.close()
    assert running._process.poll() is not None  # stopped, or done: not left running


@pytest.mark.parametrize("enabled", [True, False])
def test_the_paused_collector_is_left_as_it_was_found_even_on_an_error(enabled):
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(ValueError), paused_collector():
            assert not gc.isenabled()
            raise ValueError
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


# Helm releases (mesh/charts.py): `render --charts` lists them as objects for `mesh diff`; the
# default render keeps them as comments.
POOLS = "llm-pools"


def _pools_plan():
    from mesh.plan import build_plan
    from mesh.stackfile import load_stack

    return build_plan(load_stack(str(PROJECT_DIR / "examples" / f"Pulumi.{POOLS}.yaml")).config)


def _pools_tree(tree):
    shutil.copy(tree / "examples" / f"Pulumi.{POOLS}.yaml", tree / f"Pulumi.{POOLS}.yaml")
    return tree


def _without_charts_option(tree) -> None:
    """Make `tree` the code as it was before `render --charts`."""
    cli = tree / "mesh" / "cli.py"
    source, count = re.subn(
        r"\n    render\.add_argument\(\n        \"--charts\",.*?\n    \)\n",
        "\n",
        cli.read_text(),
        flags=re.S,
    )
    assert count == 1, "the --charts option moved: update this test's edit"
    assert CHARTS_MARKER not in source
    cli.write_text(source.replace("if args.charts:", "if False:"))


def test_the_default_render_keeps_the_releases_as_comments():
    plain = run_mesh("render", f"examples/Pulumi.{POOLS}.yaml", "-q").stdout
    documents = [d for d in yaml.safe_load_all(plain) if d]
    assert not any(is_chart_object(d) for d in documents)
    for chart in _pools_plan().charts():
        assert (
            f"# Helm release {chart.namespace}/{chart.name}: {chart.chart} {chart.version}\n"
            in plain
        )


@pytest.mark.parametrize("output", ["yaml", "json"])
def test_render_charts_lists_each_release_of_the_plan_as_an_object(output):
    plan = _pools_plan()
    result = run_mesh("render", f"examples/Pulumi.{POOLS}.yaml", "-q", "--charts", "-o", output)
    assert result.returncode == 0, result.stderr
    assert "# Helm release" not in result.stdout and result.stderr == ""
    documents = (
        json.loads(result.stdout)
        if output == "json"
        else [d for d in yaml.safe_load_all(result.stdout) if d]
    )
    objects, charts = split_charts(documents)
    assert charts == [c.as_object() for c in plan.charts()]
    assert [c["metadata"]["name"] for c in charts] == ["chat-v1", "chat-v2", "coder-v3"]
    assert charts[0]["spec"]["values"]["router"]["inferencePool"]["failureMode"] == "FailOpen"
    assert objects == json.loads(
        run_mesh("render", f"examples/Pulumi.{POOLS}.yaml", "-q", "-o", "json").stdout
    )


def test_a_base_of_todays_code_lists_its_releases(tree):
    running = RunningRender(_pools_tree(tree), POOLS)
    assert running.with_charts
    objects, charts = split_charts(running.result())
    assert charts == [c.as_object() for c in _pools_plan().charts()]
    assert not any(o["kind"] == "Chart" for o in objects)


def test_a_base_without_the_charts_option_lists_none_and_renders_the_same_objects(tree):
    _without_charts_option(_pools_tree(tree))
    assert renders_json(tree) and not renders_charts(tree)
    refused = run_mesh("render", POOLS, "-q", "--charts", cwd=tree)
    assert refused.returncode == 2 and "unrecognized arguments: --charts" in refused.stderr
    running = RunningRender(tree, POOLS)
    assert not running.with_charts
    objects, charts = split_charts(running.result())
    assert charts == []
    assert objects == json.loads(
        run_mesh("render", f"examples/Pulumi.{POOLS}.yaml", "-q", "-o", "json").stdout
    )
