"""`python -m mesh render`: the offline main job."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import PROJECT_DIR, run_mesh


def _render(*args: str) -> subprocess.CompletedProcess:
    return run_mesh("render", *args)


def test_render_with_no_argument_prints_the_dev_stack_as_yaml_only():
    result = _render()
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents[0]["kind"] == "Namespace"
    assert {d["kind"] for d in documents} >= {"Deployment", "VirtualService", "Gateway"}
    assert "sentiment  tensorflow-serving  v2       canary  10%" in result.stderr


def test_render_is_stable_across_runs():
    assert _render("prod", "-q").stdout == _render("prod", "-q").stdout


def test_render_takes_a_path_to_any_stack_file(tmp_path):
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    result = _render(str(path), "-q")
    assert result.returncode == 0
    assert result.stdout == _render("dev", "-q").stdout


def test_bad_config_exits_non_zero_with_one_line_and_no_traceback(tmp_path):
    text = (PROJECT_DIR / "Pulumi.dev.yaml").read_text().replace("weight: 10", "weight: 110")
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    result = _render(str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "ml-mesh: invalid config for stack 'dev': models.sentiment.canary.weight: "
        "Input should be less than or equal to 100 (got 110)"
    ]


def test_unknown_stack_is_a_clear_error():
    result = _render("staging")
    assert result.returncode == 2
    assert "no stack file" in result.stderr and "Pulumi.staging.yaml" in result.stderr


def test_secure_values_render_as_a_placeholder_never_in_clear(tmp_path):
    text = (PROJECT_DIR / "Pulumi.prod.yaml").read_text()
    text = text.replace(
        "roleArn: arn:aws:iam::123456789012:role/ml-mesh-sentiment-reader",
        "roleArn:\n        secure: v1:c2VjcmV0LXJvbGUtYXJu",
    )
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    result = _render(str(path), "-q")
    assert result.returncode == 0, result.stderr
    accounts = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "ServiceAccount"]
    annotations = {a["metadata"]["name"]: a["metadata"]["annotations"] for a in accounts}
    assert annotations["sentiment"]["eks.amazonaws.com/role-arn"] == "[secret]"
    assert "ml-mesh-secret-placeholder" not in result.stdout
    assert "c2VjcmV0LXJvbGUtYXJu" not in result.stdout


def test_secure_value_where_secrets_cannot_go_is_refused(tmp_path):
    text = (PROJECT_DIR / "Pulumi.dev.yaml").read_text()
    text = text.replace("bucket: acme-models-dev", "bucket:\n      secure: v1:abc")
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    result = _render(str(path))
    assert result.returncode == 2
    assert "storage.bucket: cannot be a secret" in result.stderr


def test_render_graph_prints_the_routing_as_a_mermaid_flowchart():
    result = _render("prod", "--graph", "-q")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["```mermaid", "flowchart LR"] and lines[-1] == "```"
    assert '  gateway{{"Gateway ml-serving/ml-gateway"}}' in lines
    assert '  m_sentiment["sentiment<br/>sentiment.models.example.com"]' in lines
    assert '  m_sentiment -->|"95%"| v_sentiment_v3' in lines
    assert '  m_sentiment -->|"5%"| v_sentiment_v4' in lines
    assert '  v_sentiment_v4["v4 · canary"]' in lines
    assert '  m_fraud -->|"100%"| v_fraud_v7' in lines


@pytest.mark.parametrize("command", [["schema"], ["render", "prod", "-q"]])
def test_a_reader_that_stops_early_gets_no_traceback(command):
    """As with `python -m mesh schema | head`: the reader is gone when the command writes (it
    closes its end at once; the command needs far longer than that to start and build)."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "mesh", *command],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    reader.stdout.close()
    _, stderr = reader.communicate()
    assert b"Traceback" not in stderr
    assert reader.returncode == 0
