"""`python -m mesh render`: the offline main job."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import yaml

from mesh.render import CDumper, PyDumper, render_objects, to_yaml
from tests.conftest import PROJECT_DIR, STACK_SOURCES, run_mesh, source_id


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


# --- the C emitter and the pure-Python one write the same bytes ----------------------------


class _StockDumper(yaml.SafeDumper):
    """The dumper render used before libyaml: PyYAML's own representer and emitter, with the
    same settings (block style, no aliases, literal blocks for multi-line strings)."""

    def ignore_aliases(self, data):
        return True


_StockDumper.add_representer(
    str,
    lambda dumper, data: dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    ),
)

needs_libyaml = pytest.mark.skipif(CDumper is None, reason="PyYAML built without libyaml")

TRICKY_STRINGS = {
    "non-ASCII": "modèle 日本語 😀",
    "line and paragraph separators": "a\u2028b\u2029c\x85d",
    "control characters": "\x00\x07\x1b\x7f\ufeff\t",
    "long plain line": "word " * 60,
    "long line without spaces": "x" * 300,
    "long line needing quotes": "é " * 80,
    "long double-quoted line with runs of spaces": ("a  b   " * 30) + "é",
    "looks like an int": "8080",
    "looks like a float": "1.0",
    "looks like an exponent": "1e3",
    "looks like octal": "0o17",
    "looks like hex": "0x1F",
    "looks like a bool": "true",
    "YAML 1.1 bool": "yes",
    "looks like null": "null",
    "tilde": "~",
    "empty": "",
    "spaces only": "   ",
    "leading and trailing spaces": "  padded  ",
    "colon space": "key: value",
    "comment marker": "a #b",
    "indicators": "- * & ! | > ' \" % @ `",
    "flow characters": "{a: [b]}",
    "date": "2026-12-02",
    "sexagesimal": "12:30",
    "document markers": "--- ...",
    "multi-line": "line one\nline two\n",
    "multi-line with trailing spaces": "line one  \nline two \n",
    "multi-line with leading blank line": "\n  indented\n",
    "multi-line kept blank lines": "a\n\n\n",
    "multi-line with tabs": "a\tb\n\tc",
    "multi-line with CRLF": "a\r\nb\r\n",
    "multi-line long line": ("y" * 150) + "\n" + ("z " * 70),
    "PromQL": 'sum(rate(istio_requests_total{destination_service_name="m",response_code=~"5.."}'
    "[5m])) / sum(rate(istio_requests_total[5m])) > 0.05 " * 2,
}


def _documents_with(value: str) -> list[dict]:
    """`value` where render can put a string: a value, a list item, a nested key."""
    return [
        {"value": value, "list": [value, {"nested": value}]},
        {"data": {"key": value}, "deep": {"a": {"b": [[value]]}}},
    ]


def _shipped_objects(source: str) -> list[dict]:
    from mesh.stackfile import load_stack

    stack = load_stack(source)
    return render_objects(stack.config, stack.secrets)


@needs_libyaml
@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_every_shipped_stack_renders_the_same_bytes_with_libyaml_pure_python_and_stock_pyyaml(
    source,
):
    objects = _shipped_objects(source)
    c_output = to_yaml(objects, CDumper)
    assert c_output == to_yaml(objects, PyDumper)
    assert c_output == yaml.dump_all(
        objects, Dumper=_StockDumper, sort_keys=False, default_flow_style=False, width=100
    )


def test_render_uses_libyaml_when_pyyaml_has_it():
    assert to_yaml([{"a": 1}]) == "a: 1\n"
    assert (CDumper is not None) == bool(yaml.__with_libyaml__)


@needs_libyaml
@pytest.mark.parametrize("value", TRICKY_STRINGS.values(), ids=TRICKY_STRINGS.keys())
def test_tricky_strings_render_the_same_bytes_with_libyaml_and_pure_python_and_read_back(value):
    documents = _documents_with(value)
    c_output = to_yaml(documents, CDumper)
    assert c_output == to_yaml(documents, PyDumper)
    assert list(yaml.safe_load_all(c_output)) == documents


@needs_libyaml
@pytest.mark.parametrize("value", TRICKY_STRINGS.values(), ids=TRICKY_STRINGS.keys())
def test_tricky_strings_as_keys_render_the_same_bytes_with_libyaml_and_pure_python(value):
    documents = [{value: "v", "nested": {value: [value]}}]
    assert to_yaml(documents, CDumper) == to_yaml(documents, PyDumper)


def test_a_long_double_quoted_string_is_folded_as_libyaml_folds_it():
    """Stock PyYAML escapes the space it breaks at; libyaml breaks after the width and drops
    the space (a line break folds to one when read back). The pure-Python dumper folds as
    libyaml does, so output does not depend on how PyYAML was built."""
    value = "é " + "word " * 30
    output = to_yaml([{"k": value}], PyDumper)
    assert output.splitlines()[0].endswith(" word")  # past the width, then the break
    assert "\\\n" not in output  # no escaped break, as stock PyYAML writes
    stock = yaml.dump({"k": value}, Dumper=_StockDumper, width=100)
    assert "\\\n" in stock and stock != output
    assert yaml.safe_load(output) == yaml.safe_load(stock) == {"k": value}


@needs_libyaml
def test_the_one_known_difference_is_a_key_ending_in_blank_lines():
    """libyaml ends the document with `...` after a key in `|+` style (a key ending in two
    line breaks); PyYAML does not. Kubernetes keys cannot hold line breaks (field names,
    label, annotation and ConfigMap keys are validated), so no rendered object has one. Both
    read back the same."""
    documents = [{"a\n\n": 1}]
    c_output, py_output = to_yaml(documents, CDumper), to_yaml(documents, PyDumper)
    assert c_output == py_output + "...\n"
    assert list(yaml.safe_load_all(c_output)) == list(yaml.safe_load_all(py_output)) == documents


def test_the_fast_representer_leaves_other_types_to_pyyaml():
    """Floats (`.inf`, `1.0e+17`) keep PyYAML's representation; a type it cannot represent is
    still refused, not written as text."""
    output = to_yaml([{"float": 1.5, "exponent": 1e17, "inf": float("inf")}], PyDumper)
    assert output == "float: 1.5\nexponent: 1.0e+17\ninf: .inf\n"
    with pytest.raises(yaml.representer.RepresenterError):
        to_yaml([{"object": object()}], PyDumper)


@pytest.mark.parametrize("dumper", [d for d in (CDumper, PyDumper) if d], ids=lambda d: d.__name__)
def test_the_memoised_resolver_answers_as_pyyaml_for_every_node_kind(dumper):
    """The serializer asks `resolve` twice per scalar and once per collection; the memoised one
    must give PyYAML's answer every time, also when asked again for the same string."""
    stock = yaml.resolver.Resolver()
    fast = dumper(io.StringIO())
    questions = [
        (yaml.ScalarNode, value, implicit)
        for value in TRICKY_STRINGS.values()
        for implicit in ((True, False), (False, True), (False, False), (True, True))
    ]
    questions += [(yaml.SequenceNode, [], True), (yaml.MappingNode, [], True)]
    for _ in range(2):
        for question in questions:
            assert fast.resolve(*question) == stock.resolve(*question), question
